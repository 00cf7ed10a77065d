"""The SASRec-CE paper's own code (antklen/sasrec-bert4rec-recsys23) on this machine, beside recguard.

Runs the reference ``src/run.py`` unchanged through ``_paper_code_run.py`` (CPU trainer, a seed,
ClearML stubbed) with the paper's ML-1M command (``--config-name=SASRec dataset.max_length=200``),
then reads its printed test and validation metrics and its per-epoch validation log into
``benchmarks/results/paper_code_<config>_<dataset>_s<seed><tag>.json``.

Usage:
    python benchmarks/paper_code.py --src /path/to/sasrec-bert4rec-recsys23/src \
        --python /path/to/reference-venv/bin/python --seed 0 --threads 2

The reference environment needs ``pip install torch==2.13.0 pytorch_lightning hydra-core omegaconf
pandas transformers`` and ``pip install --no-deps recommenders``. The ML-1M file is the shared copy
(``ml-1m.txt.gz``, the file the paper's repository ships), decompressed into the run folder.
``--collect DIR`` reads a finished run folder without running anything. ``--check-model`` runs
nothing long: it loads the reference ``SASRec`` from ``--src/models.py`` in recguard's environment,
copies its weights into recguard's ``SASRec(block="published", positions="first")`` module, and
compares logits and gradients on one batch of six histories (right-padded for the reference,
left-padded for recguard) in ``paper_code_model_equivalence.json``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from _common import require_ml1m, write_result

HERE = Path(__file__).resolve().parent
METRICS_LINE = re.compile(r"^\{'(?:val|test)_")
FLOAT_WRAPPER = re.compile(r"np\.float64\(([^)]*)\)")


def printed_metrics(log_text: str) -> dict[str, float]:
    """The metric dictionaries ``run.py`` prints (``{'test_ndcg@10': np.float64(0.17), ...}``), merged."""
    metrics: dict[str, float] = {}
    for line in log_text.replace("\r", "\n").splitlines():
        line = line.strip()
        if METRICS_LINE.match(line):
            metrics.update({k: float(v) for k, v in ast.literal_eval(FLOAT_WRAPPER.sub(r"\1", line)).items()})
    return metrics


def validation_history(run_dir: Path) -> list[float]:
    """Validation NDCG@10 after each epoch, from the CSV log of the newest Lightning version."""
    logs = sorted(run_dir.rglob("lightning_logs/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return []
    with open(logs[-1], newline="") as fh:
        return [float(row["val_ndcg"]) for row in csv.DictReader(fh) if row.get("val_ndcg")]


def training_seconds(log_text: str) -> float | None:
    found = re.findall(r"^training_time ([0-9.eE+-]+)$", log_text.replace("\r", "\n"), flags=re.M)
    return float(found[-1]) if found else None


def collect(run_dir: Path) -> dict:
    """The run's result: test and validation metrics at the best epoch, and the validation curve."""
    log_text = (run_dir / "log.txt").read_text(errors="replace")
    metrics = printed_metrics(log_text)
    if "test_ndcg@10" not in metrics:
        sys.exit(f"{run_dir / 'log.txt'}: no test metrics printed; the run did not finish (see its end)")
    curve = validation_history(run_dir)
    best = max(range(len(curve)), key=curve.__getitem__) + 1 if curve else None
    return {"metrics": metrics, "training_s": training_seconds(log_text), "epochs_run": len(curve),
            "best_epoch": best, "valid_ndcg@10_by_epoch": curve}


def copy_reference_weights(reference, ours) -> None:
    """Load the reference SASRec's weights into recguard's published-block module (same shapes)."""
    import torch

    d = ours.item_emb.weight.shape[1]
    with torch.no_grad():
        ours.item_emb.weight.copy_(reference.item_emb.weight)
        ours.pos_emb.weight.copy_(reference.pos_emb.weight)
        for i, blk in enumerate(ours.blocks):
            attention, feed_forward = reference.attention_layers[i], reference.forward_layers[i]
            blk.ln1.load_state_dict(reference.attention_layernorms[i].state_dict())
            blk.q.weight.copy_(attention.in_proj_weight[:d])
            blk.q.bias.copy_(attention.in_proj_bias[:d])
            blk.kv.weight.copy_(attention.in_proj_weight[d:])
            blk.kv.bias.copy_(attention.in_proj_bias[d:])
            blk.proj.load_state_dict(attention.out_proj.state_dict())
            blk.ln2.load_state_dict(reference.forward_layernorms[i].state_dict())
            for ours_linear, conv in ((blk.ff1, feed_forward.conv1), (blk.ff2, feed_forward.conv2)):
                ours_linear.weight.copy_(conv.weight[..., 0])
                ours_linear.bias.copy_(conv.bias)
        ours.final_norm.load_state_dict(reference.last_layernorm.state_dict())


def model_equivalence(src: str, seed: int = 0) -> dict:
    """Largest differences between the reference SASRec and recguard's published variant on one batch:
    eval-mode logits at every real position, the loss, and every gradient, with the reference's loss
    over all columns (its padding item included, as it trains) and over the items only (as recguard)."""
    import torch
    import torch.nn.functional as F

    from recguard.victims.sasrec import SASRecConfig, SASRecModule

    sys.path.insert(0, str(Path(src).resolve()))
    from models import SASRec as ReferenceSASRec

    torch.manual_seed(seed)
    n_items, hidden, max_len, lengths = 300, 64, 200, [201, 150, 37, 2, 120, 90]
    reference = ReferenceSASRec(item_num=n_items, maxlen=max_len, hidden_units=hidden, num_blocks=2, num_heads=1)
    with torch.no_grad():  # move every weight off its initial value (LayerNorm at 1, biases at 0)
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
        reference.item_emb.weight[0].zero_()
    ours = SASRecModule(n_items, SASRecConfig(hidden=hidden, num_blocks=2, num_heads=1, max_len=max_len,
                                              block="published", positions="first"))
    copy_reference_weights(reference, ours)
    reference.eval()
    ours.eval()
    width = max(lengths) - 1
    right = torch.zeros(len(lengths), width, dtype=torch.long)
    left, targets_right, targets_left = torch.zeros_like(right), torch.full_like(right, -100), torch.zeros_like(right)
    for b, n in enumerate(lengths):
        seq = torch.randint(1, n_items + 1, (n,))
        right[b, : n - 1], targets_right[b, : n - 1] = seq[:-1], seq[1:]
        left[b, width - n + 1:], targets_left[b, width - n + 1:] = seq[:-1], seq[1:]
    real_r, real_l = targets_right != -100, left > 0

    def reference_loss(items_only: bool):
        logits = reference(right, real_r.float())[real_r]
        return F.cross_entropy(logits[:, 1:], targets_right[real_r] - 1) if items_only else F.cross_entropy(logits, targets_right[real_r])

    def gradients(loss, model) -> dict:
        model.zero_grad()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    with torch.no_grad():
        reference_logits = reference(right, real_r.float())[real_r]
        logit_gap = (reference_logits - (ours.hidden_states(left) @ ours.item_emb.weight.T)[real_l]).abs().max()
    loss_all = reference_loss(False)
    grad_all = gradients(loss_all, reference)
    loss_items = reference_loss(True)
    grad_items = gradients(loss_items, reference)
    loss_ours = F.cross_entropy(ours.hidden_states(left)[real_l] @ ours.item_emb.weight[1:].T, targets_left[real_l] - 1)
    grad_ours = gradients(loss_ours, ours)

    def item_gap(a: dict, b: dict) -> float:
        return float((a["item_emb.weight"][1:] - b["item_emb.weight"][1:]).abs().max())

    return {
        "max_abs_logit": float(reference_logits.abs().max()),
        "logits_max_abs_difference": float(logit_gap),
        "loss_reference_all_columns": float(loss_all), "loss_reference_items_only": float(loss_items),
        "loss_recguard": float(loss_ours),
        "item_gradient_max_abs_difference_items_only": item_gap(grad_items, grad_ours),
        "item_gradient_max_abs_effect_of_padding_column": item_gap(grad_all, grad_items),
        "item_gradient_max_abs": float(grad_items["item_emb.weight"].abs().max()),
        "padding_row_gradient_max_abs_in_reference": float(grad_all["item_emb.weight"][0].abs().max()),
        "final_norm_gradient_max_abs_difference": float((grad_items["last_layernorm.weight"] - grad_ours["final_norm.weight"]).abs().max()),
    }


def run(args, run_dir: Path) -> None:
    """Run the reference code in ``run_dir`` (its Lightning logs and checkpoint land there), in its own
    process group, stopped with this script."""
    data_file = run_dir / f"{args.dataset}.txt"
    with gzip.open(require_ml1m() / "ml-1m.txt.gz", "rb") as src, open(data_file, "wb") as dst:
        shutil.copyfileobj(src, dst)
    overrides = [f"--config-name={args.config}", f"data_path={data_file}", "dataset.max_length=200",
                 "dataloader.num_workers=0", f"hydra.run.dir={run_dir / 'hydra'}", *args.override]
    cmd = [args.python, str(HERE / "_paper_code_run.py"), str(Path(args.src).resolve()), str(args.seed),
           str(args.threads), *overrides]
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir, start_new_session=True)
        try:
            if proc.wait() != 0:
                sys.exit(f"the reference run failed (exit {proc.returncode}); see {run_dir / 'log.txt'}")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="the reference checkout's src/ folder")
    ap.add_argument("--python", help="python of the reference environment")
    ap.add_argument("--config", default="SASRec", choices=["SASRec", "BERT4Rec"])
    ap.add_argument("--dataset", default="ml-1m", choices=["ml-1m"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--override", action="append", default=[], help="an extra Hydra override, key=value")
    ap.add_argument("--tag", default="")
    ap.add_argument("--collect", help="read this finished run folder instead of running")
    ap.add_argument("--check-model", action="store_true", help="compare the two models on one batch (needs --src only)")
    args = ap.parse_args()
    if args.check_model:
        if not args.src:
            ap.error("--check-model needs --src")
        write_result("paper_code_model_equivalence", {"settings": vars(args), **model_equivalence(args.src, args.seed)})
        return
    name = f"paper_code_{args.config}_{args.dataset}_s{args.seed}{args.tag}"
    if args.collect:
        run_dir = Path(args.collect)
    else:
        if not (args.src and args.python):
            ap.error("--src and --python are required unless --collect is given")
        run_dir = (Path("runs") / "paper_code" / name).resolve()
        if run_dir.exists():
            sys.exit(f"{run_dir} exists; collect it with --collect {run_dir} or choose another --tag")
        run_dir.mkdir(parents=True)
        run(args, run_dir)
    write_result(name, {"settings": vars(args), "reference": "antklen/sasrec-bert4rec-recsys23",
                        **collect(run_dir)})


if __name__ == "__main__":
    main()
