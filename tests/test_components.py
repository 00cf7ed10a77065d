"""Components that describe themselves: threat models, declarations, one trainer, one capability
table, clone(), and the audit dispatching on declarations (never on names)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import recguard
from recguard.attacks.poisoning import ATTACKS, THREAT_MODELS, CoverageAttack, FillerAttack, ModelGuidedAttack, make_attack
from recguard.audit import AuditSpec, run_audit
from recguard.audit.cells import plan
from recguard.defenses import DEFENSES, DetectorDefense, make_defense
from recguard.defenses.lockstep import LockstepDetector, lockstep_scores
from recguard.errors import CapabilityError, ConfigError
from recguard.victims import CAPABILITIES, CAPABILITY_TABLE, STOP, EpochUpdate, Trainer

from conftest import cyclic_data, make

ROOT = Path(__file__).resolve().parents[1]


def test_every_attack_declares_its_threat_model_requirements_and_key():
    for name, cls in ATTACKS.items():
        assert cls.threat_model in THREAT_MODELS, name
        part = cls.cell_key_part(surrogate="victim", extraction={"k": 10})
        assert "surrogate" in part
        attack = make_attack(name)
        assert set(attack.requires()) <= set(CAPABILITIES), name
        assert (cls.threat_model == "model-guided") == issubclass(cls, ModelGuidedAttack)
        assert (cls.threat_model == "filler") == issubclass(cls, FillerAttack)
    # a model-guided attack's key names where its surrogate comes from; a filler attack's does not
    assert ATTACKS["coverage"].cell_key_part(surrogate="retrain", extraction={})["surrogate"] == "retrain"
    assert ATTACKS["extracted"].cell_key_part(surrogate="retrain", extraction={"k": 7}) == {"surrogate": None, "extraction": {"k": 7}}
    assert ATTACKS["random"].cell_key_part(surrogate="retrain", extraction={}) == {"surrogate": None}


def test_every_defense_declares_what_the_audit_reads():
    for name, cls in DEFENSES.items():
        d = make_defense(name)
        assert set(d.requires) <= set(CAPABILITIES), name
        assert isinstance(cls.baseline, bool) and isinstance(cls.reads_text, bool)
        assert callable(d.train)
    assert [n for n, c in DEFENSES.items() if c.baseline] == ["none"]


def test_coverage_attack_needs_a_white_box_surrogate_and_is_deterministic(tiny):
    with pytest.raises(ConfigError, match="needs a trained surrogate"):
        CoverageAttack().poison(tiny, rng=0)
    sur = make("sasrec", epochs=2).fit(tiny, rng=0, progress=False)
    with pytest.raises(CapabilityError, match="white_box"):
        CoverageAttack(recguard.BlackBoxVictim(sur, k=5)).poison(tiny, rng=0)
    with pytest.raises(ConfigError, match="selection"):
        CoverageAttack(selection="nearest")
    fp = tiny.fingerprint()
    a = CoverageAttack(sur, budget=0.05, targets=[3, 7]).poison(tiny, rng=1)
    b = CoverageAttack(sur, budget=0.05, targets=[3, 7]).poison(tiny, rng=1)
    assert tiny.fingerprint() == fp
    assert a.fake_sequences == b.fake_sequences and len(a.fake_users) == 6
    for seq in a.fake_sequences:
        seq = np.asarray(seq)
        fillers = seq[~np.isin(seq, [3, 7])]
        assert len(fillers) and fillers.min() >= 1 and fillers.max() <= tiny.num_items
        assert seq[0] in (3, 7)  # interleave: targets at the even slots
    specific = CoverageAttack(sur, budget=0.05, targets=[3, 7], selection="specific").poison(tiny, rng=1)
    assert specific.fake_sequences != a.fake_sequences


def test_coverage_fake_users_each_speak_for_one_community():
    # two communities that never share an item (1..20 and 21..40): the surrogate's groups follow
    # them, so each fake user's fillers come from one community, while random fillers mix both
    half = cyclic_data(num_users=80, num_items=20, length=12, noise=0.0, seed=2)
    seqs = [half[u].tolist() for u in range(80)] + [(half[u] + 20).tolist() for u in range(80)]
    data = recguard.data.SequenceData.from_sequences(seqs, num_items=40)
    sur = make("sasrec", hidden=32, epochs=15, lr=5e-3).fit(data, rng=0, progress=False)
    kw = dict(budget=0.025, targets=[9], profile_length=10)

    def purity(res):
        shares = []
        for s in res.fake_sequences:
            fillers = np.asarray([i for i in s if i != 9])
            shares.append(max(np.mean(fillers <= 20), np.mean(fillers > 20)))
        return float(np.mean(shares))

    guided = purity(CoverageAttack(sur, **kw).poison(data, rng=0))
    rand = purity(make_attack("random", **kw).poison(data, rng=0))
    assert guided >= 0.9 and guided > rand


def test_lockstep_flags_a_campaign_that_shares_rare_items():
    rng = np.random.default_rng(0)
    genuine = [rng.choice(np.arange(1, 2001), size=int(rng.integers(4, 12)), replace=False).tolist() for _ in range(800)]
    data = recguard.data.SequenceData.from_sequences(genuine, num_items=2000)  # sparse, like a real catalogue
    res = make_attack("random", budget=0.02, targets=[5, 6, 7], profile_length=12).poison(data, rng=1)
    scores = lockstep_scores(res.data, group_size=5)
    fake = np.zeros(res.data.num_users, bool)
    fake[res.fake_users] = True
    assert scores[fake].min() > np.quantile(scores[~fake], 0.99)
    outcome = LockstepDetector(group_share=0.005).detect(res.data.split(), make_victim=None, rng=np.random.default_rng(0))
    assert outcome.flagged[fake].all() and outcome.flagged[~fake].mean() <= 0.03
    assert np.all(outcome.user_weights[fake] == 0)
    assert isinstance(make_defense("lockstep"), DetectorDefense)
    with pytest.raises(ConfigError, match="does not apply"):
        LockstepDetector(rule="paper")
    with pytest.raises(ConfigError, match="group_share"):
        LockstepDetector(group_share=0)


class _Mine(ModelGuidedAttack):
    """An attack the audit has never heard of: fillers are the surrogate's own top-5 for a random start."""

    name = "mine"

    def requires(self):
        return ("white_box",)

    def _fill(self, data, slots, targets, rng):
        out = []
        for s in slots:
            s = s.copy()
            holes = np.flatnonzero(s == 0)
            top = self.surrogate.recommend([[int(rng.integers(1, data.num_items + 1))]], k=len(holes) + len(targets))[0]
            s[holes] = [i for i in top if i not in set(targets.tolist())][: len(holes)]
            out.append(s)
        return out


def test_a_new_model_guided_attack_runs_in_an_audit_by_its_declarations_alone(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(ATTACKS, "mine", _Mine)
    spec = AuditSpec(dataset="ml-100k", attacks=("mine", "random"), seeds=(0,), model_config={"epochs": 1, "hidden": 16},
                     num_targets=2)
    kinds = [c.kind for phase in plan(spec) for c in phase]
    assert "extraction" not in kinds
    res = run_audit(spec, tmp_path / "a", progress=False)
    cell = next(c for c in res["cells"] if c.get("attack") == "mine")
    assert cell["key"]["surrogate"] == "victim" and cell["attack_meta"]["params"]["surrogate"] == "sasrec"

    class _Stolen(_Mine):
        name = "mine-stolen"
        surrogate_source = "extracted"

    monkeypatch.setitem(ATTACKS, "mine-stolen", _Stolen)
    stolen = spec.replace(attacks=("mine-stolen",))
    assert [c.kind for c in plan(stolen)[1]] == ["extraction"]  # the extraction phase follows the declaration
    assert "extraction" in plan(stolen)[2][0].key


def test_trainer_selects_stops_and_resets():
    module = torch.nn.Linear(2, 1)
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    rec = Trainer(epochs=6, patience=2).run(module, lambda e: 1.0 / e, validate=lambda: next(scores))
    assert [h["epoch"] for h in rec.history] == [1, 2, 3, 4] and rec.best_epoch == 2 and rec.best_score == 0.5
    seen = []
    rec = Trainer(epochs=5).run(module, lambda e: 0.0, validate=lambda: 1.0,
                                on_epoch_end=lambda e: EpochUpdate(reset_selection=True) if e < 3 else (STOP if e == 4 else None))
    assert len(rec.history) == 4 and rec.best_epoch == 2 and rec.history[1]["selection_reset"]  # equal scores keep the first
    rec = Trainer(epochs=2).run(module, lambda e: 0.0, on_epoch_end=lambda e: np.ones(3), on_weights=lambda w, e: seen.append(e))
    assert seen == [1, 2] and rec.best_score is None and rec.best_epoch == 2
    with pytest.raises(ValueError, match="takes none"):
        Trainer(epochs=1).run(module, lambda e: 0.0, on_epoch_end=lambda e: np.ones(3))


def test_clone_is_independent(tiny):
    v = make("sasrec", epochs=1).fit(tiny, rng=0, progress=False)
    c = v.clone()
    assert c.config == v.config and c.module_ is None
    from foreign_models import make_bag

    t = make_bag(tiny.num_items, hidden=8, epochs=1)
    tc = t.clone()
    assert tc.module is not t.module and tc.capabilities() == t.capabilities()
    before = [p.detach().clone() for p in t.module.parameters()]
    tc.fit(tiny, rng=0)
    assert all(torch.equal(a, b) for a, b in zip(before, t.module.parameters()))


def test_the_capability_table_drives_detection_and_checks():
    from recguard.testing.checks import CAPABILITY_CHECKS

    names = [c.name for c in CAPABILITY_TABLE]
    assert list(CAPABILITIES) == names and len(set(names)) == len(names)
    assert set(CAPABILITY_CHECKS) == {c.name for c in CAPABILITY_TABLE if c.checks}

    class ByHand:
        def fit(self, data, *, user_weights=None, rng=None):
            return self

        def hidden_states(self, x):
            return x

    assert recguard.victims.capabilities(ByHand()) == {"retrain", "hidden_states"}


def test_the_package_has_no_import_circles():
    spec = importlib.util.spec_from_file_location("code_health", ROOT / "benchmarks" / "code_health.py")
    health = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health)
    graph = health.import_graph(ROOT / "recguard", module_level_only=False)
    assert health.circles(graph) == []


def test_extraction_is_one_class_with_one_verb(tiny):
    from recguard.attacks.extraction import ExtractionAttack

    attack = ExtractionAttack(num_sequences=40, length=6, epochs=1, surrogate="sasrec", surrogate_config={"hidden": 16})
    assert attack.threat_model == "black-box" and attack.requires() == ()
    with pytest.raises(ConfigError, match="real_sequences"):
        ExtractionAttack(mode="few-shot")
    victim = make("sasrec", epochs=1).fit(tiny, rng=0, progress=False)
    api = recguard.BlackBoxVictim(victim, k=5)
    res = attack.extract(api, rng=0, progress=False)
    assert res.queries == api.queries_used > 0 and res.surrogate.num_items == tiny.num_items


def test_any_model_guided_attack_takes_a_stolen_surrogate():
    from recguard.attacks.poisoning import attack_class

    stolen = attack_class("coverage@extracted")
    assert issubclass(stolen, CoverageAttack) and stolen.surrogate_source == "extracted" and stolen is attack_class("coverage@extracted")
    spec = AuditSpec(attacks=("coverage@extracted", "random"))
    assert spec.extracted_attacks() == ["coverage@extracted"] and [c.kind for c in plan(spec)[1]] == ["extraction"]
    with pytest.raises(ConfigError, match="only a model-guided attack"):
        AuditSpec(attacks=("random@extracted",))
    with pytest.raises(ConfigError, match="surrogate source"):
        AuditSpec(attacks=("coverage@victim",))
