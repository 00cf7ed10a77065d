"""A user's own model gets the whole toolkit: two architectures recguard does not ship (a
NARM-style GRU + attention and an MLP over a bag of recent items, ``tests/foreign_models.py``),
wrapped in TorchVictim as documented, go through every capability."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import foreign_models as F
import recguard
from recguard.attacks.extraction import agreement, extract
from recguard.audit import AuditSpec, run_audit
from recguard.cli import main
from recguard.errors import CapabilityError
from recguard.probes import SAEProbe, attribute
from recguard.testing import assert_clean_quality, assert_extraction_resistant, assert_robust, parametrize_with_checks
from recguard.victims import BlackBoxVictim, TorchVictim, capabilities

from test_probes import clustered_data

HERE = Path(__file__).resolve().parent
FACTORIES = {"narm": F.make_narm, "bag": F.make_bag}
SMALL = {"hidden": 16, "max_len": 12, "epochs": 6}


@pytest.fixture(scope="module")
def data():
    return clustered_data(num_users=96, per_genre=8, length=12, seed=4)


@pytest.fixture(scope="module")
def atomic(tmp_path_factory, data):
    """The same data as RecBole atomic files with titles and genres (what the audits load)."""
    root = tmp_path_factory.mktemp("atomic")
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    rows += [f"{u + 1}\t{i}\t{t}" for u, seq in enumerate(data) for t, i in enumerate(seq.tolist())]
    (root / "toy.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\ttitle:token_seq\tclass:token_seq"]
    items += [f"{i}\t{data.meta.titles[i]}\t{' '.join(data.meta.genres[i])}" for i in range(1, data.num_items + 1)]
    (root / "toy.item").write_text("\n".join(items) + "\n")
    return root / "toy.inter"


def fitted(name, data, seed=0):
    return FACTORIES[name](data.num_items, **SMALL).fit(data, rng=seed)


# ------------------------------------------------------------------ the contract
@parametrize_with_checks([lambda: F.make_narm(30, hidden=16, max_len=10, epochs=3),
                          lambda: F.make_bag(30, hidden=16, max_len=10, epochs=3)])
def test_foreign_models_pass_every_contract_check(victim, check):
    check(victim)


@pytest.mark.parametrize("name", FACTORIES)
def test_foreign_models_declare_their_capabilities(name):
    # every capability a wrapped model can have (fresh_scores is recguard's own victims' promise);
    # NARM runs right-aligned inside: no input-aligned layer to probe
    every = frozenset(recguard.victims.CAPABILITIES) - {"fresh_scores"}
    assert capabilities(FACTORIES[name](20)) == (every - {"layers"} if name == "narm" else every)


# ------------------------------------------------------------------ audits
@pytest.mark.parametrize("name", FACTORIES)
def test_audit_grid_on_a_foreign_model(name, atomic, bert_dir, tmp_path):
    enc = {"encoder": str(bert_dir), "encoder_options": {"cache_dir": str(tmp_path / "enc")}, "user_text": "items"}
    spec = AuditSpec(dataset=str(atomic), model=f"foreign_models:make_{name}", model_config=SMALL,
                     attacks=("random", "surrogate"), budgets=(0.05,), seeds=(0,), num_targets=2,
                     defenses=("none", "lorec", "llm4dec", "mnar"),
                     defense_params={"lorec": enc, "llm4dec": {**enc, "known_budget": 0.1, "epochs": 5}})
    res = run_audit(spec, tmp_path / "a", progress=False)
    rows = {(r["attack"], r["defense"]): r for r in res["summary"]}
    assert set(rows) == {(a, d) for a in ("random", "surrogate") for d in ("none", "lorec", "llm4dec", "mnar")}
    for r in rows.values():
        assert 0 <= r["T-HR@50"]["mean"] <= 1 and np.isfinite(r["NDCG@10"]["mean"])
    assert rows[("random", "lorec")]["detection"]["ROC-AUC"]["mean"] is not None
    lorec = next(c for c in res["cells"] if c.get("defense") == "lorec")
    assert lorec["defense_info"]["updates"] and lorec["train"]["callback_time_s"] > 0
    ident = res["provenance"]["model"]
    assert ident["model"] == f"foreign_models:make_{name}" and len(ident["module_sha256"]) == 64
    assert ident["module_file"].endswith("foreign_models.py")
    assert all(c["key"]["model_sha256"] == ident["module_sha256"] for c in res["cells"])


def test_cli_audit_imports_the_factory_in_parallel_workers(atomic, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(HERE)  # factories are imported from the working directory, in every worker too
    monkeypatch.delitem(sys.modules, "foreign_models", raising=False)
    argv = ["audit", "--dataset", str(atomic), "--model", "foreign_models:make_bag", "--attacks", "popular,extracted",
            "--budgets", "0.05", "--set", "hidden=16", "--set", "max_len=12", "--set", "epochs=4", "--extraction", "num_sequences=40",
            "--extraction", "epochs=2", "--extraction", "k=10", "--out", str(tmp_path / "a"), "--jobs", "2", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    extracted = next(c for c in res["cells"] if c["attack"] == "extracted")
    # the black-box chain: the stolen model is the user's own architecture
    info = extracted["extraction"]
    assert info["surrogate"] == "foreign_models:make_bag" and 0 <= info["agreement"]["Agreement@10"] <= 1


# ------------------------------------------------------------------ extraction
@pytest.mark.parametrize("name", FACTORIES)
def test_extraction_with_a_foreign_victim_and_a_foreign_surrogate(name, data):
    victim = fitted(name, data)
    x, _ = data.split().inputs("test", victim.max_len)
    stolen = extract(BlackBoxVictim(victim, k=10), num_sequences=60, length=8, epochs=3, surrogate="sasrec",
                     surrogate_config={"hidden": 16, "epochs": 3}, rng=0, progress=False)
    a1 = agreement(victim, stolen.surrogate, x)["Agreement@10"]
    sas = recguard.make_victim("sasrec", hidden=16, max_len=12, epochs=3).fit(data, rng=0)
    clone = extract(BlackBoxVictim(sas, k=10), num_sequences=60, length=8, epochs=3, surrogate=f"foreign_models:make_{name}",
                    surrogate_config={"hidden": 16, "max_len": 12}, rng=0, progress=False)
    assert isinstance(clone.surrogate, TorchVictim) and clone.surrogate.fit_info_["epochs_run"] >= 1
    a2 = agreement(sas, clone.surrogate, x)["Agreement@10"]
    assert 0 < a1 <= 1 and 0 < a2 <= 1
    again = extract(BlackBoxVictim(sas, k=10), num_sequences=60, length=8, epochs=3, surrogate=f"foreign_models:make_{name}",
                    surrogate_config={"hidden": 16, "max_len": 12}, rng=0, progress=False)
    assert agreement(clone.surrogate, again.surrogate, x)["Agreement@10"] == 1.0  # seeded end to end


# ------------------------------------------------------------------ probes
@pytest.mark.parametrize("name", FACTORIES)
def test_sae_probe_on_a_foreign_model(name, data):
    victim = fitted(name, data)
    probe = SAEProbe(victim, k=4, expansion=4, epochs=3, prefixes=2, seed=0).fit(data)
    assert probe.train_on == "positions"  # their position states are their prefix states
    fid = probe.fidelity()
    assert 0 <= fid["fvu"] < 1 and fid["ndcg_clean"] > 0
    entries = probe.concepts()
    assert len(entries) == probe.sae_.width and any(e.get("concept") for e in entries)
    latent = max((e for e in entries if e.get("concept")), key=lambda e: e["confidence"])["latent"]
    abl = probe.ablate(latent, 0.0)
    assert abl["latent"] == latent and 0 <= abl["jaccard@10"] <= 1
    if name == "bag":  # a probe at a named layer too
        at_layer = SAEProbe(victim, layer="emb", k=4, expansion=4, epochs=1, seed=0).fit(data)
        assert 0 <= at_layer.fidelity()["fvu"] < 1


@pytest.mark.parametrize("name", FACTORIES)
def test_attribution_on_a_foreign_model(name, data):
    victim = fitted(name, data)
    seq = data[3].tolist()[-8:]
    out = attribute(victim, seq, n_steps=64)
    assert out["items"] == seq and len(out["contributions"]) == len(seq)
    assert abs(out["delta"]) < 0.05 * max(1.0, abs(out["score"] - out["baseline_score"]))


# ------------------------------------------------------------------ the three assertions
@pytest.mark.parametrize("name", FACTORIES)
def test_assertions_on_a_foreign_model(name, data):
    def train(split, seed):
        return FACTORIES[name](split.full.num_items, **SMALL).fit(split, rng=seed)

    q = assert_clean_quality(train(data.split(), 0), data, min_ndcg=0.05)
    assert q["passed"] and q["NDCG@10"] > 0.05
    r = assert_robust(train, data, attack="surrogate", budget=0.05, metric="T-HR@50", max_lift=1.0, seeds=1, num_targets=2)
    assert r["passed"] and len(r["per_seed"]) == 1
    e = assert_extraction_resistant(train(data.split(), 0), data, budget=40, k=10, epochs=2, max_agreement=1.0,
                                    surrogate=f"foreign_models:make_{name}", surrogate_config={"hidden": 16, "max_len": 12})
    assert e["passed"] and 0 <= e["value"] <= 1


# ------------------------------------------------------------------ what is missing is said before training
class ScoresOnly(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Embedding(n + 1, 8)

    def forward(self, x):
        return self.w(x[:, -1]) @ self.w.weight.T


def make_scores_only(num_items, **_):
    def fit(module, split, user_weights, rng):  # a four-argument fit_fn: no epoch callback, no item weights
        pass

    return TorchVictim(ScoresOnly(num_items), num_items=num_items, max_len=8, fit_fn=fit, device="cpu")


def make_not_a_victim(num_items, **_):
    return nn.Linear(3, 3)


@pytest.mark.parametrize("change,needle", [
    ({"defenses": ("none", "lorec")}, "epoch_callback"),
    ({"defenses": ("none", "lorec")}, "hidden_states(x)"),
    ({"defenses": ("none", "mnar")}, "item_weights"),
    ({"attacks": ("surrogate",)}, "white_box"),
])
def test_missing_capabilities_are_named_before_training(change, needle, atomic, tmp_path, monkeypatch):
    monkeypatch.setattr(TorchVictim, "fit", lambda *a, **k: pytest.fail("trained before reporting the missing capability"))
    spec = AuditSpec(dataset=str(atomic), model="test_foreign_models:make_scores_only", budgets=(0.05,), **{"attacks": ("random",),
                                                                                                          **change})
    with pytest.raises(CapabilityError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        run_audit(spec, tmp_path / "a", progress=False)


def test_four_argument_fit_fn_still_works(data):
    v = make_scores_only(data.num_items)
    assert capabilities(v) == {"retrain", "gradients", "distill"}
    v.fit(data, rng=0, user_weights=np.ones(data.split().train.num_users))
    with pytest.raises(CapabilityError, match="on_epoch_end"):
        v.fit(data, rng=0, on_epoch_end=lambda e, vic: None)


@pytest.mark.parametrize("model,needle", [
    ("no_such_module:make", "cannot import module 'no_such_module'"),
    ("test_foreign_models:nothing_here", "has no attribute 'nothing_here'"),
    ("test_foreign_models:make_not_a_victim", "not a victim"),
    ("justaname", "unknown model"),
])
def test_bad_model_paths_are_one_error_line(model, needle, atomic, tmp_path, capsys):
    assert main(["audit", "--dataset", str(atomic), "--model", model, "--attacks", "random", "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


def test_probe_and_attribution_say_what_a_model_lacks(data):
    v = make_scores_only(data.num_items)
    with pytest.raises(CapabilityError, match="white_box"):
        SAEProbe(v)
    with pytest.raises(CapabilityError, match=r"\[B, L\] id sequence"):  # it embeds the last item only
        attribute(v.fit(data, rng=0), data[0].tolist()[-4:], n_steps=8)


@pytest.mark.parametrize("name", FACTORIES)
def test_detector_defenses_decide_on_a_foreign_model(name, atomic, bert_dir, tmp_path):
    """PCA-select and LoRec's detect-retrain mode go through the shared decision layer for a model recguard does not ship."""
    enc = {"encoder": str(bert_dir), "encoder_options": {"cache_dir": str(tmp_path / "enc")}, "user_text": "items"}
    spec = AuditSpec(dataset=str(atomic), model=f"foreign_models:make_{name}", model_config=SMALL,
                     attacks=("random",), budgets=(0.05,), seeds=(0,), num_targets=2, defenses=("none", "pca", "lorec-detect"),
                     defense_params={"lorec-detect": {**enc, "max_flag_share": 0.1}, "pca": {"max_flag_share": 0.1}})
    res = run_audit(spec, tmp_path / "a", progress=False)
    cells = {c["defense"]: c for c in res["cells"] if c["kind"] == "poisoned"}
    n_users = cells["pca"]["detection"]["genuine_users"] + cells["pca"]["detection"]["fake_users"]
    for d in ("pca", "lorec-detect"):
        info = cells[d]["defense_info"]
        assert info["budget_users"] == int(0.1 * n_users) and info["flagged_users"] <= info["budget_users"]
        assert np.isfinite(cells[d]["metrics"]["clean"]["NDCG@10"])
    assert cells["lorec-detect"]["defense_info"]["retrain_time_s"] > 0
