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
    with pytest.raises(ConfigError, match="item_weights"):
        make("sasrec").fit(tiny, rng=0, progress=False, item_weights=np.ones(3))


def test_mnar_defense_in_audit_spec():
    from recguard.audit import AuditSpec

    AuditSpec(defenses=("none", "mnar"), defense_params={"mnar": {"clip": 0.2}})
    with pytest.raises(ConfigError, match="clip"):
        AuditSpec(defenses=("mnar",), defense_params={"mnar": {"clip": 0}})


def _coat(tmp_path, nu=12, ni=10, seed=0):
    rng = np.random.default_rng(seed)
    tr = np.where(rng.random((nu, ni)) < 0.4, rng.integers(1, 6, (nu, ni)), 0)
    te = np.zeros((nu, ni), dtype=int)
    for u in range(nu):
        te[u, rng.choice(ni, 4, replace=False)] = rng.integers(1, 6, 4)
    (tmp_path / "train.ascii").write_text("\n".join(" ".join(map(str, r)) for r in tr) + "\n")
    (tmp_path / "test.ascii").write_text("\n".join(" ".join(map(str, r)) for r in te) + "\n")
    return tr, te


def test_coat_loader(tmp_path):
    from recguard.data.mar import load_coat, load_mar
    from recguard.errors import DataError

    tr, te = _coat(tmp_path)
    d = load_coat(tmp_path)
    assert (d.num_users, d.num_items) == tr.shape
    assert len(d.train) == int((tr >= 4).sum()) and len(d.test) == int((te > 0).sum())
    assert d.test_relevance.sum() == int((te >= 4).sum())
    with pytest.raises(DataError, match="RECGUARD_OFFLINE"):
        load_mar("coat")  # the tests run offline: no download, a clear way out instead
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.ascii").write_text("1 2 x\n")
    with pytest.raises(DataError, match=r"train.ascii:1"):
        load_coat(tmp_path / "bad")


def test_mar_metrics_by_hand():
    from recguard.data.mar import MARData
    from recguard.defenses.mnar import mar_metrics

    # one user, test items 0,1,2 with relevance 0,1,1; scores rank them 1 > 0 > 2
    d = MARData("toy", 1, 3, np.array([[0, 0]]), np.array([[0, 0], [0, 1], [0, 2]]), np.array([0.0, 1.0, 1.0], np.float32))
    m = mar_metrics(np.array([[0.5, 0.9, 0.1]]), d, ks=(1, 3))
    assert m["DCG@1"] == 1.0 and m["Recall@1"] == 0.5 and m["MAP@1"] == 1.0
    assert math.isclose(m["DCG@3"], 1 + 1 / 2)  # ranks 1 and 3: 1/log2(2) + 1/log2(4)
    assert math.isclose(m["MAP@3"], (1 + 2 / 3) / 2)


def test_mf_trains_with_every_loss(tmp_path):
    from recguard.data.mar import load_coat
    from recguard.defenses.mnar import MFRecommender, mar_metrics

    _coat(tmp_path, nu=30, ni=20)
    d = load_coat(tmp_path)
    for loss in ("naive", "relmf", "clipped", "ubpr"):
        m = MFRecommender(loss=loss, dim=8, epochs=3, batch_size=128).fit(d, rng=0)
        assert m.scores().shape == (30, 20) and np.isfinite(m.scores()).all()
        again = MFRecommender(loss=loss, dim=8, epochs=3, batch_size=128).fit(d, rng=0)
        np.testing.assert_array_equal(m.scores(), again.scores())
        assert set(mar_metrics(m.scores(), d)) >= {"DCG@5", "Recall@5", "MAP@5", "rare_DCG@5"}
    with pytest.raises(ConfigError, match="loss"):
        MFRecommender(loss="magic")


def test_cli_debias_on_coat_files(tmp_path, capsys):
    from recguard.cli import main

    _coat(tmp_path, nu=30, ni=20)
    out = tmp_path / "run"
    assert main(["debias", "--dataset", "coat", "--path", str(tmp_path), "--loss", "naive,relmf", "--epochs", "2",
                 "--dim", "8", "--out", str(out)]) == 0
    import json

    res = json.loads((out / "results.json").read_text())
    assert set(res["summary"]) == {"naive", "relmf"} and (out / "report.html").exists()
    assert "| relmf |" in (out / "report.md").read_text()
    assert main(["debias", "--dataset", "coat", "--out", str(out)]) == 2
    assert main(["debias", "--loss", "magic", "--out", str(out)]) == 2


def test_coat_download_is_checksum_verified(tmp_path, monkeypatch):
    import hashlib
    import io
    import urllib.request
    import zipfile

    import recguard.data.mar as mar
    from recguard.errors import DataError

    _coat(tmp_path, nu=5, ni=4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in ("train.ascii", "test.ascii"):
            zf.write(tmp_path / f, f"coat/{f}")
    payload = buf.getvalue()

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setenv("RECGUARD_OFFLINE", "0")
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=60: Resp(payload))
    with pytest.raises(DataError, match="checksum mismatch"):
        mar.load_mar("coat")
    monkeypatch.setattr(mar, "COAT_SHA256", hashlib.sha256(payload).hexdigest())
    d = mar.load_mar("coat")
    assert (d.num_users, d.num_items) == (5, 4) and (tmp_path / "cache" / "coat" / "train.ascii").exists()
