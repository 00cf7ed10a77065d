"""MNAR losses: hand-computed values and the unbiasedness of IPS by simulation."""

import math

import numpy as np
import pytest
import torch

from recguard.defenses.mnar import ideal_loss, item_propensity, pointwise_loss, ubpr_loss
from recguard.errors import ConfigError

sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus


def test_propensity_power_law():
    np.testing.assert_allclose(item_propensity(np.array([100, 25, 1, 0]), eta=0.5), [1.0, 0.5, 0.1, 1e-6])
    with pytest.raises(ConfigError):
        item_propensity(np.array([0, 0]))


def test_pointwise_losses_by_hand():
    s = torch.tensor([0.5, -1.0])
    y = torch.tensor([1.0, 0.0])
    th = torch.tensor([0.25, 0.5])
    d1 = [sp(-0.5), sp(1.0)]
    d0 = [sp(0.5), sp(-1.0)]
    naive = (d1[0] + d0[1]) / 2
    assert math.isclose(pointwise_loss(s, y, loss="naive").item(), naive, rel_tol=1e-6)
    # Rel-MF: weight 1/0.25 = 4 on the click: 4·δ1 + (1 − 4)·δ0 for row 0, δ0 for row 1
    relmf = ((4 * d1[0] - 3 * d0[0]) + d0[1]) / 2
    assert math.isclose(pointwise_loss(s, y, th, loss="relmf").item(), relmf, rel_tol=1e-6)
    # clipped at 0.5: weight 2
    clipped = ((2 * d1[0] - 1 * d0[0]) + d0[1]) / 2
    assert math.isclose(pointwise_loss(s, y, th, loss="clipped", clip=0.5).item(), clipped, rel_tol=1e-6)
    with pytest.raises(ConfigError, match="propensities"):
        pointwise_loss(s, y, loss="relmf")
    with pytest.raises(ConfigError, match="clip"):
        pointwise_loss(s, y, th, loss="clipped", clip=0.0)


def test_ubpr_by_hand_and_non_negative():
    s_pos, s_oth = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    th_pos, th_oth = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 1.0])
    y_oth = torch.tensor([1.0, 0.0])
    # row 0: (1/0.5)(1 − 1/0.25) = −6 times softplus(−1); row 1: 2·(1 − 0) = 2 times softplus(2)
    expect = (-6 * sp(-1.0) + 2 * sp(2.0)) / 2
    assert math.isclose(ubpr_loss(s_pos, s_oth, th_pos, y_oth, th_oth).item(), expect, rel_tol=1e-6)
    nn = ubpr_loss(s_pos, s_oth, th_pos, y_oth, th_oth, beta=0.5)
    assert math.isclose(nn.item(), (-0.5 + 2 * sp(2.0)) / 2, rel_tol=1e-6)


def test_ips_is_unbiased_naive_is_not():
    g = torch.Generator().manual_seed(0)
    n = 4000
    gamma = torch.rand(n, generator=g).clamp(0.02, 0.98)  # true relevance probabilities
    scores = torch.logit(gamma) + 0.5 * torch.randn(n, generator=g)  # a model that has learnt relevance
    theta = torch.rand(n, generator=g).clamp_min(0.05)  # exposure propensities
    ideal = ideal_loss(scores, gamma).item()
    relmf, naive = [], []
    for _ in range(300):
        clicks = (torch.rand(n, generator=g) < theta * gamma).float()
        relmf.append(pointwise_loss(scores, clicks, theta, loss="relmf").item())
        naive.append(pointwise_loss(scores, clicks, loss="naive").item())
    se = np.std(relmf) / math.sqrt(len(relmf))
    assert abs(np.mean(relmf) - ideal) < 4 * se + 1e-3
    assert abs(np.mean(naive) - ideal) > 20 * np.std(naive) / math.sqrt(len(naive))


def test_item_weights_enter_every_architecture(tiny):
    from conftest import make

    from recguard.defenses import MNARWeighting

    for arch in ("sasrec", "gru4rec", "bert4rec"):
        base = make(arch, epochs=2).fit(tiny, rng=0, progress=False)
        ones = make(arch, epochs=2).fit(tiny, rng=0, progress=False, item_weights=np.ones(tiny.num_items + 1))
        assert [h["loss"] for h in ones.history_] == pytest.approx([h["loss"] for h in base.history_])
        w = MNARWeighting().item_weights(tiny.split().train)
        assert w[0] == 0 and w[1:].min() >= 1.0 and w[1:].max() <= 10.0
        other = make(arch, epochs=2).fit(tiny, rng=0, progress=False, item_weights=w)
        assert other.history_[0]["loss"] != pytest.approx(base.history_[0]["loss"])
        assert getattr(other, "_target_weights", None) is None  # not kept after training
    with pytest.raises(ConfigError, match="item_weights"):
        make("sasrec").fit(tiny, rng=0, progress=False, item_weights=np.ones(3))


def test_mnar_defense_in_audit_spec():
    from recguard.audit import AuditSpec

    AuditSpec(defenses=("none", "mnar"), defense_params={"mnar": {"clip": 0.2}})
    with pytest.raises(ConfigError, match="clip"):
        AuditSpec(defenses=("mnar",), defense_params={"mnar": {"clip": 0}})
