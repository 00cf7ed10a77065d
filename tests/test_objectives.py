"""The training objectives (full CE, sampled softmax with logQ, gBCE, BCE), the ``auto`` choice,
and the memory-bounded exact evaluation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recguard
from recguard._finite import SCORE_BUDGET, check_scores, score_rows
from recguard.errors import ConfigError, NonFiniteError
from recguard.metrics import ranks_from_scores
from recguard.victims import _objective
from recguard.victims._objective import AUTO_SAMPLED_LOSS, Objective

from conftest import cyclic_data, make

CPU_CROSSOVER = _objective.AUTO_SAMPLED_FROM["cpu"]
ARCHS = ["sasrec", "bert4rec", "gru4rec"]


def _problem(p=30, n=25, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(p, d, generator=g, requires_grad=True)
    w = torch.randn(n, d, generator=g, requires_grad=True)
    t = torch.randint(0, n, (p,), generator=g)
    wt = torch.rand(p, generator=g) + 0.1
    return h, w, t, wt


def _reference_sampled_softmax(h, w, t, wt, neg, expected_counts) -> float:
    """The sampled softmax written out row by row: logits corrected by log(expected count), drawn
    negatives equal to the row's positive left out, rows weighted by ``wt``."""
    s = (h @ w.T - torch.log(expected_counts)).detach()
    ref = 0.0
    for i in range(len(t)):
        row = [s[i, t[i]]] + [s[i, j] for j in neg.tolist() if j != int(t[i])]
        ref += float(wt[i] / wt.sum()) * float(torch.logsumexp(torch.stack(row), 0) - s[i, t[i]])
    return ref


def _draw(obj, seed, rows=0):
    return obj.draw(torch.Generator().manual_seed(seed), "cpu", rows=rows)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_softmax_is_the_logq_corrected_formula(sampler):
    h, w, t, wt = _problem()
    counts = np.arange(25) * 3
    obj = Objective("sampled_ce", 25, 40, sampler, counts=counts if sampler == "popularity" else None, sampled_correction="all")
    val = obj(h, w, t, wt, torch.Generator().manual_seed(5), offset=0)
    neg = _draw(obj, 5)
    q = torch.full((25,), 1 / 25) if sampler == "uniform" else torch.tensor((counts + 1) / (counts + 1).sum(), dtype=torch.float32)
    assert float(val) == pytest.approx(_reference_sampled_softmax(h, w, t, wt, neg, 40 * q), rel=1e-5)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_softmax_per_prediction_is_the_formula_row_by_row(sampler):
    h, w, t, wt = _problem()
    counts = np.arange(25) * 3
    obj = Objective("sampled_ce", 25, 12, sampler, counts=counts if sampler == "popularity" else None,
                    negatives_per="prediction", sampled_correction="all")
    assert not obj.shared and obj.describe()["negatives_per"] == "prediction"
    val = obj(h, w, t, wt, torch.Generator().manual_seed(5), offset=0)
    neg = _draw(obj, 5, rows=len(t))  # [P, M]: each row its own
    assert neg.shape == (30, 12) and not all(torch.equal(neg[0], r) for r in neg[1:])
    q = torch.full((25,), 1 / 25) if sampler == "uniform" else torch.tensor((counts + 1) / (counts + 1).sum(), dtype=torch.float32)
    ref = sum(_reference_sampled_softmax(h[i:i + 1], w, t[i:i + 1], torch.ones(1), neg[i], 12 * q) * float(wt[i] / wt.sum())
              for i in range(len(t)))
    assert float(val) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ConfigError) as err:
        make("sasrec", loss="sampled_ce", sampler="mixed", negatives_per="prediction")
    assert err.value.param == "negatives_per"
    with pytest.raises(ConfigError) as err:
        make("sasrec", negatives_per="row")
    assert err.value.param == "negatives_per"


def test_sampled_softmax_under_uniform_needs_no_correction():
    # log(M·Q) is one constant for every logit under the uniform proposal: it cancels
    h, w, t, wt = _problem()
    obj = Objective("sampled_ce", 25, 40, sampled_correction="all")
    neg = _draw(obj, 1)
    s = (h @ w.T).detach()
    hit = neg[None] == t[:, None]
    negl = s[:, neg].masked_fill(hit, -math.inf)
    per = torch.logsumexp(torch.cat([s.gather(1, t[:, None]), negl], 1), 1) - s.gather(1, t[:, None]).squeeze(1)
    val = obj(h, w, t, wt, torch.Generator().manual_seed(1), offset=0)
    assert float(val) == pytest.approx(float((per * wt / wt.sum()).sum()), rel=1e-5)


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "mixed"])
def test_negatives_only_correction_leaves_the_positive_logit_exact(sampler):
    h, w, t, wt = _problem()
    counts = np.arange(25) * 3
    default = Objective("sampled_ce", 25, 40, sampler, counts=None if sampler == "uniform" else counts)
    assert default.describe()["sampled_correction"] == "all"
    obj = Objective("sampled_ce", 25, 40, sampler, counts=None if sampler == "uniform" else counts, sampled_correction="negatives")
    assert obj.describe()["sampled_correction"] == "negatives"
    val = obj(h, w, t, wt, torch.Generator().manual_seed(5), offset=0)
    neg = obj.draw(torch.Generator().manual_seed(5), "cpu", targets=t)
    log_count = torch.full((25,), math.log(40 / 25)) if sampler == "uniform" else obj.log_expected
    s = (h @ w.T).detach()
    ref = 0.0
    for i in range(len(t)):
        row = [s[i, t[i]]] + [s[i, j] - log_count[j] for j in neg.tolist() if j != int(t[i])]
        ref += float(wt[i] / wt.sum()) * float(torch.logsumexp(torch.stack(row), 0) - s[i, t[i]])
    assert float(val) == pytest.approx(ref, rel=1e-5)


def test_negatives_only_correction_tends_to_full_ce_and_the_default_does_not():
    h, w, t, wt = _problem(p=20, n=30)
    full = float(Objective("ce", 30, 1)(h, w, t, wt, None, offset=0))
    many = {c: float(Objective("sampled_ce", 30, 30_000, sampled_correction=c)(h, w, t, wt, torch.Generator().manual_seed(0), offset=0))
            for c in ("negatives", "all")}
    assert many["negatives"] == pytest.approx(full, rel=0.01)
    assert many["all"] > full + 5.0  # a softmax over 30,000 draws of 30 items: log(1000) too high
    for bad in (dict(loss="gbce", sampled_correction="negatives"), dict(loss="sampled_ce", sampler="mixed_logq",
                                                                        sampled_correction="negatives"),
                dict(sampled_correction="positive")):
        with pytest.raises(ConfigError) as e:
            recguard.SASRec(**bad)
        assert e.value.param == "sampled_correction"


def test_softmax_temperature_divides_every_score_of_full_and_sampled_softmax():
    h, w, t, wt = _problem()
    bias = torch.randn(25, generator=torch.Generator().manual_seed(3))
    s = (h @ w.T + bias).detach() / 0.4
    full = float((F.cross_entropy(s, t, reduction="none") * wt / wt.sum()).sum())
    obj = Objective("ce", 25, 1, temperature=0.4)
    assert float(obj(h, w, t, wt, None, bias=bias, offset=0).detach()) == pytest.approx(full, rel=1e-5)
    assert float(Objective("ce", 25, 1)(h, w, t, wt, None, bias=bias, offset=0).detach()) != pytest.approx(full, rel=1e-2)
    assert obj.describe()["softmax_temperature"] == 0.4 and "softmax_temperature" not in Objective("ce", 25, 1).describe()
    sampled = Objective("sampled_ce", 25, 40, temperature=2.0)
    neg = _draw(sampled, 5)
    ref = _reference_sampled_softmax(h / 2.0, w, t, wt, neg, torch.full((25,), 40 / 25))
    assert float(sampled(h, w, t, wt, torch.Generator().manual_seed(5), offset=0).detach()) == pytest.approx(ref, rel=1e-5)
    assert make("sasrec", loss="sampled_ce", softmax_temperature=0.5).config.softmax_temperature == 0.5
    for bad in (dict(softmax_temperature=0.0), dict(softmax_temperature=float("nan")), dict(softmax_temperature=-1.0),
                dict(loss="gbce", softmax_temperature=0.5), dict(loss="bce", softmax_temperature=2.0)):
        with pytest.raises(ConfigError) as e:
            recguard.SASRec(**bad)
        assert e.value.param == "softmax_temperature"


@pytest.mark.parametrize("t_cal", [0.0, 0.75, 1.0])
def test_gbce_is_the_gsasrec_formula(t_cal):
    h, w, t, wt = _problem()
    obj = Objective("gbce", 25, 10, gbce_t=t_cal)
    alpha = 10 / 24
    beta = alpha * (t_cal * (1 - 1 / alpha) + 1 / alpha)
    assert obj.beta == pytest.approx(beta)
    if t_cal == 0.0:
        assert obj.beta == pytest.approx(1.0)  # plain BCE
    if t_cal == 1.0:
        assert obj.beta == pytest.approx(alpha)
    val = obj(h, w, t, wt, torch.Generator().manual_seed(3), offset=0)
    neg = _draw(obj, 3, rows=len(t))  # gBCE: negatives of its own for each prediction
    assert neg.shape == (len(t), 10) and not obj.shared
    s = (h @ w.T).detach()
    ref = 0.0
    for i in range(len(t)):
        li = -beta * math.log(torch.sigmoid(s[i, t[i]]))
        li -= sum(math.log(1 - torch.sigmoid(s[i, j])) for j in neg[i].tolist() if j != int(t[i]))
        ref += float(wt[i] / wt.sum()) * li
    assert float(val) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("loss", ["sampled_ce", "gbce"])
def test_a_negative_is_never_the_positive(loss):
    # two items: about half the draws hit the positive; those must not push it down
    h = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(2, 4, requires_grad=True)
    t = torch.zeros(8, dtype=torch.long)
    obj = Objective(loss, 2, 64)
    neg = _draw(obj, 0, rows=0 if obj.shared else 8)
    assert (neg == 0).any() and (neg == 1).any()
    val = obj(h, w, t, torch.ones(8), torch.Generator().manual_seed(0), offset=0)
    # the same loss with only the draws of item 1
    s = h @ w.T
    if loss == "sampled_ce":
        only = neg[neg == 1]
        ref = (torch.logsumexp(torch.cat([s[:, :1], s[:, only]], 1), 1) - s[:, 0]).mean()
    else:
        ref = (obj.beta * F.softplus(-s[:, 0]) + F.softplus(s[:, 1]) * (neg == 1).sum(1)).mean()
    torch.testing.assert_close(val, ref)


def test_popularity_gbce_weights_each_negative_by_its_importance():
    h, w, t, wt = _problem()
    counts = np.arange(25)
    obj = Objective("gbce", 25, 12, "popularity", counts=counts)
    neg = _draw(obj, 2, rows=len(t))
    q = (counts + 1) / (counts + 1).sum()
    s = (h @ w.T).detach()
    ref = 0.0
    for i in range(len(t)):
        li = obj.beta * float(F.softplus(-s[i, t[i]]))
        li += sum(float(F.softplus(s[i, j])) / (25 * q[j]) for j in neg[i].tolist() if j != int(t[i]))
        ref += float(wt[i] / wt.sum()) * li
    assert float(obj(h, w, t, wt, torch.Generator().manual_seed(2), offset=0)) == pytest.approx(ref, rel=1e-4)


def test_loss_settings_are_validated():
    for bad, param in [(dict(loss="gbce", sampler="mixed"), "sampler"), (dict(loss="gbce", sampler="mixed_logq"), "sampler"),
                       (dict(loss="softmax"), "loss"),
                       (dict(num_negatives=0), "num_negatives"),
                       (dict(num_negatives=True), "num_negatives"), (dict(sampler="zipf"), "sampler"),
                       (dict(gbce_t=1.5), "gbce_t"), (dict(loss="bce", sampler="popularity"), "sampler")]:
        with pytest.raises(ConfigError) as e:
            recguard.SASRec(**bad)
        assert e.value.param == param, bad
    with pytest.raises(ConfigError, match="needs at least 2 items"):
        _objective.resolve_objective(recguard.SASRec(loss="gbce").config, 1)


def test_auto_picks_by_catalogue_size_and_says_so():
    cfg = recguard.SASRec().config
    assert cfg.loss == "auto"
    small = _objective.resolve_objective(cfg, CPU_CROSSOVER - 1)
    big = _objective.resolve_objective(cfg, CPU_CROSSOVER)
    assert small.loss == "ce" and big.loss == AUTO_SAMPLED_LOSS
    assert big.num_negatives == _objective.DEFAULT_NEGATIVES[AUTO_SAMPLED_LOSS]
    assert "auto" in small.describe()["chosen_by"] and str(f"{CPU_CROSSOVER:,}") in big.describe()["chosen_by"]
    assert "measured CPU crossover" in big.describe()["chosen_by"]
    explicit = _objective.resolve_objective(recguard.SASRec(loss="ce").config, 10 * CPU_CROSSOVER)
    assert explicit.loss == "ce" and explicit.describe()["chosen_by"] == "config"


def test_auto_follows_the_device_it_trains_on():
    # the rule is resolved from the device's type alone, so it is checked without a GPU
    cfg = recguard.SASRec().config
    gpu = _objective.AUTO_SAMPLED_FROM["cuda"]
    assert gpu > CPU_CROSSOVER
    between = _objective.resolve_objective(cfg, CPU_CROSSOVER * 2, device="cuda:0")
    assert between.loss == "ce" and "CUDA" in between.describe()["chosen_by"]
    assert _objective.resolve_objective(cfg, CPU_CROSSOVER * 2, device="cpu").loss == AUTO_SAMPLED_LOSS
    assert _objective.resolve_objective(cfg, gpu, device="cuda").loss == AUTO_SAMPLED_LOSS
    assert _objective.auto_crossover("mps")[:2] == ("cpu", CPU_CROSSOVER)
    said = _objective.resolve_objective(cfg, gpu, device="cuda").describe()["chosen_by"]
    assert ("provisional" in said) != _objective.AUTO_MEASURED["cuda"]


def test_mixed_negatives_are_half_from_the_batch_with_the_balance_correction():
    h, w, t, wt = _problem(p=30, n=25)
    counts = np.arange(25) * 3.0
    obj = Objective("sampled_ce", 25, 40, "mixed", counts=counts, sampled_correction="all")
    assert obj.in_batch == 20 and obj.describe()["in_batch_negatives"] == 20
    neg = obj.draw(torch.Generator().manual_seed(5), "cpu", targets=t)
    assert set(neg[:20].tolist()) <= set(t.tolist())  # the in-batch half is made of the batch's positives
    val = obj(h, w, t, wt, torch.Generator().manual_seed(5), offset=0)
    expected = torch.tensor(20 * counts / counts.sum() + 20 / 25, dtype=torch.float32)
    assert float(val) == pytest.approx(_reference_sampled_softmax(h, w, t, wt, neg, expected), rel=1e-5)


def test_mixed_correction_estimates_the_softmax_normaliser_without_bias():
    # E[Σ_{j in S} exp(s_j) / (M_b·q_j + M_u/N)] = Σ_j exp(s_j) when the in-batch half follows q
    n, m = 12, 8
    counts = np.array([40, 1, 0, 7, 3, 20, 2, 0, 9, 5, 1, 12], dtype=np.float64)
    obj = Objective("sampled_ce", n, m, "mixed", counts=counts)
    scores = torch.linspace(-1.0, 2.0, n)
    pool = torch.repeat_interleave(torch.arange(n), torch.as_tensor(counts, dtype=torch.long))  # batch positives ~ q
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([obj.draw(gen, "cpu", targets=pool) for _ in range(20000)])
    estimate = torch.exp(scores[draws] - obj.log_expected[draws]).sum(1).mean()
    assert float(estimate) == pytest.approx(float(torch.exp(scores).sum()), rel=0.02)
    # the in-batch half alone could never draw items 2 and 7 (no training target); the uniform half does
    assert {2, 7} <= set(draws.unique().tolist())


def test_esasrec_mixing_draws_distinct_batch_items_and_corrects_every_logit_by_popularity():
    h, w, t, wt = _problem(p=30, n=25)
    counts = np.arange(25) * 3.0
    obj = Objective("sampled_ce", 25, 40, "mixed_logq", counts=counts)
    assert obj.in_batch == 20 and obj.describe()["sampled_correction"] == "all"  # eSASRec's form
    skewed = torch.cat([torch.zeros(200, dtype=torch.long), torch.arange(1, 6)])  # item 0 is most of the batch
    gen = torch.Generator().manual_seed(0)
    picked = torch.cat([obj.draw(gen, "cpu", targets=skewed)[:20] for _ in range(300)])
    assert set(picked.tolist()) <= set(range(6))
    share_of_0 = float((picked == 0).float().mean())
    assert abs(share_of_0 - 1 / 6) < 0.03  # uniform over the distinct items, not over the positions (200/205)
    neg = obj.draw(torch.Generator().manual_seed(5), "cpu", targets=t)
    val = obj(h, w, t, wt, torch.Generator().manual_seed(5), offset=0)
    q = (counts + 1) / (counts + 1).sum()
    expected = torch.tensor(q, dtype=torch.float32)  # exp(log q_j): the correction is −log q_j on every logit
    assert float(val) == pytest.approx(_reference_sampled_softmax(h, w, t, wt, neg, expected), rel=1e-5)


def _loss_settings(loss: str) -> dict:
    """``"mixed"``, ``"mixed_logq"``: sampled softmax with that sampler; ``"per_prediction"``: sampled softmax with
    each prediction's own negatives; any other name is a loss with its default sampler."""
    if loss == "per_prediction":
        return dict(loss="sampled_ce", negatives_per="prediction")
    return dict(loss="sampled_ce", sampler=loss) if loss.startswith("mixed") else dict(loss=loss)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("loss", ["sampled_ce", "gbce", "mixed", "mixed_logq", "per_prediction"])
def test_sampled_losses_train_every_architecture(arch, loss, tmp_path):
    data = cyclic_data(num_users=200, num_items=30, length=14, noise=0.05)
    slow = (arch, loss) == ("bert4rec", "gbce")
    victim = make(arch, hidden=32, epochs=80 if slow else 30, lr=5e-3, dropout=0.1, **_loss_settings(loss),
                  num_negatives=8).fit(data, rng=0, progress=False)
    m = recguard.evaluate(victim, data.split(), ks=(10,))
    # random guessing: ~0.36. BERT4Rec with gBCE learns the rule only partly here (0.48 after
    # 30 epochs, 0.55 after 80: its cloze task sees ~20% of the positions), the others nearly fully
    assert m["HR@10"] > (0.5 if slow else 0.8), m
    info = victim.fit_info_["objective"]
    assert info["loss"] == _loss_settings(loss)["loss"] and info["num_negatives"] == 8
    assert info["negatives_shared_per_batch"] == (loss not in ("gbce", "per_prediction"))
    assert info.get("in_batch_negatives") == (4 if loss.startswith("mixed") else None)
    victim.save(tmp_path / "v")
    assert recguard.load(tmp_path / "v").fit_info_["objective"] == info


@pytest.mark.parametrize("loss", ["sampled_ce", "gbce", "bce", "mixed", "per_prediction"])
def test_sampled_training_is_deterministic(loss):
    data = cyclic_data(num_users=60)
    a = make("sasrec", epochs=2, **_loss_settings(loss), num_negatives=16).fit(data, rng=3, progress=False)
    b = make("sasrec", epochs=2, **_loss_settings(loss), num_negatives=16).fit(data, rng=3, progress=False)
    for (ka, va), (_, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert torch.equal(va, vb), ka


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("loss", ["sampled_ce", "gbce", "mixed"])
def test_zero_weight_users_and_items_do_not_move_sampled_gradients(arch, loss):
    data = cyclic_data(num_users=6, num_items=20, length=10)
    victim = make(arch, dropout=0.0, epochs=1, **_loss_settings(loss), num_negatives=8).fit(data, rng=0, progress=False)
    module = victim.module
    module.train()
    x = torch.from_numpy(data.padded(11)[:4])
    x2 = x.clone()
    x2[2] = torch.tensor([0, 0, 0, 5, 9, 1, 3, 7, 2, 8, 4])

    def grads(batch, w, item_w=None):
        module.zero_grad()
        victim.training_loss(module, batch, w, torch.Generator().manual_seed(0), item_w).backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]

    w = torch.tensor([1.0, 0.5, 0.0, 2.0])
    for a, b in zip(grads(x, w), grads(x2, w)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    ones = torch.ones(4)
    assert any(not torch.allclose(a, b) for a, b in zip(grads(x, ones), grads(x2, ones)))
    if arch == "bert4rec":
        return  # its last item is an input too; the item-weight check below needs a next-item model
    # item weights: a term whose target has weight 0 vanishes, so swapping the last target
    # (never an input of a next-item model) between two zero-weight items changes nothing
    x3, x4 = x.clone(), x.clone()
    x3[0, -1], x4[0, -1] = 17, 18
    item_w = torch.ones(data.num_items + 1)
    item_w[[17, 18]] = 0.0
    for a, b in zip(grads(x3, ones, item_w), grads(x4, ones, item_w)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(grads(x3, ones), grads(x4, ones)))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("loss", ["ce", "sampled_ce"])
def test_the_gpu_layout_of_loss_terms_gives_the_same_loss_and_gradients(arch, loss, monkeypatch):
    """On a GPU every position is a loss term (those that predict nothing with weight 0), so that no
    step waits for the device to count the predictions; on the CPU only the predictions are terms.
    Forced on the CPU here, the GPU layout gives the loss and gradients of the compact one."""
    from recguard.victims import _base, bert4rec

    data = cyclic_data(num_users=6, num_items=20, length=10)
    victim = make(arch, dropout=0.0, epochs=1, loss=loss, num_negatives=8).fit(data, rng=0, progress=False)
    module = victim.module
    module.train()
    x = torch.from_numpy(data.padded(11)[:4])
    x[1, :6] = 0  # a shorter history
    w = torch.tensor([1.0, 0.5, 0.0, 2.0])  # a user without influence
    item_w = torch.ones(data.num_items + 1)
    item_w[int(x[0, -1])] = 0.0  # and a target without influence
    term_counts = []

    def loss_and_grads():
        module.zero_grad()
        value = victim.training_loss(module, x, w, torch.Generator().manual_seed(0), item_w)
        value.backward()
        return value.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]

    def counted(*args, dense):
        terms = compact_terms(*args[:5], dense=dense)
        term_counts.append(len(terms[1]))
        return terms

    compact_terms = _base.prediction_terms
    for mod in (_base, bert4rec):
        monkeypatch.setattr(mod, "prediction_terms", lambda *a: counted(*a, dense=False))
    compact = loss_and_grads()
    for mod in (_base, bert4rec):
        monkeypatch.setattr(mod, "prediction_terms", lambda *a: counted(*a, dense=True))
    monkeypatch.setattr(victim.objective, "drops_zero_weight_terms", False)
    dense = loss_and_grads()
    assert term_counts[1] > term_counts[0] > 0 and term_counts[1] % 4 == 0  # every position of the 4 rows
    torch.testing.assert_close(dense[0], compact[0], rtol=1e-5, atol=1e-7)
    for a, b in zip(dense[1], compact[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_gru4rec_unpacked_as_on_a_gpu_gives_the_packed_states():
    # on a GPU GRU4Rec runs over the trailing padding instead of packing (which needs the lengths on the host)
    data = cyclic_data(num_users=6, num_items=20, length=10)
    module = make("gru4rec", epochs=1).fit(data, rng=0, progress=False).module.eval()
    x = torch.from_numpy(data.padded(11)[:4])
    x[1, :6] = 0
    with torch.no_grad():
        torch.testing.assert_close(module.hidden_states(x, packed=False), module.hidden_states(x, packed=True), rtol=1e-5, atol=1e-6)


def test_which_objectives_drop_zero_weight_terms_before_drawing():
    # on the CPU always; on a GPU only where the terms' rows feed a draw or cost more than one wait
    gpu = {(loss, per): Objective(loss, 50, 8, negatives_per=per, device="cuda").drops_zero_weight_terms
           for loss, per in (("ce", "batch"), ("sampled_ce", "batch"), ("sampled_ce", "prediction"), ("gbce", "batch"), ("bce", "batch"))}
    assert gpu == {("ce", "batch"): False, ("sampled_ce", "batch"): False, ("sampled_ce", "prediction"): True,
                   ("gbce", "batch"): True, ("bce", "batch"): True}
    assert all(Objective(loss, 50, 8).drops_zero_weight_terms for loss in ("ce", "sampled_ce", "gbce"))
    # with a sparse item table a zero-weight term's row never enters the gradient, where lazy Adam would move it
    obj = Objective("sampled_ce", 50, 2, device="cuda")
    obj.sparse = True
    table = torch.randn(51, 4, requires_grad=True)
    h, targets, w = torch.randn(3, 4), torch.tensor([3, 7, 11]), torch.tensor([1.0, 0.0, 1.0])
    obj(h, table, targets, w, torch.Generator().manual_seed(0)).backward()
    negatives = obj.draw(torch.Generator().manual_seed(0), "cpu", targets=targets[[0, 2]])
    rows = set(table.grad.coalesce().indices()[0].tolist())
    assert rows == {4, 12} | {int(j) + 1 for j in negatives}


def test_auto_victim_records_its_choice_in_the_audit_results(tmp_path):
    data = cyclic_data(num_users=30)
    v = make("sasrec", epochs=1).fit(data, rng=0, progress=False)
    obj = v.fit_info_["objective"]
    assert obj["loss"] == "ce" and obj["chosen_by"].startswith("auto:")


def test_memory_bounded_batches():
    assert score_rows(3416) == 1024
    assert score_rows(12_101) == SCORE_BUDGET // 12_102
    assert score_rows(1_000_000) == 32
    assert score_rows(10, cap=4) == 4


def test_evaluation_is_exact_whatever_the_batching():
    data = cyclic_data(num_users=150, num_items=30, length=14, noise=0.2)
    split = data.split()
    v = make("sasrec", epochs=3).fit(split, rng=0, progress=False)
    x, y = split.inputs("test", v.max_len)
    # the reference: every user scored at full padded width, ranks on a copy
    ref = ranks_from_scores(v.score(torch.from_numpy(x)), torch.from_numpy(y), torch.from_numpy(x)).numpy()
    for bs in (1, 7, None):
        _, ranks = recguard.evaluate(v, split, batch_size=bs, return_ranks=True)
        np.testing.assert_array_equal(ranks, ref)


def test_fast_finiteness_check_still_refuses_nan_and_plus_inf():
    s = torch.randn(4, 9)
    s[:, 0] = -math.inf
    assert check_scores(s, "m") is s  # -inf is how items are masked
    for bad in (math.nan, math.inf):
        t = s.clone()
        t[2, 3] = bad
        with pytest.raises(NonFiniteError):
            check_scores(t, "m")


@pytest.mark.parametrize("arch", ARCHS)
def test_large_catalogues_update_item_rows_sparsely(arch, monkeypatch):
    import recguard.victims._train as train_mod

    monkeypatch.setattr(train_mod, "SPARSE_ROWS_FROM", 1)  # as if the catalogue were large
    data = cyclic_data(num_users=200, num_items=30, length=14, noise=0.05)
    seen = {}
    real = train_mod.make_optimizer

    def spy(module, cfg, sparse_table=None):
        seen["sparse"] = sparse_table is not None
        return real(module, cfg, sparse_table=sparse_table)

    monkeypatch.setattr(train_mod, "make_optimizer", spy)
    kw = dict(hidden=32, epochs=30, lr=5e-3, dropout=0.1, loss="sampled_ce", num_negatives=8)
    a = make(arch, **kw).fit(data, rng=0, progress=False)
    assert seen["sparse"] and not a.module.item_emb.sparse  # dense gradients again after training
    assert recguard.evaluate(a, data.split(), ks=(10,))["HR@10"] > 0.8
    b = make(arch, **kw).fit(data, rng=0, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()))
    seen.clear()
    make(arch, **{**kw, "epochs": 1, "weight_decay": 0.01}).fit(data, rng=0, progress=False)
    assert seen["sparse"] is False  # weight decay needs the whole table: dense AdamW
