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


class _FixedScores:
    """A stand-in model with a two-item input window that scores item i as i (higher ids rank first)."""

    max_len = 2
    num_items = 6

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.num_items + 1, dtype=torch.float32).expand(len(x), -1).clone()


def _two_user_split():
    from recguard.data import SequenceData

    # user 0: history 6, 5, 4 then valid 2, test 1; user 1: history 3 then valid 6, test 5
    return SequenceData.from_sequences([[6, 5, 4, 2, 1], [3, 6, 5]], num_items=6).split()


def test_split_history_is_every_item_before_the_held_out_one():
    split = _two_user_split()
    assert split.history("valid").tolist() == [[6, 5, 4], [0, 0, 3]]
    assert split.history("test", rows=[1]).tolist() == [[3, 6]]
    assert split.inputs("test", 2)[0].tolist() == [[4, 2], [3, 6]]  # the model's window is cut at max_len


def test_evaluate_masks_the_whole_history_unless_told_the_window():
    from recguard.metrics import evaluate

    split = _two_user_split()
    history = evaluate(_FixedScores(), split, which="test", ks=(1, 10), return_ranks=True)[1]
    window = evaluate(_FixedScores(), split, which="test", ks=(1, 10), return_ranks=True, seen="window")[1]
    # user 0 (test item 1): history masks 6, 5, 4, 2, leaving 3 above it; the window (4, 2) leaves 6, 5 and 3
    # user 1 (test item 5): both mask 3 and 6, so no candidate scores above 5
    assert history.tolist() == [2, 1]
    assert window.tolist() == [4, 1]


def test_evaluate_refuses_an_unknown_seen_rule():
    from recguard.errors import ConfigError
    from recguard.metrics import evaluate

    with pytest.raises(ConfigError, match="seen"):
        evaluate(_FixedScores(), _two_user_split(), seen="everything")
