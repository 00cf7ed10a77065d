"""The SASRec-CE paper's SASRec and recguard's published variant trained in lockstep on ML-1M.

Both models start from the same weights (the reference's draw, copied into recguard's module) and take
the same batches in the same order: the reference right-padded, with its own loss (cross-entropy over
every column, its padding item included) and ``torch.optim.Adam``; recguard left-padded, through
``SASRec.training_loss`` and the optimiser ``fit`` uses. After each epoch both are validated by
``recguard.evaluate`` under both filters of seen items (``history``, ``window``), and the largest
weight difference is recorded (the padding row left out: the reference trains it as an output).

With ``--dropout 0`` the two trainings are deterministic, so any difference in the step shows as
diverging validation. With dropout the two draw different masks; ``--dropout-check`` then compares,
at the reference's state after ``--warm-steps`` steps, the mean loss and the mean gradient of the two
models on one batch over ``--draws`` dropout draws each.

Usage:
    python benchmarks/paper_code_lockstep.py --src /path/to/sasrec-bert4rec-recsys23/src --dropout 0 --epochs 3
    python benchmarks/paper_code_lockstep.py --src ... --dropout-check

Writes ``benchmarks/results/paper_code_lockstep_d<dropout>.json`` or ``paper_code_dropout_check.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import parse_args, require_ml1m, write_result
from paper_code import copy_reference_weights

MAX_LEN, HIDDEN, BATCH, LR = 200, 64, 128, 1e-3


def setting(dropout: float) -> dict:
    """recguard's published-variant settings that match the reference's ML-1M run."""
    return dict(hidden=HIDDEN, num_blocks=2, num_heads=1, max_len=MAX_LEN, block="published", positions="first",
                dropout=dropout, lr=LR, adam_beta2=0.999, batching="random", batch_size=BATCH, device="cpu")


class Lockstep:
    """The two models, their optimisers, and the training data laid out for both paddings."""

    def __init__(self, src: str, dropout: float, seed: int):
        import torch

        import recguard
        from recguard.victims._train import make_optimizer

        sys.path.insert(0, str(Path(src).resolve()))
        from models import SASRec as ReferenceSASRec

        self.split = recguard.data.load("ml-1m", path=require_ml1m()).split()
        train = self.split.train
        n = train.num_items
        torch.manual_seed(seed)
        self.reference = ReferenceSASRec(item_num=n, maxlen=MAX_LEN, hidden_units=HIDDEN, num_blocks=2, num_heads=1,
                                         dropout_rate=dropout)
        self.victim = recguard.make_victim("sasrec", **setting(dropout))
        self.ours = self.victim.build(n)
        copy_reference_weights(self.reference, self.ours)
        self.scorer = recguard.make_victim("sasrec", **setting(dropout))
        self.scorer.build(n)
        self.opt_reference = torch.optim.Adam(self.reference.parameters(), lr=LR)
        self.opt_ours = make_optimizer(self.ours, self.victim.config)
        self.gen = np.random.default_rng(seed)
        self.gen_t = torch.Generator().manual_seed(seed)
        self.lengths, self.starts = train.lengths, train.offsets[:-1]
        self.take = np.minimum(self.lengths, MAX_LEN + 1)
        self.users = np.flatnonzero(self.lengths >= 2)

    def batch(self, users: np.ndarray):
        """``(left, right)``: the users' last ``MAX_LEN + 1`` training items, left- and right-padded."""
        import torch

        from recguard.data._core import pad_from_csr

        width = int(self.take[users].max())
        left = torch.from_numpy(pad_from_csr(self.split.train.items, self.starts[users], self.lengths[users], width))
        real = left > 0
        right = torch.zeros_like(left)
        right[real.flip(1)] = left[real]  # each row's items moved to its front, in order
        return left, right

    def reference_loss(self, right, items_only: bool = False):
        import torch.nn.functional as F

        inputs, labels = right[:, :-1], right[:, 1:].clone()
        labels[labels == 0] = -100
        logits = self.reference(inputs, None)
        if items_only:
            keep = labels != -100
            return F.cross_entropy(logits[keep][:, 1:], labels[keep] - 1)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))

    def ours_loss(self, left):
        import torch

        return self.victim.training_loss(self.ours, left, torch.ones(len(left)), self.gen_t, None)

    def epoch(self) -> dict:
        from recguard.victims._train import batches

        self.reference.train()
        self.ours.train()
        sums = {"loss_reference": 0.0, "loss_recguard": 0.0}
        t0 = time.perf_counter()
        for idx in batches(self.take[self.users], BATCH, self.gen, bucket=1):
            left, right = self.batch(self.users[idx])
            for opt, loss, key in ((self.opt_reference, self.reference_loss(right), "loss_reference"),
                                   (self.opt_ours, self.ours_loss(left), "loss_recguard")):
                opt.zero_grad()
                loss.backward()
                opt.step()
                sums[key] += float(loss.detach())
        return {**sums, "train_s": time.perf_counter() - t0}

    def validation(self) -> dict:
        """Validation NDCG@10 of both models under both filters, and their largest weight gap."""
        import recguard

        out = {}
        self.reference.eval()
        self.ours.eval()
        copy_reference_weights(self.reference, self.scorer.module_)
        reference_weights = {n: p.detach().clone() for n, p in self.scorer.module_.named_parameters()}
        for name, load in (("reference", lambda: None), ("recguard", lambda: self.scorer.module_.load_state_dict(self.ours.state_dict()))):
            load()
            for seen in ("history", "window"):
                metrics = recguard.evaluate(self.scorer, self.split, which="valid", ks=(10,), seen=seen)
                out[f"valid_ndcg@10_{name}_{seen}"] = metrics["NDCG@10"]
        gaps = {n: (reference_weights[n] - p.detach()).abs() for n, p in self.ours.named_parameters()}
        gaps["item_emb.weight"] = gaps["item_emb.weight"][1:]  # the padding row: trained only by the reference
        out["max_weight_difference_items_and_layers"] = max(float(g.max()) for g in gaps.values())
        return out


def dropout_check(args) -> dict:
    """Mean loss and gradient of both models under dropout on one batch, at the reference's state after
    ``args.warm_steps`` training steps (weights copied into recguard's module)."""
    import torch
    import torch.nn.functional as F

    from recguard.victims._train import batches

    ls = Lockstep(args.src, 0.1, args.seed)
    order = batches(ls.take[ls.users], BATCH, ls.gen, bucket=1)
    for idx in order[: args.warm_steps]:
        _, right = ls.batch(ls.users[idx])
        loss = ls.reference_loss(right)
        ls.opt_reference.zero_grad()
        loss.backward()
        ls.opt_reference.step()
    copy_reference_weights(ls.reference, ls.ours)
    full = [idx for idx in order if len(idx) == BATCH]
    left, right = ls.batch(ls.users[full[-1]])
    ls.reference.train()
    ls.ours.train()
    pairs = (("item_emb.weight", "item_emb.weight"), ("pos_emb.weight", "pos_emb.weight"),
             ("last_layernorm.weight", "final_norm.weight"), ("forward_layers.0.conv1.weight", "blocks.0.ff1.weight"),
             ("attention_layers.1.out_proj.weight", "blocks.1.proj.weight"))

    def draws(model, loss_fn, names):
        params = dict(model.named_parameters())
        losses, grads = [], []
        for _ in range(args.draws):
            model.zero_grad()
            loss = loss_fn()
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append(torch.cat([params[n].grad.flatten() for n in names]))
        return np.array(losses), torch.stack(grads)

    loss_r, grad_r = draws(ls.reference, lambda: ls.reference_loss(right, items_only=True), [a for a, _ in pairs])
    loss_o, grad_o = draws(ls.ours, lambda: ls.ours_loss(left), [b for _, b in pairs])
    half = args.draws // 2

    def cos(a, b):
        return float(F.cosine_similarity(a, b, dim=0))

    return {
        "settings": vars(args), "parameters_compared": [list(p) for p in pairs],
        "mean_loss_reference": float(loss_r.mean()), "se_loss_reference": float(loss_r.std(ddof=1) / len(loss_r) ** 0.5),
        "mean_loss_recguard": float(loss_o.mean()), "se_loss_recguard": float(loss_o.std(ddof=1) / len(loss_o) ** 0.5),
        "cosine_mean_gradients_reference_vs_recguard": cos(grad_r.mean(0), grad_o.mean(0)),
        "cosine_mean_gradients_reference_half_vs_half": cos(grad_r[:half].mean(0), grad_r[half:].mean(0)),
        "cosine_mean_gradients_recguard_half_vs_half": cos(grad_o[:half].mean(0), grad_o[half:].mean(0)),
        "norm_mean_gradient_reference": float(grad_r.mean(0).norm()), "norm_mean_gradient_recguard": float(grad_o.mean(0).norm()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="the reference checkout's src/ folder")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout-check", action="store_true", help="compare mean loss and gradient under dropout instead")
    ap.add_argument("--warm-steps", type=int, default=100)
    ap.add_argument("--draws", type=int, default=60)
    args = parse_args(ap)
    if args.dropout_check:
        write_result("paper_code_dropout_check", dropout_check(args))
        return
    ls = Lockstep(args.src, args.dropout, args.seed)
    history = []
    for epoch in range(1, args.epochs + 1):
        history.append({"epoch": epoch, **ls.epoch(), **ls.validation()})
        print(history[-1], flush=True)
    write_result(f"paper_code_lockstep_d{args.dropout:g}", {"settings": vars(args), "history": history})


if __name__ == "__main__":
    main()
