"""Helpers for benchmark scripts: machine description, result files, shared-data paths."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = Path(os.environ.get("RECGUARD_SHARED", HERE.parent.parent / "shared"))
ML1M = SHARED / "data" / "ml-1m"


def training_step(victim, module, opt, x, w, gen, precision: str = "float32"):
    """One training step as ``fit`` takes it, for benchmarks that time or inspect steps: the host-built
    batch ``x`` and user weights ``w`` to the victim's device, the forward pass and loss under the
    precision's autocast, backward, optimiser step. Returns the loss (on the device)."""
    from recguard.victims._train import to_training_device, training_autocast

    x, w = to_training_device(victim.device, x, w)
    with training_autocast(precision, victim.device):
        loss = victim.training_loss(module, x, w, gen, None)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def machine() -> dict:
    import torch

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
    }


def parse_args(ap) -> argparse.Namespace:
    """Add ``--threads`` to ``ap``, parse the command line and apply it to torch."""
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_result(name: str, payload: dict, folder: Path | None = None) -> Path:
    """``payload`` plus the machine record as ``<folder>/<name>.json`` (default benchmarks/results)."""
    from recguard._io import atomic_write_json

    folder = RESULTS if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    atomic_write_json(path, {"machine": machine(), **payload})
    print(json.dumps(payload, indent=2, default=str))
    return path


def positions_per_epoch(split, max_len: int) -> int:
    """Next-item predictions one training epoch makes: each user's latest ``max_len + 1`` training items,
    for users with at least two."""
    import numpy as np

    lengths = split.train.lengths
    take = np.minimum(lengths, max_len + 1)
    return int(np.sum(np.maximum(take[lengths >= 2] - 1, 0)))


def require_shared(name: str) -> Path:
    """The shared copy of a dataset that recguard reads from a path (ml-1m, amazon-office, amazon-beauty)."""
    folder = SHARED / "data" / name
    if not folder.is_dir():
        sys.exit(f"{name} not found at {folder}; set RECGUARD_SHARED to the folder holding data/{name}/")
    return folder


def require_ml1m() -> Path:
    if not (ML1M / "ml-1m.txt.gz").exists():
        sys.exit(f"ML-1M not found at {ML1M}; set RECGUARD_SHARED to the folder holding data/ml-1m/")
    return ML1M


def data_path(dataset: str) -> str | None:
    """Where ``recguard.data.load`` reads ``dataset`` from: None for the bundled ML-100k, else the shared copy."""
    if dataset == "ml-100k":
        return None
    return str(require_ml1m() if dataset == "ml-1m" else require_shared(dataset))


def poison_for_seed(split, attack: str, seed: int, *, budget: float, max_len: int, clean_cache: dict):
    """``(result, poisoned split, victim factory)``: ``attack`` at ``budget`` with its default targets,
    drawn with ``[seed, 7]``, on SASRec (``max_len``, patience 3). A model-guided attack uses the
    clean model of the same seed as its surrogate (white-box), trained once per seed into ``clean_cache``."""
    import numpy as np

    import recguard
    from recguard.attacks.poisoning import ModelGuidedAttack, make_attack

    def victim():
        return recguard.SASRec(max_len=max_len, patience=3)

    atk = make_attack(attack, budget=budget, max_profile_length=max_len)
    if isinstance(atk, ModelGuidedAttack):
        if seed not in clean_cache:
            clean_cache[seed] = victim().fit(split, rng=seed)
        atk = atk.with_surrogate(clean_cache[seed])
    res = atk.poison(split.train, rng=np.random.default_rng([seed, 7]))
    return res, split.with_train(res.data), victim


def kept_cells(folder: Path, seeds: str, attacks, name, compute, show) -> list[dict]:
    """Every (seed, attack) cell of a grid (``attacks``: comma-separated, or a list), each kept as JSON in ``folder`` under
    ``name(attack, seed)`` so an interrupted run resumes: read when it exists, else
    ``compute(attack, seed)`` and written atomically; ``show(cell)`` prints a line for each."""
    from recguard._io import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    cells = []
    for seed in [int(s) for s in seeds.split(",")]:
        for attack in [a for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a]:
            f = folder / name(attack, seed)
            if f.exists():
                cell = json.loads(f.read_text())
            else:
                cell = compute(attack, seed)
                atomic_write_json(f, cell)
            cells.append(cell)
            print(show(cell), flush=True)
    return cells


def ml1m_victim(victim_dir: str, threads: int | None = None):
    """Set torch's thread count, load the shared ML-1M file, its split and a saved ML-1M victim."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    import recguard

    data = recguard.data.load("ml-1m", path=require_ml1m())
    victim = recguard.load(victim_dir)
    if victim.num_items != data.num_items:
        raise SystemExit(f"{victim_dir}: not an ML-1M victim")
    return data, data.split(), victim


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` → (key, value), the value read as JSON when it parses (numbers, true/false), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        sys.exit(f"--set {text!r}: expected KEY=VALUE, e.g. --set hidden=256")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
