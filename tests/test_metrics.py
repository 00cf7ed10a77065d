import math

import pytest
import torch

from recguard.metrics import hit_rate, mrr, ndcg, ranks_from_scores


def test_metrics_hand_computed():
    ranks = [1, 2, 11, 5]
    assert hit_rate(ranks, 10) == pytest.approx(0.75)
    assert hit_rate(ranks, 1) == pytest.approx(0.25)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 0 + 1 / math.log2(6)) / 4
    assert ndcg(ranks, 10) == pytest.approx(expected)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 11 + 1 / 5) / 4)
    assert ndcg([], 10) == 0.0


def test_ranks_filter_seen_but_never_the_target():
    scores = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0], [9.0, 1.0, 4.0, 3.0, 2.0]])
    targets = torch.tensor([3, 1])
    seen = torch.tensor([[0, 1], [1, 2]])  # user 0 saw item 1; user 1 saw items 1 (= target) and 2
    ranks = ranks_from_scores(scores, targets, seen)
    # user 0: candidates 2 (4.0), 3 (3.0), 4 (2.0) -> item 3 is 2nd; padding column 0 never counts
    # user 1: item 2 filtered; candidates 1 (1.0), 3 (3.0), 4 (2.0) -> item 1 is 3rd
    assert ranks.tolist() == [2, 3]
    assert scores[0, 1] == 5.0  # input untouched


def test_ranks_without_seen():
    scores = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
    assert ranks_from_scores(scores, torch.tensor([1])).tolist() == [3]
