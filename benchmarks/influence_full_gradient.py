"""Is the sign of a campaign's influence an artefact of tracing the last layer only? (issue 27)

For a cell kept by ``benchmarks/forensics.py`` (its poisoned model, checkpoints and per-user
last-layer influence), trace TracIn over **every** parameter for the injected users and a random
sample of genuine users: per checkpoint, the learning rate times the inner product of the gradient
of the user's full-softmax loss (all its next-item predictions) with the gradient of the targets'
scores summed over their query users (hidden states not held fixed). Records the ROC-AUC of the
injected users against the sampled genuine ones under both tracings, and the mean influence of each
group.

Usage:
    python benchmarks/influence_full_gradient.py --dataset ml-1m --attack popular --seed 0 [--genuine 300]

Needs the cell's kept model (runs/bench/forensics_<dataset>/models/). Writes
benchmarks/results/influence_full_gradient_<dataset>_<attack>_seed<seed>.json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import HERE, data_path, parse_args, poison_for_seed, write_result


def full_gradient_influence(victim, train, users, queries) -> np.ndarray:
    """TracIn over every parameter: per user, Σ_checkpoints −lr·⟨∇θ L(user), ∇θ f⟩ (``queries``: item → query users)."""
    import torch
    import torch.nn.functional as F

    from recguard.data import pad_from_csr
    from recguard.probes.influence import _weights
    from recguard.victims import eval_mode

    module = victim.module
    params = [p for p in module.parameters() if p.requires_grad]
    starts, lengths = train.offsets[:-1], np.diff(train.offsets)
    out = np.zeros(len(users))
    for _, state in victim.checkpoints_:
        with _weights(module, state), eval_mode(module):
            f = 0.0
            for item, who in queries.items():
                x = torch.from_numpy(pad_from_csr(train.items, starts[who], lengths[who], victim.max_len))
                f = f + victim.score_representation(victim.representation(x))[:, item].sum()
            grad_f = [torch.zeros_like(p) if g is None else g
                      for p, g in zip(params, torch.autograd.grad(f, params, allow_unused=True), strict=True)]
            for k, u in enumerate(users):
                x = torch.from_numpy(pad_from_csr(train.items, starts[[u]], lengths[[u]], victim.max_len + 1))
                inp, tgt = x[:, :-1], x[:, 1:]
                keep = (inp > 0) & (tgt > 0)
                logits = victim.score_representation(victim.hidden_states(inp)[keep])
                logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], dim=1)
                loss = F.cross_entropy(logits, tgt[keep], reduction="sum")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                out[k] -= victim.config.lr * sum(float((g * h).sum()) for g, h in zip(grads, grad_f, strict=True) if g is not None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--attack", default="popular")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--genuine", type=int, default=300)
    args = parse_args(ap)
    import recguard
    from sklearn.metrics import roc_auc_score

    from recguard.probes.influence import _query_users
    from recguard.victims import eval_mode

    name = f"{args.attack}_b{args.budget:g}_k{args.checkpoints}_seed{args.seed}"
    folder = HERE.parent / "runs" / "bench" / f"forensics_{args.dataset}"
    cell = json.loads((folder / f"{name}.json").read_text())
    victim = recguard.load(folder / "models" / name)
    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    _, poisoned, _ = poison_for_seed(split, args.attack, args.seed, budget=args.budget, max_len=victim.max_len, clean_cache={})
    train = poisoned.train
    fakes = np.asarray(cell["fake_users"])
    genuine = np.random.default_rng(args.seed).choice(np.setdiff1d(np.arange(train.num_users), fakes), args.genuine, replace=False)
    users = np.concatenate([fakes, genuine])
    injected = np.r_[np.ones(len(fakes)), np.zeros(len(genuine))]
    with eval_mode(victim.module):
        queries = {i: q for i, q in _query_users(victim, train, cell["targets"], 50).items() if len(q)}
    t0 = time.perf_counter()
    full = full_gradient_influence(victim, train, users, queries)
    last = np.asarray(cell["influence"])[users]
    write_result(f"influence_full_gradient_{args.dataset}_{name}", {
        "cell": name, "fakes": int(len(fakes)), "genuine_sampled": int(len(genuine)), "seconds": time.perf_counter() - t0,
        "roc_auc_full_gradient": float(roc_auc_score(injected, full)), "roc_auc_last_layer": float(roc_auc_score(injected, last)),
        "mean_full_gradient": {"injected": float(full[: len(fakes)].mean()), "genuine": float(full[len(fakes):].mean())},
        "mean_last_layer": {"injected": float(last[: len(fakes)].mean()), "genuine": float(last[len(fakes):].mean())}})


if __name__ == "__main__":
    main()
