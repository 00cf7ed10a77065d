"""The shared decision layer (recguard.defenses.decision) and the camouflage attack."""

from __future__ import annotations

import numpy as np
import pytest

import recguard
from recguard.defenses.decision import Decision, separation_auc
from recguard.errors import ConfigError, DataError
from conftest import cyclic_data


def _scores(n_genuine=980, n_fake=20, gap=6.0, seed=0):
    """Genuine scores ~ N(0, 1); fakes a tight group ``gap`` above them."""
    rng = np.random.default_rng(seed)
    s = np.concatenate([rng.normal(0, 1, n_genuine), rng.normal(gap, 0.1, n_fake)])
    y = np.zeros(len(s), dtype=bool)
    y[n_genuine:] = True
    return s, y


def test_top_flags_exactly_the_budget():
    s, y = _scores()
    d = Decision(rule="top", max_flag_share=0.05).decide(s)
    assert d.flagged.sum() == 50 and d.flagged[y].all()  # every fake, plus 30 genuine: the budget, not more
    assert np.array_equal(d.weights, np.where(d.flagged, 0.0, 1.0)) and d.threshold == pytest.approx(s[d.flagged].min())


@pytest.mark.parametrize("rule", ["mixture", "outlier"])
def test_distribution_rules_find_a_separate_group_and_stay_within_the_budget(rule):
    s, y = _scores()
    d = Decision(rule=rule, max_flag_share=0.05).decide(s)
    assert d.flagged[y].all() and (d.flagged & ~y).sum() <= 3  # the group, and almost nobody else
    # a budget below the group's size is honoured: only the highest are flagged
    small = Decision(rule=rule, max_flag_share=0.01).decide(s)
    assert small.flagged.sum() == 10 and small.flagged[y].sum() == 10


def test_group_flags_a_dense_group_at_the_top_and_nobody_without_one():
    s, y = _scores()
    d = Decision(rule="group", max_flag_share=0.05).decide(s)
    assert d.info["group"]["found"] and d.info["group"]["density_ratio"] < 0.1
    # a group spread over 0.1 (a tenth of the population's spread) is cut where it is densest: no genuine user, most fakes
    assert not (d.flagged & ~y).any() and d.flagged[y].mean() >= 0.7
    tight = np.where(y, 6.0 + (s - 6.0) / 10, s)  # the same group packed ten times tighter, as campaigns load on PCA
    flagged = Decision(rule="group", max_flag_share=0.05).decide(tight).flagged
    assert not (flagged & ~y).any() and flagged[y].sum() >= 19  # the group's lowest member may fall to the edge
    # a group inside the genuine tail (genuine users score above it) is still found by its density
    rng = np.random.default_rng(0)
    inside = np.concatenate([rng.normal(0, 1, 5000), rng.normal(3.0, 0.01, 50)])
    d = Decision(rule="group").decide(inside)
    assert d.flagged[5000:].sum() >= 45 and d.flagged[:5000].sum() <= 5
    # populations without a campaign, with light and heavy tails: nobody is flagged
    for seed in range(5):
        r = np.random.default_rng(seed)
        for clean in (r.normal(0, 1, 5000), r.exponential(1, 5000), r.standard_t(3, 5000), r.lognormal(0, 1, 5000)):
            d = Decision(rule="group").decide(clean)
            assert d.flagged.sum() == 0 and d.threshold is None and not d.info["group"]["found"]
    # a budget below the smallest group cannot hold one
    assert Decision(rule="group", max_flag_share=0.001).decide(s).flagged.sum() == 0


def test_group_asks_the_detector_to_confirm_a_candidate_that_is_not_dense():
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.normal(0, 1, 2000), rng.normal(4.5, 0.4, 40)])  # a spread group above a normal population
    fake = np.arange(2000, 2040)
    assert not Decision(rule="group").decide(s).flagged.any()  # not dense enough on its own
    seen = {}

    def confirm(candidate, ranked):
        seen["candidate"], seen["ranked"] = candidate, ranked
        return {"confirmed": True, "members": fake}

    d = Decision(rule="group").decide(s, confirm=confirm)
    assert np.array_equal(np.flatnonzero(d.flagged), fake) and d.info["group"]["confirmation"]["confirmed"]
    assert len(seen["ranked"]) == Decision().budget(len(s)) and np.all(s[seen["ranked"][:-1]] >= s[seen["ranked"][1:]])
    assert set(seen["candidate"]) <= set(seen["ranked"]) and d.info["group"]["confirmation"]["flagged_users"] == 40
    refused = Decision(rule="group").decide(s, confirm=lambda c, r: {"confirmed": False})
    assert not refused.flagged.any() and refused.threshold is None
    # a dense group is flagged as it is when not confirmed, and completed by the members when confirmed
    dense, y = _scores()
    as_is = Decision(rule="group", max_flag_share=0.05).decide(dense, confirm=lambda c, r: {"confirmed": False})
    assert as_is.flagged[y].sum() >= 15 and not (as_is.flagged & ~y).any()
    completed = Decision(rule="group", max_flag_share=0.05).decide(dense, confirm=lambda c, r: {"confirmed": True,
                                                                                                "members": np.flatnonzero(y)})
    assert np.array_equal(completed.flagged, y)


def test_mixture_flags_few_when_nothing_stands_apart():
    rng = np.random.default_rng(1)
    s = rng.normal(0, 1, 2000)
    d = Decision(rule="outlier", max_flag_share=0.05).decide(s)
    assert d.flagged.sum() <= 0.005 * len(s)  # z >= 3 of a normal: ~0.1%
    m = Decision(rule="mixture", max_flag_share=0.02).decide(s)
    assert m.flagged.sum() <= 0.02 * len(s)


def test_soft_weights_discount_within_the_budget_only():
    s, y = _scores()
    d = Decision(rule="mixture", max_flag_share=0.05, weights="soft").decide(s)
    assert (d.weights[y] < 0.1).all() and (d.weights >= 0).all() and (d.weights <= 1).all()
    top = np.argsort(-s)[:50]
    outside = np.setdiff1d(np.arange(len(s)), top)
    assert (d.weights[outside] == 1.0).all()


def test_simulated_fakes_only_check_separation_except_under_the_legacy_rule():
    s, y = _scores()
    sim_far = np.full(10, 20.0)  # simulated fakes far above everyone
    a = Decision(rule="mixture", max_flag_share=0.05).decide(s, simulated=sim_far)
    b = Decision(rule="mixture", max_flag_share=0.05).decide(s)
    assert np.array_equal(a.flagged, b.flagged) and a.info["simulated_separation_auc"] == pytest.approx(1.0)
    # the legacy rule places its cut at the simulated fakes' 10% quantile: here above every real fake
    legacy = Decision(rule="simulated", max_flag_share=0.05).decide(s, simulated=sim_far)
    assert legacy.flagged.sum() == 0
    with pytest.raises(ConfigError, match="simulated"):
        Decision(rule="simulated").decide(s)


def test_paper_rule_passes_the_detector_decision_through():
    s, _ = _scores()
    own = s > 100
    assert not Decision(rule="paper").decide(s, paper_flags=own).flagged.any()
    with pytest.raises(ConfigError, match="published"):
        Decision(rule="paper").decide(s)


@pytest.mark.parametrize("kw", [{"rule": "median"}, {"max_flag_share": 0.0}, {"max_flag_share": 0.9}, {"max_flag_share": True},
                                {"weights": "fuzzy"}, {"z": -1}, {"density_ratio": 1.0}, {"density_ratio": 0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ConfigError):
        Decision(**kw)


def test_non_finite_scores_are_an_error():
    with pytest.raises(DataError, match="not finite"):
        Decision().decide(np.array([0.1, np.nan, 0.3, 0.2]))


def test_separation_auc_counts_ties_as_half():
    assert separation_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    assert separation_auc(np.array([2.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)


def test_decision_is_deterministic():
    s, _ = _scores(seed=3)
    a = Decision(rule="mixture", weights="soft", seed=5).decide(s)
    b = Decision(rule="mixture", weights="soft", seed=5).decide(s)
    np.testing.assert_array_equal(a.weights, b.weights)


# ------------------------------------------------------------------ camouflage
def test_camouflage_fakes_copy_genuine_histories_and_carry_few_targets():
    from recguard.attacks.poisoning import make_attack

    data = cyclic_data(num_users=200, num_items=60, length=20, seed=2)
    res = make_attack("camouflage", budget=0.05, num_targets=3, target_share=0.2, max_profile_length=20).poison(data, rng=0)
    assert len(res.fake_users) == 10
    genuine_items = {tuple(data[u].tolist()) for u in range(data.num_users)}
    targets = set(res.targets.tolist())
    for u in res.fake_users:
        seq = res.data[int(u)].tolist()
        n_target = sum(i in targets for i in seq)
        assert n_target == round(0.2 * len(seq))
        fillers = [i for i in seq if i not in targets]
        # the fillers are a genuine user's most recent items, in order
        assert any(tuple(g[-len(fillers):]) == tuple(fillers) or set(fillers) <= set(g) for g in genuine_items)
    again = make_attack("camouflage", budget=0.05, num_targets=3, max_profile_length=20).poison(data, rng=0)
    assert again.data.fingerprint() == res.data.fingerprint()
    with pytest.raises(ConfigError, match="target_share"):
        make_attack("camouflage", target_share=0.9)


def test_camouflage_runs_in_an_audit(tmp_path):
    spec = recguard.audit.AuditSpec(dataset="ml-100k", model="sasrec", model_config={"max_len": 20, "epochs": 1},
                                    attacks=("camouflage",), budgets=(0.01,), seeds=(0,), defenses=("none", "pca"))
    res = recguard.audit.run_audit(spec, tmp_path / "a", progress=False)
    rows = {r["defense"]: r for r in res["summary"]}
    assert set(rows) == {"none", "pca"} and rows["pca"]["detection"]["recall"]["mean"] is not None
    header = next(line for line in (tmp_path / "a" / "report.md").read_text().splitlines() if line.startswith("| attack"))
    assert "| removal | recall | genuine flagged |" in header
