import numpy as np
import pytest
import torch
from torch import nn

from recguard.data import SequenceData
from recguard.metrics import clean_cost, defense_removal, target_exposure
from recguard.victims import TorchVictim


class FixedScores(nn.Module):
    """Scores = a fixed vector for every user (item i scores table[i])."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))

    def forward(self, x):
        return self.table.expand(x.shape[0], -1).clone()


def test_target_exposure_hand_computed():
    # 6 items; scores make item 6 > 5 > 4 > 3 > 2 > 1
    v = TorchVictim(FixedScores([0, 1, 2, 3, 4, 5, 6]), num_items=6, max_len=5)
    data = SequenceData.from_sequences([[6, 1, 2], [5, 6, 1], [1, 2, 3], [4, 2]], num_items=6)
    split = data.split()  # users 0..2 are evaluated; user 3 has < 3 items
    res = target_exposure(v, split, [3, 4], ks=(1, 2))
    # target 3: user 0 has not seen it; unseen = {3,4,5}: 5 > 4 > 3 -> rank 3; user 1: unseen {2,3,4} -> rank 2;
    # user 2 interacted with 3 (its test item) -> excluded
    t3 = res["per_target"]["3"]
    assert t3["users"] == 2 and t3["mean_rank"] == pytest.approx(2.5)
    assert t3["T-HR@2"] == pytest.approx(0.5) and t3["T-HR@1"] == 0.0
    assert t3["T-NDCG@2"] == pytest.approx(0.5 / np.log2(3))
    # target 4: user 0 unseen {3,4,5}: rank 2; user 1 unseen {2,3,4}: rank 1; user 2 unseen {4,5,6}: rank 3
    t4 = res["per_target"]["4"]
    assert t4["users"] == 3 and t4["T-HR@1"] == pytest.approx(1 / 3) and t4["T-HR@2"] == pytest.approx(2 / 3)
    assert res["T-HR@2"] == pytest.approx((0.5 + 2 / 3) / 2)  # users first, then targets
    assert res["mean_rank"] == pytest.approx((2.5 + 2.0) / 2)


def test_derived_metrics():
    assert defense_removal(0.01, 0.11, 0.03) == pytest.approx(0.8)
    assert defense_removal(0.01, 0.01, 0.03) is None
    assert clean_cost(0.2, 0.19) == pytest.approx(-0.05)
