"""The ``sae`` defense: lockstep in the victim's SAE concept space, detect → retrain."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import recguard
from recguard.attacks.poisoning import make_attack
from recguard.defenses import make_defense
from recguard.defenses.saedetect import SAEDetector, latent_rarity, neighbour_similarity
from recguard.errors import CapabilityError, ConfigError

from conftest import make


def _victim():
    return make("sasrec", hidden=32, max_len=12, epochs=20, lr=5e-3)


@pytest.fixture(scope="module")
def campaign():
    """1,000 genuine users with random histories over 1,000 items (nobody alike) and a random
    campaign of 15 fakes (1.5%) pushing three items with four fillers each."""
    rng = np.random.default_rng(0)
    genuine = [rng.choice(np.arange(1, 1001), size=int(rng.integers(4, 12)), replace=False).tolist() for _ in range(1000)]
    data = recguard.data.SequenceData.from_sequences(genuine, num_items=1000)
    res = make_attack("random", budget=0.015, targets=[5, 130, 260], profile_length=6).poison(data, rng=1)
    fake = np.zeros(res.data.num_users, bool)
    fake[res.fake_users] = True
    return data, res, fake


def test_neighbour_similarity_scores_a_group_of_alike_rows_above_loners():
    rng = np.random.default_rng(0)
    codes = np.abs(rng.normal(size=(200, 32))).astype(np.float32)
    codes[:10] = codes[0] + 0.01 * np.abs(rng.normal(size=(10, 32)))  # ten near-copies of one row
    s = neighbour_similarity(codes, group_size=5, block=64)
    assert s[:10].min() > 0.99 and s[10:].max() < s[:10].min()
    # a group smaller than group_size is scored partly on outsiders
    assert neighbour_similarity(codes, group_size=20)[:10].max() < s[:10].min()
    # against another matrix, nobody is excluded: a row finds its own copy
    assert np.allclose(neighbour_similarity(codes[:3], 1, among=codes), 1.0)
    rarity = latent_rarity(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 0.0]]))
    assert np.allclose(rarity, [np.log(4 / 3), np.log(4)])


def test_the_campaign_tops_the_ranking_and_is_removed_before_the_retrain(campaign):
    _, res, fake = campaign
    detector = SAEDetector(epochs=5, k=4, expansion=4, rule="top", max_flag_share=0.015)
    victim, outcome = detector.train(res.data.split(), make_victim=_victim, seed=0, rng=np.random.default_rng(0))
    assert roc_auc_score(fake, outcome.scores) >= 0.99
    assert outcome.flagged[fake].mean() >= 0.9 and outcome.flagged[~fake].mean() <= 0.005
    assert np.all(outcome.user_weights[outcome.flagged] == 0) and np.all(outcome.user_weights[~outcome.flagged] == 1)
    assert "retrain_time_s" in outcome.info and victim.fit_info_["train_users"] == res.data.num_users - outcome.flagged.sum()
    # the simulated fakes gave the separation check only, and the latents behind the flags are named
    assert 0.5 < outcome.info["simulated_separation_auc"] <= 1.0 and len(outcome.simulated_scores) > 0
    latents = outcome.info["latents"]
    assert 0 < len(latents) <= 5 and all({"latent", "concept", "ratio"} <= set(e) for e in latents)
    assert latents[0]["ratio"] >= latents[-1]["ratio"] > 1


def test_without_a_campaign_the_default_decision_removes_nobody_and_keeps_the_first_victim(campaign):
    data, _, _ = campaign
    victim, outcome = make_defense("sae", epochs=5, k=4, expansion=4).train(
        data.split(), make_victim=_victim, seed=0, rng=np.random.default_rng(0))
    assert not outcome.flagged.any() and np.all(outcome.user_weights == 1)
    assert "retrain_time_s" not in outcome.info and outcome.info["group"]["found"] is False
    assert np.isfinite(outcome.scores).all() and victim.fit_info_["train_users"] == data.num_users


def test_it_runs_on_a_wrapped_model_and_names_the_missing_capability_otherwise(campaign):
    from foreign_models import make_narm

    _, res, fake = campaign
    split = res.data.split()
    _, outcome = SAEDetector(epochs=3, k=4, expansion=4, rule="top", max_flag_share=0.015).train(
        split, make_victim=lambda: make_narm(num_items=split.full.num_items, epochs=3, max_len=12), seed=0,
        rng=np.random.default_rng(0))
    assert outcome.scores.shape == (res.data.num_users,) and np.isfinite(outcome.scores).all()
    trained = _victim().fit(split, rng=0)
    with pytest.raises(CapabilityError, match="white_box"):
        SAEDetector().train(split, make_victim=lambda: recguard.BlackBoxVictim(trained, k=5), seed=0, rng=np.random.default_rng(0))


def test_bad_settings_name_the_parameter():
    for kw, param in ((dict(group_share=0), "group_share"), (dict(k=0), "k"), (dict(epochs=1.5), "epochs"),
                      (dict(name_latents=-1), "name_latents"), (dict(max_flag_share=0.9), "max_flag_share")):
        with pytest.raises(ConfigError, match=param):
            SAEDetector(**kw)
    with pytest.raises(ConfigError, match="does not apply"):
        SAEDetector(rule="paper")


def test_the_audit_report_names_what_the_model_saw_in_the_flagged_users(campaign, tmp_path):
    from recguard.audit import AuditSpec, run_audit

    data, _, _ = campaign
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(data.num_users):
        rows += [f"{u + 1}\t{i}\t{t}" for t, i in enumerate(data[u].tolist())]
    (tmp_path / "shop.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\ttitle:token_seq\tclass:token_seq"] + [f"{i}\tThing {i % 7}\tC{i % 9}" for i in range(1, 1001)]
    (tmp_path / "shop.item").write_text("\n".join(items) + "\n")
    spec = AuditSpec(dataset=str(tmp_path / "shop.inter"), model="sasrec", attacks=("random",), budgets=(0.015,), seeds=(0,),
                     defenses=("none", "sae"), num_targets=3, model_config={"hidden": 32, "max_len": 12, "epochs": 20, "lr": 5e-3},
                     defense_params={"sae": {"rule": "top", "max_flag_share": 0.015, "epochs": 3, "k": 4, "expansion": 4}})
    res = run_audit(spec, tmp_path / "audit", progress=False)
    row = next(r for r in res["summary"] if r["defense"] == "sae")
    assert row["detection"]["ROC-AUC"]["mean"] >= 0.9 and row["flagged_concepts"]
    assert all(e["cells"] == 1 for e in row["flagged_concepts"])
    for report in ("report.md", "report.html"):
        assert "What the model saw in the flagged users" in (tmp_path / "audit" / report).read_text()
