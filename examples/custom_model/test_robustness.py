"""What a user's CI runs: recguard's contract checks on the model, then robustness requirements.

Run with ``pytest`` (the recguard plugin loads itself). ``-m "not recguard"`` skips the slower
robustness checks; ``--recguard-report DIR`` writes each check's JSON + HTML report.
"""

from mymodel import make_victim

from recguard.testing import parametrize_with_checks


@parametrize_with_checks([make_victim])
def test_victim_contract(victim, check):
    check(victim)


def train(split, seed):
    return make_victim(split.full.num_items).fit(split, rng=seed)


def test_clean_quality(recguard):
    recguard.assert_clean_quality(train(recguard.data.split(), 0), min_ndcg=0.8)


def test_popular_attack_lift_stays_small(recguard):
    # 3% fake users pushing unpopular items must not lift their T-HR@10 by more than 0.2 (measured: about 0.12)
    recguard.assert_robust(train, attack="popular", budget=0.03, metric="T-HR@10", max_lift=0.2, seeds=2)


def test_model_cannot_be_cloned_cheaply(recguard):
    # an attacker with 50 generated sequences and top-10 lists must not reach 60% Agreement@10
    recguard.assert_extraction_resistant(train(recguard.data.split(), 0), budget=50, k=10, epochs=3, max_agreement=0.6,
                                         surrogate="gru4rec", surrogate_config={"hidden": 16, "max_len": 8})
