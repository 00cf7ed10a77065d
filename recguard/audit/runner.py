"""Runs an audit grid: a clean victim per seed, one poisoned training per
(attack, budget, defense, seed) cell. Every finished cell is written atomically to
``OUT/cells/``; re-running the same audit skips finished cells, so an interrupted
run loses nothing that finished. Clean victims are saved under ``OUT/models/`` and
reloaded on resume (the surrogate attack needs them)."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from .. import __version__
from .._io import atomic_write_json, claim_output_dir
from ..attacks.poisoning import InjectedAttack, make_attack, select_targets
from ..attacks.poisoning._base import MAX_BUDGET
from ..attacks.poisoning.inject import file_digest
from ..data import Split, load
from ..defenses import make_defense
from ..defenses.lorec import LCT_REVISION
from ..errors import ArtifactError, ConfigError
from ..metrics import clean_cost, detection_metrics, evaluate, target_exposure
from ..victims import build_victim, model_identity
from ..victims import load as load_victim
from ..victims._contract import require
from ..victims._factory import is_factory_path
from ..victims._train import TRAINING_REVISION
from ._lock import AuditLock
from .spec import AuditSpec

__all__ = ["run_audit", "cell_key", "preflight"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cell_key(spec: AuditSpec, kind: str, seed: int, attack: str = "", budget: float = 0.0, defense: str = "") -> dict:
    """Everything that determines a cell's numbers; its hash names the cell file."""
    base = {
        "kind": kind, "seed": int(seed), "dataset": [spec.dataset, spec.path, spec.min_rating, spec.k_core],
        "model": spec.model, "model_config": spec.model_config, "targets": spec.targets, "num_targets": spec.num_targets,
        "ks": list(spec.ks),
    }
    if is_factory_path(spec.model):  # the user's model code: an edited model is a new model
        base["model_sha256"] = model_identity(spec.model).get("module_sha256")
    if TRAINING_REVISION > 1:  # cells written before the first revision bump keep their names
        base["training_revision"] = TRAINING_REVISION
    if kind == "poisoned":
        base.update(attack=attack, budget=float(budget), defense=defense, order=spec.order,
                    attack_params=spec.attack_params.get(attack, {}),
                    surrogate=spec.surrogate if attack == "surrogate" else None)
        if attack == "extracted":
            base["extraction"] = spec.extraction
        if attack.startswith("inject:"):  # the file's content, not its name: an edited file is a new attack
            base["inject_sha256"] = file_digest(spec.inject_files()[attack])
    if kind in ("poisoned", "control"):
        base["defense"] = defense
        if spec.defense_params.get(defense):  # only when set, so older cells keep their names
            base["defense_params"] = spec.defense_params[defense]
        if defense == "lorec":
            base["defense_revision"] = LCT_REVISION
    return base


def cell_grid(spec: AuditSpec) -> list[tuple[str, float | None, str, int]]:
    """(attack, budget, defense, seed) of every poisoned cell, in the order they run
    (an injected file has no budget: ``None``)."""
    attacks = spec.attack_names()
    return [(a, b, d, s) for s in spec.seeds for a in attacks for b in ([None] if a.startswith("inject:") else spec.budgets)
            for d in spec.defenses]


def control_grid(spec: AuditSpec) -> list[tuple[str, int]]:
    """(defense, seed) of every control cell: a defense trained on the clean data."""
    if not spec.defense_controls:
        return []
    return [(d, s) for s in spec.seeds for d in spec.defenses if d != "none"]


def poisoned_key(spec: AuditSpec, attack: str, budget: float | None, defense: str, seed: int) -> dict:
    """:func:`cell_key` of one :func:`cell_grid` entry."""
    return cell_key(spec, "poisoned", seed, attack, budget or 0.0, defense)


def _cell_file(out: Path, key: dict) -> Path:
    if key["kind"] == "clean":
        name = f"clean_seed{key['seed']}"
    elif key["kind"] == "control":
        name = f"control_{key['defense']}_seed{key['seed']}"
    else:
        safe = key["attack"].replace(":", "-").replace("/", "-")
        name = f"{safe}_b{key['budget']:g}_{key['defense']}_seed{key['seed']}"
    return out / "cells" / f"{name}_{_hash(key)}.json"


def provenance(command: list[str] | None = None, model: str | None = None) -> dict:
    import numpy
    import torch

    out = {
        "recguard": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "platform": platform.platform(), "command": command or sys.argv,
    }
    if model is not None:
        out["model"] = model_identity(model)  # a factory's import path and the SHA-256 of its file
    return out


def _victim_metrics(victim, split: Split, targets: np.ndarray, ks) -> dict:
    clean = evaluate(victim, split, which="test", ks=(10, 20))
    tgt = target_exposure(victim, split, targets, ks=ks)
    return {"clean": {k: clean[k] for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20")}, "target": tgt}


def run_audit(
    spec: AuditSpec,
    out: str | Path,
    *,
    progress: bool | None = None,
    command: list[str] | None = None,
    on_cell: Callable[[dict], None] | None = None,
    jobs: int = 1,
    _claim: Callable[[str], bool] | None = None,
    _phase: str | None = None,
) -> dict:
    """Run (or resume) the audit and write ``results.json``, ``report.md`` and ``report.html``.

    ``jobs`` > 1 computes the missing cells in that many worker processes first (each with
    its share of torch's threads; cells are claimed one at a time, so the load balances),
    then assembles the report here. A cell's numbers do not depend on which process computed
    it, only on the thread count (floating-point reduction order). Returns the results
    dictionary (also in ``OUT/results.json``).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"must be a positive integer, got {jobs!r}", param="jobs")
    if not isinstance(spec, AuditSpec):
        raise ConfigError(f"expected an AuditSpec, got {type(spec).__name__}", param="spec")
    out = Path(out)
    if _claim is not None:  # a worker of a parallel audit: its parent holds the folder
        return _run_audit(spec, out, progress=progress, command=command, on_cell=on_cell, jobs=1, _claim=_claim, _phase=_phase)
    claim_output_dir(out, "audit", resumable=True)
    with AuditLock(out):
        return _run_audit(spec, out, progress=progress, command=command, on_cell=on_cell, jobs=jobs)


def preflight(spec: AuditSpec, split: Split) -> dict[str, InjectedAttack]:
    """Every check that needs the data, before anything trains: the victim's settings, the
    targets, each attack on this data, the surrogate and the injected files. Returns the
    injected attacks by name."""
    train = split.train
    victim = build_victim(spec.model, num_items=train.num_items, **spec.model_config)
    max_len = victim.max_len
    for need, who in capability_needs(spec):
        require(victim, need, who=who)
    targets = select_targets(train, spec.targets if isinstance(spec.targets, str) else list(spec.targets), spec.num_targets,
                             np.random.default_rng([spec.seeds[0], 7919]))
    for a in spec.attacks:
        params = dict(spec.attack_params.get(a, {}))
        atk = make_attack("surrogate" if a == "extracted" else a, budget=spec.budgets[0], targets=targets.tolist(),
                          num_targets=len(targets), max_profile_length=max_len, order=params.pop("order", spec.order), **params)
        if a not in ("surrogate", "extracted"):  # those check their surrogate once it exists
            atk._check(train)
    if "extracted" in spec.attacks:
        sur = _extraction_surrogate(spec, train.num_items)
        require(sur, ["distill", *make_attack("surrogate").requires()], who="the extracted attack's surrogate")
    if "surrogate" in spec.attacks and spec.surrogate not in ("victim", "retrain"):
        sur = _surrogate(spec, None, split, None, 0)
        if sur.num_items != train.num_items:
            raise ConfigError(f"{spec.surrogate}: the surrogate knows {sur.num_items} items, the dataset has {train.num_items}",
                              param="surrogate")
    injected = {}
    for name, path in spec.inject_files().items():
        atk = InjectedAttack(path)
        atk.check(train, max_fake_users=int(MAX_BUDGET * train.num_users))
        injected[name] = atk
    return injected


def _run_audit(spec: AuditSpec, out: Path, *, progress, command, on_cell, jobs: int, _claim=None, _phase=None) -> dict:
    from .report import build_results, write_reports

    t_start = time.perf_counter()
    data = load(spec.dataset, spec.path, min_rating=spec.min_rating, k_core=spec.k_core)
    split = data.split()
    injected = preflight(spec, split)
    if _claim is None:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "spec.json", spec.to_dict())
        if jobs > 1:
            from ._parallel import run_workers

            run_workers(spec, out, jobs, progress=sys.stderr.isatty() if progress is None else progress)
    cfg = dict(spec.model_config)
    make_v = lambda: build_victim(spec.model, num_items=data.num_items, **cfg)  # noqa: E731
    max_len = make_v().max_len
    grid = cell_grid(spec)
    controls = control_grid(spec)
    total = len(spec.seeds) + len(controls) + len(grid)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="audit", unit="cell", file=sys.stderr, dynamic_ncols=True)
    cells: list[dict] = []

    def finish(cell: dict) -> None:
        cells.append(cell)
        if on_cell:
            on_cell(cell)
        if bar is not None:
            bar.update(1)

    try:
        for seed in spec.seeds:
            ckey = cell_key(spec, "clean", seed)
            cfile = _cell_file(out, ckey)
            model_dir = out / "models" / f"clean_seed{seed}_{_hash(ckey)}"
            clean_victim = None
            if cfile.exists() and (model_dir / "weights.safetensors").exists():
                clean_cell = json.loads(cfile.read_text())
            elif _claim is not None and not _claim(f"clean_seed{seed}"):
                continue  # another worker trains this seed's clean model
            else:
                if bar is not None:
                    bar.set_postfix_str(f"clean seed {seed}")
                targets = select_targets(split.train, spec.targets if isinstance(spec.targets, str) else list(spec.targets),
                                         spec.num_targets, np.random.default_rng([seed, 7919]))
                t0 = time.perf_counter()
                clean_victim = make_v().fit(split, rng=seed, progress=False)
                train_s = time.perf_counter() - t0
                clean_victim.save(model_dir, overwrite=True)  # the audit's own folder
                clean_cell = {
                    "key": ckey, "kind": "clean", "seed": seed, "targets": targets.tolist(),
                    "data_fingerprint": data.fingerprint(), "train_fingerprint": split.train.fingerprint(),
                    "metrics": _victim_metrics(clean_victim, split, targets, spec.ks),
                    "train": clean_victim.fit_info_, "wall_time_s": time.perf_counter() - t0, "train_time_s": train_s,
                }
                atomic_write_json(cfile, clean_cell)
            finish(clean_cell)
            loaded = {"clean": clean_victim}

            def clean_model() -> object:
                """The seed's clean victim, reloaded from OUT/models/ when this run did not train it."""
                if loaded["clean"] is None:
                    loaded["clean"] = _reload(spec.model, model_dir, make_v)
                return loaded["clean"]

            surrogates: dict = {}
            if _phase == "clean":  # a worker's first phase: the seed's clean model and its extracted surrogate
                if any(g[0] == "extracted" and g[3] == seed and not _cell_file(out, poisoned_key(spec, *g)).exists() for g in grid) \
                        and _claim(f"extracted_seed{seed}"):
                    _extracted(spec, clean_model(), split, seed, out, _hash(ckey))
                continue
            def cached(key: dict, label: str, compute: Callable[[], dict]) -> None:
                """A finished cell from disk, or computed here (unless another worker claimed it)."""
                path = _cell_file(out, key)
                if path.exists():
                    cell = json.loads(path.read_text())
                elif _claim is not None and not _claim(path.stem):
                    return
                else:
                    if bar is not None:
                        bar.set_postfix_str(label)
                    cell = compute()
                    cell["key"] = key
                    atomic_write_json(path, cell)
                finish(cell)

            def poisoned_cell(a: str, b: float | None, d: str) -> dict:
                if a == "surrogate" and a not in surrogates:
                    surrogates[a] = (_surrogate(spec, clean_model(), split, make_v, seed), None)
                if a == "extracted" and a not in surrogates:
                    surrogates[a] = _extracted(spec, clean_model(), split, seed, out, _hash(cell_key(spec, "clean", seed)))
                sur, sur_info = surrogates.get(a, (None, None))
                cell = _run_cell(spec, split, a, b, d, seed, make_v, max_len, sur, injected, clean_cell, clean_model)
                if sur_info is not None:
                    cell["extraction"] = sur_info
                return cell

            for d in [c[0] for c in controls if c[1] == seed]:
                cached(cell_key(spec, "control", seed, defense=d), f"{d} on clean data, seed {seed}",
                       lambda d=d: _run_control(spec, split, d, seed, make_v, clean_cell))
            for a, b, d, s in [g for g in grid if g[3] == seed]:
                cached(poisoned_key(spec, a, b, d, s), f"{a} {'' if b is None else f'{b:g} '}{d} seed {seed}",
                       lambda a=a, b=b, d=d: poisoned_cell(a, b, d))
    finally:
        if bar is not None:
            bar.close()
    if _claim is not None:  # a worker: the parent assembles the report
        return {}
    results = build_results(spec, cells, provenance(command, spec.model), wall_time_s=time.perf_counter() - t_start)
    write_reports(results, out)
    return results


def capability_needs(spec: AuditSpec) -> list[tuple[list[str], str]]:
    """What the audited victim must offer for this grid: (capabilities, who needs them)."""
    from ..defenses import make_defense

    needs = [(["retrain"], "an audit (every cell retrains the victim)")]
    for d in spec.defenses:
        needs.append((list(make_defense(d, **spec.defense_params.get(d, {})).requires), f"the {d} defense"))
    if "surrogate" in spec.attacks and spec.surrogate in ("victim", "retrain"):
        atk = make_attack("surrogate", **{k: v for k, v in spec.attack_params.get("surrogate", {}).items() if k != "order"})
        needs.append((atk.requires(), f"the surrogate attack with surrogate={spec.surrogate!r}"))
    return needs


def _reload(model: str, directory: Path, make_v):
    """A victim saved under the audit folder: recguard's own through recguard.load, a factory's
    by loading the weights into a fresh instance from the factory."""
    if is_factory_path(model):
        return make_v().load_weights(directory)
    return load_victim(directory)


def _extraction_surrogate(spec: AuditSpec, num_items: int):
    """An unfitted victim of the architecture the ``extracted`` attack distils into."""
    name = spec.extraction.get("surrogate", spec.model)
    return build_victim(name, num_items=num_items, **(spec.model_config if name == spec.model else {}))


def _surrogate(spec: AuditSpec, clean_victim, split: Split, make_v, seed: int):
    if spec.surrogate == "victim":
        return clean_victim
    if spec.surrogate == "retrain":
        return make_v().fit(split, rng=seed + 1_000_003, progress=False)  # the attacker's own model
    path = Path(spec.surrogate)
    if not path.exists():
        raise ConfigError(f"{path}: not found; surrogate must be 'victim', 'retrain' or a saved victim directory", param="surrogate")
    try:
        return load_victim(path)
    except ArtifactError as exc:
        raise ConfigError(f"surrogate {path}: {exc}", param="surrogate") from None


def _detection(outcome, result, defense_name: str) -> dict | None:
    """Detection metrics of the defense on the injected users (None for ``none``)."""
    if defense_name == "none" or (outcome.scores is None and outcome.flagged is None):
        return None
    is_fake = np.zeros(result.data.num_users, dtype=bool)
    is_fake[result.fake_users] = True
    return detection_metrics(is_fake, outcome.scores, outcome.decisions())


def _extracted(spec: AuditSpec, clean_victim, split: Split, seed: int, out: Path, tag: str):
    """The black-box chain's surrogate: extracted from the clean victim's top-k lists only
    (saved under OUT/models/ with its extraction report, reused on resume)."""
    from ..attacks.extraction import agreement, extract
    from ..victims import BlackBoxVictim

    opts = {"mode": "data-free", "num_sequences": 5000, "k": 100, "surrogate": spec.model, "epochs": 30,
            "real_fraction": 0.1, "random_share": 0.1, "length": None, **spec.extraction}
    where = out / "models" / f"extracted_seed{seed}_{_hash([tag, opts])}"
    info_file = where / "extraction.json"
    if info_file.exists() and (where / "weights.safetensors").exists():
        return (_reload(opts["surrogate"], where, lambda: _extraction_surrogate(spec, clean_victim.num_items)),
                json.loads(info_file.read_text()))
    rng = np.random.default_rng([seed, 4242])
    real = None
    if opts["mode"] == "few-shot":
        n_real = max(1, int(round(opts["real_fraction"] * split.train.num_users)))
        real = [split.train[u].tolist() for u in rng.choice(split.train.num_users, size=n_real, replace=False)]
    bb = BlackBoxVictim(clean_victim, k=min(int(opts["k"]), clean_victim.num_items))
    t0 = time.perf_counter()
    res = extract(bb, mode=opts["mode"], num_sequences=int(opts["num_sequences"]), length=opts["length"], real_sequences=real,
                  random_share=float(opts["random_share"]), surrogate=opts["surrogate"],
                  surrogate_config={k: v for k, v in spec.model_config.items() if opts["surrogate"] == spec.model},
                  epochs=int(opts["epochs"]), rng=rng, progress=False, checkpoint=out / "models" / f"{where.name}.transcript")
    x, _ = split.inputs("test", clean_victim.max_len)
    info = {**opts, "queries": res.queries, "time_s": time.perf_counter() - t0, "agreement": agreement(clean_victim, res.surrogate, x),
            "surrogate_NDCG@10": evaluate(res.surrogate, split, which="test", ks=(10,))["NDCG@10"]}
    res.surrogate.save(where, overwrite=True)  # the audit's own folder: a save cut short before its report is redone
    atomic_write_json(info_file, info)
    return res.surrogate, info


def _train_defended(spec, train_split: Split, defense_name: str, seed: int, make_v, rng) -> tuple:
    """Train the victim on ``train_split`` under the defense: (victim, outcome, train s, defense s)."""
    defense = make_defense(defense_name, **spec.defense_params.get(defense_name, {}))
    t0 = time.perf_counter()
    victim, outcome = defense.train(train_split, make_victim=make_v, seed=seed, rng=rng)
    total_s = time.perf_counter() - t0
    train_s = victim.fit_info_["train_time_s"]
    return victim, outcome, train_s, float(outcome.info.get("defense_time_s", total_s - train_s))


def _run_control(spec, split, defense_name, seed, make_v, clean_cell) -> dict:
    """The defense trained on the clean data: its own effect on the targets and on quality."""
    t0 = time.perf_counter()
    rng_defense = np.random.default_rng([seed, int(_hash(["control", defense_name]), 16) % (2**31), 1])
    victim, outcome, train_s, defense_s = _train_defended(spec, split, defense_name, seed, make_v, rng_defense)
    targets = np.asarray(clean_cell["targets"], dtype=np.int64)
    metrics = _victim_metrics(victim, split, targets, spec.ks)
    cm = clean_cell["metrics"]
    derived = {f"shift_T-HR@{k}": metrics["target"][f"T-HR@{k}"] - cm["target"][f"T-HR@{k}"] for k in spec.ks}
    derived["clean_cost_NDCG@10"] = clean_cost(cm["clean"]["NDCG@10"], metrics["clean"]["NDCG@10"])
    flagged = outcome.decisions()
    return {
        "kind": "control", "seed": seed, "defense": defense_name, "targets": targets.tolist(), "metrics": metrics,
        "clean_target": cm["target"], "derived": derived, "defense_info": outcome.info,
        "flagged_share": None if flagged is None else float(np.mean(flagged[: split.train.num_users])),
        "train": victim.fit_info_, "defense_time_s": defense_s, "train_time_s": train_s, "wall_time_s": time.perf_counter() - t0,
    }


def _run_cell(spec, split, attack_name, budget, defense_name, seed, make_v, max_len, surrogate, injected, clean_cell, clean_model) -> dict:
    t0 = time.perf_counter()
    # the fake users depend on (attack, budget, seed) only, so every defense faces the very same
    # injected users as the undefended cell (paired comparison); the defense gets its own stream
    rng = np.random.default_rng([seed, int(_hash([attack_name, budget, "none"]), 16) % (2**31)])
    rng_defense = np.random.default_rng([seed, int(_hash([attack_name, budget, defense_name]), 16) % (2**31), 1])
    if attack_name.startswith("inject:"):
        attack = injected[attack_name]
        if attack.sha256 != file_digest(attack.path):
            raise ConfigError(f"{attack.path}: the file changed while the audit ran; run the audit again", param="inject")
    else:
        params = dict(spec.attack_params.get(attack_name, {}))
        targets = clean_cell["targets"]
        attack = make_attack("surrogate" if attack_name == "extracted" else attack_name, budget=budget, targets=targets,
                             num_targets=len(targets),
                             max_profile_length=max_len, order=params.pop("order", spec.order), **params)
        if attack_name in ("surrogate", "extracted"):
            attack = attack.with_surrogate(surrogate)
    result = attack.poison(split.train, rng=rng)
    attack_s = time.perf_counter() - t0
    victim, outcome, train_s, defense_s = _train_defended(spec, split.with_train(result.data), defense_name, seed, make_v,
                                                          rng_defense)
    metrics = _victim_metrics(victim, split, result.targets, spec.ks)
    cm = clean_cell["metrics"]
    if sorted(result.targets.tolist()) == sorted(clean_cell["targets"]):
        clean_target = cm["target"]
    else:  # an external attack promotes its own targets: measure them on the clean model too
        clean_target = target_exposure(clean_model(), split, result.targets, ks=spec.ks)
    derived = {f"lift_T-HR@{k}": metrics["target"][f"T-HR@{k}"] - clean_target[f"T-HR@{k}"] for k in spec.ks}
    derived["clean_cost_NDCG@10"] = clean_cost(cm["clean"]["NDCG@10"], metrics["clean"]["NDCG@10"])
    return {
        "kind": "poisoned", "seed": seed, "attack": attack_name, "budget": budget, "defense": defense_name,
        "targets": [int(t) for t in result.targets], "num_fake_users": int(len(result.fake_users)),
        "attack_meta": result.meta, "poisoned_fingerprint": result.data.fingerprint(),
        "metrics": metrics, "clean_target": clean_target, "derived": derived, "defense_info": outcome.info,
        "detection": _detection(outcome, result, defense_name),
        "train": victim.fit_info_, "attack_time_s": attack_s, "defense_time_s": defense_s, "train_time_s": train_s,
        "wall_time_s": time.perf_counter() - t0,
    }
