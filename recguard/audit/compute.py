"""Computing one audit cell from (spec, cell, the seed's clean result, the artifact store).

:func:`compute` is what every backend runs — in this process, in a local worker process or
in a Ray task — so a cell's numbers do not depend on where it ran (only on the torch thread
count, through floating-point reduction order). It is not pure: a clean cell saves its victim
and an extraction cell its surrogate into the store, and each process keeps the split and the
models it loaded in memory for its next cell. Its random streams are named: the fake users
of (attack, budget, seed) come from one stream whatever the defense, so every defense faces
exactly the same injected users as the undefended cell, and each defense draws from a stream
of its own.

Large artifacts — each seed's trained clean victim, the surrogate extracted from it — live in
an :class:`ArtifactStore`: ``OUT/models/`` as safetensors + JSON, the layout a resumed audit
reads. Nothing is pickled.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json
from .._version import __version__
from ..attacks.poisoning import MAX_BUDGET, InjectedAttack, ModelGuidedAttack, make_attack, select_targets
from ..data import Split, load
from ..defenses import make_defense
from ..errors import ArtifactError, ConfigError
from ..metrics import clean_cost, detection_metrics, evaluate, target_exposure
from ..victims import build_victim, is_factory_path, model_identity, require
from ..victims import load as load_victim
from .cells import Cell, CellResult, cell_key, short_hash
from .spec import AuditSpec

__all__ = ["compute", "ArtifactStore", "store_for", "preflight", "provenance", "attack_stream", "defense_stream", "poison", "run_task"]

EXTRACTION_DEFAULTS = {"mode": "data-free", "num_sequences": 5000, "k": 100, "epochs": 30, "real_fraction": 0.1,
                       "random_share": 0.1, "length": None}


# --------------------------------------------------------------------------- named streams
def attack_stream(seed: int, attack: str, budget: float | None) -> np.random.Generator:
    """The fake users of (attack, budget, seed): one stream whatever the defense (paired cells)."""
    return np.random.default_rng([seed, int(short_hash([attack, budget, "none"]), 16) % (2**31)])


def defense_stream(seed: int, *name: Any) -> np.random.Generator:
    """A defense's own stream, named by the cell it serves."""
    return np.random.default_rng([seed, int(short_hash(list(name)), 16) % (2**31), 1])


def target_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 7919])


# --------------------------------------------------------------------------- data and artifacts
_SPLITS: dict[str, Split] = {}


def load_split(spec: AuditSpec) -> Split:
    """The spec's split, loaded once per process (a worker computes many cells of one dataset)."""
    key = json.dumps([spec.dataset, spec.path, spec.min_rating, spec.k_core])
    if key not in _SPLITS:
        _SPLITS.clear()
        _SPLITS[key] = load(spec.dataset, spec.path, min_rating=spec.min_rating, k_core=spec.k_core).split()
    return _SPLITS[key]


def make_victim_fn(spec: AuditSpec, num_items: int, **overrides):
    cfg = {**spec.model_config, **overrides}
    return lambda: build_victim(spec.model, num_items=num_items, **cfg)


def _reload(model: str, directory: Path, make_v):
    """A victim saved by the audit: recguard's own through recguard.load, a factory's by loading
    the weights into a fresh instance from the factory."""
    if is_factory_path(model):
        return make_v().load_weights(directory)
    return load_victim(directory)


def extraction_options(spec: AuditSpec) -> dict:
    return {**EXTRACTION_DEFAULTS, "surrogate": spec.model, **spec.extraction}


def _extraction_surrogate(spec: AuditSpec, num_items: int):
    """An unfitted victim of the architecture the ``extracted`` attack distils into."""
    name = spec.extraction.get("surrogate", spec.model)
    return build_victim(name, num_items=num_items, **(spec.model_config if name == spec.model else {}))


class ArtifactStore:
    """Where a seed's clean victim and its extracted surrogate are kept: ``ROOT/models/``.

    ``ROOT`` is the audit folder, or (for a Ray worker without a shared folder) a scratch
    folder the driver fills from the object store. Folder names carry the hash of what
    determines the artifact, so a changed spec never reads a stale model.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._loaded: dict[str, Any] = {}

    def remember(self, key: str, model) -> None:
        """Keep ``model`` in memory under ``key`` for the next cell this process computes."""
        self._loaded[key] = model

    def memo(self, key: str, build):
        """The model kept under ``key``, built by ``build()`` the first time."""
        if key not in self._loaded:
            self._loaded[key] = build()
        return self._loaded[key]

    def clean_dir(self, spec: AuditSpec, seed: int) -> Path:
        return self.root / "models" / f"clean_seed{seed}_{short_hash(cell_key(spec, 'clean', seed))}"

    def extracted_dir(self, spec: AuditSpec, seed: int) -> Path:
        tag = short_hash(cell_key(spec, "clean", seed))
        return self.root / "models" / f"extracted_seed{seed}_{short_hash([tag, extraction_options(spec)])}"

    @staticmethod
    def complete(directory: Path, *extra: str) -> bool:
        return (directory / "weights.safetensors").exists() and all((directory / e).exists() for e in extra)

    def clean_model(self, spec: AuditSpec, seed: int, num_items: int):
        d = self.clean_dir(spec, seed)

        def reload():
            if not self.complete(d):
                raise ArtifactError(f"{d}: the clean victim of seed {seed} is missing; run the audit again to retrain it")
            return _reload(spec.model, d, make_victim_fn(spec, num_items))

        return self.memo(str(d), reload)

    def extracted_model(self, spec: AuditSpec, seed: int, num_items: int):
        d = self.extracted_dir(spec, seed)

        def reload():
            if not self.complete(d, "extraction.json"):
                raise ArtifactError(f"{d}: the extracted surrogate of seed {seed} is missing; run the audit again")
            return _reload(extraction_options(spec)["surrogate"], d, lambda: _extraction_surrogate(spec, num_items))

        return self.memo(str(d), reload)

    def extraction_info(self, spec: AuditSpec, seed: int) -> dict:
        return json.loads((self.extracted_dir(spec, seed) / "extraction.json").read_text())


_STORE: dict[str, ArtifactStore] = {}


def store_for(root: str | Path) -> ArtifactStore:
    """This process's store for ``root``: models it loaded or trained (a retrained surrogate
    too) stay in memory for the next cell the process computes there. One root at a time,
    so a long session that runs many audits does not accumulate models."""
    key = str(Path(root).resolve())
    if key not in _STORE:
        _STORE.clear()
        _STORE[key] = ArtifactStore(root)
    return _STORE[key]


# --------------------------------------------------------------------------- checks before training
def capability_needs(spec: AuditSpec) -> list[tuple[list[str], str]]:
    """What the audited victim must offer for this grid: (capabilities, who needs them), as each
    defense and each model-guided attack whose surrogate is the victim (or a copy) declares."""
    needs = [(["retrain"], "an audit (every cell retrains the victim)")]
    for d in spec.defenses:
        needs.append((list(make_defense(d, **spec.defense_params.get(d, {})).requires), f"the {d} defense"))
    if spec.trains_surrogate_here():
        for a in spec.attacks:
            atk = make_attack(a, **{k: v for k, v in spec.attack_params.get(a, {}).items() if k != "order"})
            if isinstance(atk, ModelGuidedAttack) and atk.surrogate_source is None:
                needs.append((list(atk.requires()), f"the {a} attack with surrogate={spec.surrogate!r}"))
    return needs


def _attack(spec: AuditSpec, name: str, budget: float, targets, max_len: int):
    params = dict(spec.attack_params.get(name, {}))
    return make_attack(name, budget=budget, targets=list(targets), num_targets=len(targets), max_profile_length=max_len,
                       order=params.pop("order", spec.order), **params)


def _preflight_attack(spec: AuditSpec, name: str, atk, train) -> None:
    """The checks an attack allows before its surrogate exists."""
    if not isinstance(atk, ModelGuidedAttack):
        atk.check(train)
    elif atk.surrogate_source == "extracted":
        sur = _extraction_surrogate(spec, train.num_items)
        require(sur, ["distill", *atk.requires()], who=f"the {name} attack's extracted surrogate")
    elif not spec.trains_surrogate_here():
        sur = _given_surrogate(spec)
        if sur.num_items != train.num_items:
            raise ConfigError(f"{spec.surrogate}: the surrogate knows {sur.num_items} items, the dataset has {train.num_items}",
                              param="surrogate")


def preflight(spec: AuditSpec, split: Split) -> dict[str, InjectedAttack]:
    """Every check that needs the data, before anything trains: the victim's settings and
    capabilities, the targets, each attack on this data, the surrogate and the injected files.
    Returns the injected attacks by name."""
    train = split.train
    victim = build_victim(spec.model, num_items=train.num_items, **spec.model_config)
    for need, who in capability_needs(spec):
        require(victim, need, who=who)
    targets = select_targets(train, spec.targets if isinstance(spec.targets, str) else list(spec.targets), spec.num_targets,
                             target_stream(spec.seeds[0]))
    for a in spec.attacks:
        _preflight_attack(spec, a, _attack(spec, a, spec.budgets[0], targets.tolist(), victim.max_len), train)
    injected = {}
    for name, path in spec.inject_files().items():
        atk = InjectedAttack(path)
        atk.check(train, max_fake_users=int(MAX_BUDGET * train.num_users))
        injected[name] = atk
    return injected


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


# --------------------------------------------------------------------------- the pieces of a cell
def _victim_metrics(victim, split: Split, targets: np.ndarray, ks) -> dict:
    clean = evaluate(victim, split, which="test", ks=(10, 20))
    tgt = target_exposure(victim, split, targets, ks=ks)
    return {"clean": {k: clean[k] for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20")}, "target": tgt}


def _given_surrogate(spec: AuditSpec):
    path = Path(spec.surrogate)
    if not path.exists():
        raise ConfigError(f"{path}: not found; surrogate must be 'victim', 'retrain' or a saved victim directory", param="surrogate")
    try:
        return load_victim(path)
    except ArtifactError as exc:
        raise ConfigError(f"surrogate {path}: {exc}", param="surrogate") from None


def _surrogate(spec: AuditSpec, store: ArtifactStore, split: Split, seed: int):
    """A model-guided attack's model under the spec's setting: the clean victim, the attacker's own
    retrained one (trained once per process and seed: it is deterministic), or a saved victim."""
    if spec.surrogate == "victim":
        return store.clean_model(spec, seed, split.train.num_items)
    key = f"surrogate:{spec.surrogate}:{seed}:{short_hash(cell_key(spec, 'clean', seed))}"
    if spec.trains_surrogate_here():
        return store.memo(key, lambda: make_victim_fn(spec, split.train.num_items)().fit(split, rng=seed + 1_000_003, progress=False))
    return store.memo(key, lambda: _given_surrogate(spec))


def _equip(attack: ModelGuidedAttack, spec: AuditSpec, store: ArtifactStore, split: Split, seed: int) -> tuple:
    """The attack with the surrogate it declares (``surrogate_source``), and the extraction's record if stolen."""
    if attack.surrogate_source == "extracted":
        return attack.with_surrogate(store.extracted_model(spec, seed, split.train.num_items)), store.extraction_info(spec, seed)
    return attack.with_surrogate(_surrogate(spec, store, split, seed)), None


def _detection(outcome, result) -> dict | None:
    """Detection metrics of the defense on the injected users (None for a defense that neither scores nor flags)."""
    if outcome.scores is None and outcome.flagged is None:
        return None
    is_fake = np.zeros(result.data.num_users, dtype=bool)
    is_fake[result.fake_users] = True
    return detection_metrics(is_fake, outcome.scores, outcome.decisions())


def _train_defended(spec: AuditSpec, train_split: Split, defense_name: str, seed: int, make_v, rng) -> tuple:
    """Train the victim on ``train_split`` under the defense: (victim, outcome, train s, defense s)."""
    defense = make_defense(defense_name, **spec.defense_params.get(defense_name, {}))
    t0 = time.perf_counter()
    victim, outcome = defense.train(train_split, make_victim=make_v, seed=seed, rng=rng)
    total_s = time.perf_counter() - t0
    train_s = victim.fit_info_["train_time_s"]
    return victim, outcome, train_s, float(outcome.info.get("defense_time_s", total_s - train_s))


def poison(train, attack, *, seed: int, budget: float | None, name: str):
    """The fake users of one (attack, budget, seed), from its named stream. The audit's cells
    and :func:`recguard.testing.assert_robust` both draw them here."""
    return attack.poison(train, rng=attack_stream(seed, name, budget))


def _compute_clean(spec: AuditSpec, cell: Cell, store: ArtifactStore, split: Split) -> CellResult:
    t0 = time.perf_counter()
    targets = select_targets(split.train, spec.targets if isinstance(spec.targets, str) else list(spec.targets),
                             spec.num_targets, target_stream(cell.seed))
    victim = make_victim_fn(spec, split.train.num_items)().fit(split, rng=cell.seed, progress=False)
    train_s = time.perf_counter() - t0
    victim.save(store.clean_dir(spec, cell.seed), overwrite=True)  # the audit's own folder
    store.remember(str(store.clean_dir(spec, cell.seed)), victim)
    return CellResult(kind="clean", seed=cell.seed, key=cell.key, targets=targets.tolist(),
                      data_fingerprint=split.full.fingerprint(), train_fingerprint=split.train.fingerprint(),
                      metrics=_victim_metrics(victim, split, targets, spec.ks), train=victim.fit_info_,
                      wall_time_s=time.perf_counter() - t0, train_time_s=train_s)


def _compute_extraction(spec: AuditSpec, cell: Cell, store: ArtifactStore, split: Split) -> CellResult:
    """The black-box chain's surrogate: extracted from the clean victim's top-k lists only."""
    from ..attacks.extraction import ExtractionAttack, agreement
    from ..defenses.serving import serve, served_quality
    from ..victims import BlackBoxVictim

    t0 = time.perf_counter()
    where = store.extracted_dir(spec, cell.seed)
    if not store.complete(where, "extraction.json"):
        clean_victim = store.clean_model(spec, cell.seed, split.train.num_items)
        opts = extraction_options(spec)
        rng = np.random.default_rng([cell.seed, 4242])
        real = None
        if opts["mode"] == "few-shot":
            n_real = max(1, int(round(opts["real_fraction"] * split.train.num_users)))
            real = [split.train[u].tolist() for u in rng.choice(split.train.num_users, size=n_real, replace=False)]
        served = serve(clean_victim, opts.get("defense", "none"), split.train, seed=cell.seed)
        bb = BlackBoxVictim(served, k=min(int(opts["k"]), served.max_list))
        attack = ExtractionAttack(mode=opts["mode"], num_sequences=int(opts["num_sequences"]), length=opts["length"],
                                  real_sequences=real, random_share=float(opts["random_share"]), surrogate=opts["surrogate"],
                                  surrogate_config={k: v for k, v in spec.model_config.items() if opts["surrogate"] == spec.model},
                                  epochs=int(opts["epochs"]))
        res = attack.extract(bb, rng=rng, progress=False, checkpoint=where.parent / f"{where.name}.transcript")
        x, _ = split.inputs("test", clean_victim.max_len)
        info = {**opts, "queries": res.queries, "time_s": time.perf_counter() - t0,
                "agreement": agreement(clean_victim, res.surrogate, x),
                "surrogate_NDCG@10": evaluate(res.surrogate, split, which="test", ks=(10,))["NDCG@10"]}
        if served.label != "none":  # what the defense costs the genuine users who are served the same lists
            info["served"] = {"defense": served.label, "NDCG@10": served_quality(served, split)["NDCG@10"],
                              "undefended_NDCG@10": served_quality(clean_victim, split)["NDCG@10"],
                              "queries_answered_at_random": served.guard_flags}
        res.surrogate.save(where, overwrite=True)  # the audit's own folder: a save cut short before its report is redone
        atomic_write_json(where / "extraction.json", info)
    return CellResult(kind="extraction", seed=cell.seed, key=cell.key, extraction=store.extraction_info(spec, cell.seed),
                      wall_time_s=time.perf_counter() - t0)


def _compute_control(spec: AuditSpec, cell: Cell, split: Split, clean: CellResult) -> CellResult:
    """The defense trained on the clean data: its own effect on the targets and on quality."""
    t0 = time.perf_counter()
    make_v = make_victim_fn(spec, split.train.num_items)
    victim, outcome, train_s, defense_s = _train_defended(spec, split, cell.defense, cell.seed, make_v,
                                                          defense_stream(cell.seed, "control", cell.defense))
    targets = np.asarray(clean.targets, dtype=np.int64)
    metrics = _victim_metrics(victim, split, targets, spec.ks)
    cm = clean.metrics
    derived = {f"shift_T-HR@{k}": metrics["target"][f"T-HR@{k}"] - cm["target"][f"T-HR@{k}"] for k in spec.ks}
    derived["clean_cost_NDCG@10"] = clean_cost(cm["clean"]["NDCG@10"], metrics["clean"]["NDCG@10"])
    flagged = outcome.decisions()
    return CellResult(
        kind="control", seed=cell.seed, key=cell.key, defense=cell.defense, targets=targets.tolist(), metrics=metrics,
        clean_target=cm["target"], derived=derived, defense_info=outcome.info,
        flagged_share=None if flagged is None else float(np.mean(flagged[: split.train.num_users])),
        train=victim.fit_info_, defense_time_s=defense_s, train_time_s=train_s, wall_time_s=time.perf_counter() - t0,
    )


def _compute_poisoned(spec: AuditSpec, cell: Cell, store: ArtifactStore, split: Split, clean: CellResult) -> CellResult:
    t0 = time.perf_counter()
    num_items = split.train.num_items
    make_v = make_victim_fn(spec, num_items)
    max_len = make_v().max_len
    extraction = None
    injected = spec.inject_files()
    if cell.attack in injected:
        attack = InjectedAttack(injected[cell.attack])
        if attack.sha256 != cell.key.get("inject_sha256", attack.sha256):
            raise ConfigError(f"{attack.path}: the file changed while the audit ran; run the audit again", param="inject")
    else:
        attack = _attack(spec, cell.attack, cell.budget, clean.targets, max_len)
        if isinstance(attack, ModelGuidedAttack):
            attack, extraction = _equip(attack, spec, store, split, cell.seed)
    result = poison(split.train, attack, seed=cell.seed, budget=cell.budget, name=cell.attack)
    attack_s = time.perf_counter() - t0
    traced = "forensics" in cell.key
    if traced and not is_factory_path(spec.model):  # a wrapped model's training is its own: its final weights are traced
        make_v = make_victim_fn(spec, num_items, keep_checkpoints=spec.forensics)
    victim, outcome, train_s, defense_s = _train_defended(spec, split.with_train(result.data), cell.defense, cell.seed, make_v,
                                                          defense_stream(cell.seed, cell.attack, cell.budget, cell.defense))
    metrics = _victim_metrics(victim, split, result.targets, spec.ks)
    cm = clean.metrics
    if sorted(result.targets.tolist()) == sorted(clean.targets):
        clean_target = cm["target"]
    else:  # an external attack promotes its own targets: measure them on the clean model too
        clean_target = target_exposure(store.clean_model(spec, cell.seed, num_items), split, result.targets, ks=spec.ks)
    derived = {f"lift_T-HR@{k}": metrics["target"][f"T-HR@{k}"] - clean_target[f"T-HR@{k}"] for k in spec.ks}
    derived["clean_cost_NDCG@10"] = clean_cost(cm["clean"]["NDCG@10"], metrics["clean"]["NDCG@10"])
    attack_meta = dict(result.meta)
    counts = split.train.item_counts()
    cold = [int(t) for t in result.targets if counts[int(t)] == 0]
    if cold:  # items no genuine training user reached: the report says so
        attack_meta["cold_targets"] = cold
    return CellResult(
        kind="poisoned", seed=cell.seed, key=cell.key, attack=cell.attack, budget=cell.budget, defense=cell.defense,
        targets=[int(t) for t in result.targets], num_fake_users=int(len(result.fake_users)), attack_meta=attack_meta,
        poisoned_fingerprint=result.data.fingerprint(), metrics=metrics, clean_target=clean_target, derived=derived,
        defense_info=outcome.info, detection=_detection(outcome, result), extraction=extraction,
        train=victim.fit_info_, attack_time_s=attack_s, defense_time_s=defense_s, train_time_s=train_s,
        forensics=_forensics(victim, split.with_train(result.data), result) if traced else None,
        wall_time_s=time.perf_counter() - t0,
    )


def _forensics(victim, poisoned: Split, result) -> dict:
    """How well training-data influence on the targets finds the injected users: recall and precision
    among the top 1% most influential training users, ROC-AUC, and the time per traced item."""
    from ..probes import influence

    try:
        traced = influence(victim, poisoned, [int(t) for t in result.targets])
    except ConfigError as exc:  # no list shows any target: nothing was pushed far enough to trace
        return {"traced_items": [], "reason": str(exc)}
    return {**traced.finds(result.fake_users), "sign_agreement": traced.info["sign_agreement"]}


def compute(spec: AuditSpec, cell: Cell, store: ArtifactStore, clean: CellResult | None = None) -> CellResult:
    """Compute one cell. ``clean`` is the seed's clean result (needed by every kind but
    ``clean`` and ``extraction``); the store holds, or receives, the seed's models."""
    split = load_split(spec)
    if cell.kind == "clean":
        return _compute_clean(spec, cell, store, split)
    if cell.kind == "extraction":
        return _compute_extraction(spec, cell, store, split)
    if clean is None:
        raise ConfigError(f"{cell.label}: needs the clean result of seed {cell.seed}", param="clean")
    if cell.kind == "control":
        return _compute_control(spec, cell, split, clean)
    return _compute_poisoned(spec, cell, store, split, clean)


def run_task(spec_d: dict, cell_d: dict, clean_d: dict | None, root: str, threads: int | None = None) -> dict:
    """A backend's unit: plain data in, plain data out (what crosses a process boundary)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    spec = AuditSpec.from_dict(spec_d)
    clean = CellResult.from_dict(clean_d) if clean_d is not None else None
    return compute(spec, Cell.from_dict(cell_d), store_for(root), clean).to_dict()
