"""One prepared GPU benchmark (issue 29): absolute figures for a lent GPU, in one command under 8 minutes.

Measured, one after another on the GPU alone (each section stops at its own time cap, the whole
script at ``--budget-s``):

0. ``syncs``: how many times one training step makes the host wait for the GPU (CUDA's sync debug
   mode), for SASRec (full CE and sampled), BERT4Rec and GRU4Rec, and at which source lines.
1. ``throughput``: SASRec training steps (64-dim, 2 blocks, max length 50) on synthetic Zipf
   catalogues of 3k to 200k items, full CE against the sampled default (``sampled_ce``, 1,024
   shared negatives), fp32 at batch 128; then at 200k items batch 512 and bfloat16 autocast.
   Positions per second, and the **CUDA crossover**: the smallest catalogue at which full CE
   trains fewer positions per second than the sampled loss (what ``AUTO_SAMPLED_FROM["cuda"]``
   should hold; full CE stays the default below it).
2. ``ml1m``: SASRec-CE on ML-1M with the SASRec-CE paper's recipe (lr 1e-3, dropout 0.1, plain
   shuffled batches, validation every epoch, patience 10, max length 200), once in float32 and once
   with ``precision="bfloat16"`` (``--ml1m-precisions``): seconds per epoch, time to the best
   validation epoch, whether it converged within the cap (``--ml1m-cap-s`` per run), test
   NDCG@10 / HR@10, positions per second.
3. ``beauty``: Amazon Beauty (max length 50), full CE against the CPU's sampled default
   (``sampled_ce``, 1,024 uniform negatives), each to convergence or ``--beauty-cap-s``.

GPU utilisation (``torch.cuda.utilization``, else ``nvidia-smi``) is sampled twice a second
during every section. Everything goes to ``benchmarks/results/gpu.json`` (``--out`` to change),
rewritten after each section so a stopped run keeps what it finished.

Usage (on the GPU machine, from the repository root):
    python benchmarks/gpu.py [--data DIR] [--budget-s 450]
    python benchmarks/gpu.py --smoke     # a tiny CPU run of every section: checks the script itself

``--data`` is the folder holding ``ml-1m/`` and ``amazon-beauty/`` (default: $RECGUARD_SHARED/data).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED, machine, positions_per_epoch, training_step

SIZES = (3_000, 12_000, 24_000, 50_000, 100_000, 200_000)


class Utilisation:
    """GPU utilisation (%) sampled every ``every`` seconds in a background thread while in the block."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> float | None:
        import torch

        if not torch.cuda.is_available():
            return None
        try:
            return float(torch.cuda.utilization())
        except Exception:  # torch reads it through pynvml, which may be missing
            if shutil.which("nvidia-smi") is None:
                return None
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = np.asarray(self.samples, dtype=np.float64)
        return {"samples": int(len(s)), "mean_pct": float(s.mean()) if len(s) else None,
                "median_pct": float(np.median(s)) if len(s) else None}


def crossover(rows: list[dict]) -> int | None:
    """The smallest catalogue at which full CE trains fewer positions per second than the sampled loss
    (fp32, the default batch), or None when CE is never slower in the sizes measured."""
    smallest = min((r["batch_size"] for r in rows), default=0)
    by = {(r["items"], r["loss"]): r["positions_per_s"] for r in rows if not r["bf16"] and r["batch_size"] == smallest}
    for n in sorted({n for n, _ in by}):
        if (n, "ce") in by and (n, "sampled_ce") in by and by[(n, "ce")] < by[(n, "sampled_ce")]:
            return n
    return None


def throughput(args, device: str, deadline: float) -> dict:
    from catalogue_scale import train_rate

    rows = []
    sizes = (300, 1_200) if args.smoke else SIZES
    plans = [(n, loss, 128, False) for n in sizes for loss in ("ce", "sampled_ce")]
    plans += [(sizes[-1], loss, 512, bf16) for loss in ("ce", "sampled_ce") for bf16 in (False, True)]
    with Utilisation() as util:
        for n, loss, batch, bf16 in plans:
            if time.perf_counter() > deadline:
                break
            r = train_rate(n, loss, 2 if args.smoke else 20, device=device, batch_size=batch if not args.smoke else batch // 4, bf16=bf16)
            rows.append(r)
            print(f"throughput {n:>7} items {loss:>10} batch {batch} {'bf16' if bf16 else 'fp32'}: "
                  f"{r['positions_per_s']:,.0f} positions/s", flush=True)
    return {"rows": rows, "cuda_crossover_items": crossover(rows), "utilisation": util.summary()}


def train_to_convergence(split, cap_s: float, device: str, **settings) -> dict:
    """Train SASRec with ``settings`` until early stopping or ``cap_s`` seconds; test metrics of the best epoch."""
    import recguard
    from recguard.metrics import evaluate

    victim = recguard.SASRec(device=device, **settings)
    t0 = time.perf_counter()
    with Utilisation() as util:
        victim.fit(split, rng=0, progress=False, on_epoch_end=lambda e, v: time.perf_counter() - t0 > cap_s)
    wall = time.perf_counter() - t0
    info = victim.fit_info_
    best = next((h for h in victim.history_ if h["epoch"] == info["best_epoch"]), victim.history_[-1])
    per_epoch = positions_per_epoch(split, victim.max_len)
    test = evaluate(victim, split, which="test", ks=(10,))
    return {"settings": settings, "objective": info["objective"], "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
            "converged": not wall > cap_s, "wall_s": wall, "train_s": info["train_time_s"],
            "s_per_epoch": info["train_time_s"] / max(1, info["epochs_run"]), "time_to_best_s": best["time_s"],
            "positions_per_s": per_epoch * info["epochs_run"] / max(info["train_time_s"], 1e-9),
            "best_valid_ndcg@10": info["best_valid_ndcg@10"], "test_ndcg@10": test["NDCG@10"], "test_hr@10": test["HR@10"],
            "utilisation": util.summary()}


def load_split(args, name: str):
    import recguard

    if args.smoke:
        from catalogue_scale import synthetic

        return synthetic(400 if name == "ml-1m" else 900, 300, seed=1).split()
    folder = Path(args.data) / name
    if not folder.is_dir():
        raise SystemExit(f"{name} not found at {folder}; pass --data DIR holding {name}/ (or set RECGUARD_SHARED)")
    return recguard.data.load(name, path=folder).split()


def ml1m(args, device: str, deadline: float) -> dict:
    split = load_split(args, "ml-1m")
    recipe = dict(lr=1e-3, dropout=0.1, batching="random", eval_every=1, patience=10, max_len=200, epochs=300, loss="ce")
    if args.smoke:
        recipe.update(max_len=20, epochs=2)
    rows = {}
    for precision in [p for p in args.ml1m_precisions.split(",") if p]:
        left = deadline - time.perf_counter()
        if left < 10:
            break
        row = rows[precision] = train_to_convergence(split, min(args.ml1m_cap_s, left), device, precision=precision, **recipe)
        print(f"ml-1m sasrec-ce {precision}: {row['s_per_epoch']:.2f} s/epoch, best epoch {row['best_epoch']} at "
              f"{row['time_to_best_s']:.0f} s, converged {row['converged']}, test NDCG@10 {row['test_ndcg@10']:.4f}", flush=True)
    return rows


def beauty(args, device: str, deadline: float) -> dict:
    split = load_split(args, "amazon-beauty")
    rows = {}
    for name, loss in (("full_ce", dict(loss="ce")), ("sampled_default_cpu", dict(loss="sampled_ce", num_negatives=1024))):
        left = deadline - time.perf_counter()
        if left < 10:
            break
        settings = dict(max_len=50, eval_every=1, **loss)
        if args.smoke:
            settings.update(max_len=20, epochs=2)
        rows[name] = train_to_convergence(split, min(args.beauty_cap_s, left), device, **settings)
        r = rows[name]
        print(f"beauty {name}: {r['wall_s']:.0f} s, best epoch {r['best_epoch']}, test NDCG@10 {r['test_ndcg@10']:.4f}", flush=True)
    return rows


SYNC_STEPS = (("sasrec", "ce"), ("sasrec", "sampled_ce"), ("bert4rec", "ce"), ("gru4rec", "ce"))


def host_syncs(args, device: str, deadline: float) -> dict:
    """Synchronising CUDA calls per training step, counted by ``torch.cuda.set_sync_debug_mode("warn")``
    over ``fit``'s step (batch transfer, autocast forward, loss, backward, optimiser) on ML-1M batches,
    for each victim: how often a step makes the host wait for the device, and at which lines."""
    import warnings

    import torch

    import recguard
    from recguard.data._core import pad_from_csr
    from recguard.victims._train import batches, training_optimizer

    train = load_split(args, "ml-1m").train
    steps = 2 if args.smoke else 5
    rows = {}
    for arch, loss in SYNC_STEPS:
        if time.perf_counter() > deadline:
            break
        victim = recguard.make_victim(arch, device=device, loss=loss, max_len=20 if args.smoke else 200, precision="bfloat16")
        victim.num_items = train.num_items
        module = victim.build(train.num_items)
        module.train()
        opt, _ = training_optimizer(victim, module, train.num_items)
        take = np.minimum(train.lengths, victim.max_len + 1)
        gen = torch.Generator(device=victim.device).manual_seed(0)
        w_all = torch.ones(train.num_users, dtype=torch.float64)
        counts, where = [], {}
        for i, users in enumerate(batches(take, 128, np.random.default_rng(0))[: steps + 1]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if device == "cuda":
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    x = torch.from_numpy(pad_from_csr(train.items, train.offsets[:-1][users], train.lengths[users], int(take[users].max())))
                    training_step(victim, module, opt, x, w_all[users], gen, "bfloat16")
                finally:
                    if device == "cuda":
                        torch.cuda.set_sync_debug_mode("default")
            syncs = [c for c in caught if "synchroniz" in str(c.message)]
            if i == 0:
                continue  # the first step also builds the optimiser state
            counts.append(len(syncs))
            for c in syncs:
                key = f"{Path(c.filename).name}:{c.lineno}"
                where[key] = where.get(key, 0) + 1
        rows[f"{arch}_{loss}"] = {"steps": len(counts), "syncs_per_step": float(np.mean(counts)) if counts else None,
                                  "where": where, "objective": victim.objective.describe()}
        print(f"host syncs {arch} {loss}: {rows[f'{arch}_{loss}']['syncs_per_step']} per step {where}", flush=True)
    return rows


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "data"))
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting new work after this many seconds")
    ap.add_argument("--ml1m-cap-s", type=float, default=120.0, help="cap per ML-1M run")
    ap.add_argument("--ml1m-precisions", default="float32,bfloat16", help="ML-1M runs, one per training precision")
    ap.add_argument("--beauty-cap-s", type=float, default=60.0)
    ap.add_argument("--sections", default="syncs,throughput,ml1m,beauty")
    ap.add_argument("--smoke", action="store_true", help="tiny synthetic data on the CPU: checks that every section runs")
    ap.add_argument("--out", default=str(RESULTS / "gpu.json"))
    args = ap.parse_args()
    if args.smoke:
        device = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible: run this on the GPU machine, or pass --smoke to check the script on a CPU")
    else:
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the CPU figures it is compared with are fp32
    from recguard._io import atomic_write_json

    start = time.perf_counter()
    deadline = start + args.budget_s
    out = {"machine": machine(), "device": device, "smoke": args.smoke, "budget_s": args.budget_s}
    sections = {"syncs": host_syncs, "throughput": throughput, "ml1m": ml1m, "beauty": beauty}
    for name in [s for s in args.sections.split(",") if s]:
        if name not in sections:
            raise SystemExit(f"--sections: unknown section {name!r}; choose from {', '.join(sections)}")
        if time.perf_counter() > deadline:
            out.setdefault("skipped", []).append(name)
            continue
        t = time.perf_counter()
        out[name] = sections[name](args, device, deadline)
        out[name + "_s"] = time.perf_counter() - t
        out["total_s"] = time.perf_counter() - start
        atomic_write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k.endswith("_s") or k in ("device", "skipped")}, indent=1))


if __name__ == "__main__":
    main()
