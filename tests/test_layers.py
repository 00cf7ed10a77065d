import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recguard.victims._layers import _LinearSoftmaxCE, attention_mask, weighted_softmax_ce
from recguard.victims._train import batches


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_chunked_ce_matches_reference_value_and_gradients(with_bias, chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w_out = torch.randn(13, 6, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(13, dtype=torch.float64, generator=g, requires_grad=True) if with_bias else None
    t = torch.randint(0, 13, (50,), generator=g)
    w = torch.rand(50, dtype=torch.float64, generator=g)
    w[[3, 9]] = 0
    coef = w / w.sum()
    params = [h, w_out] + ([b] if with_bias else [])
    ours = _LinearSoftmaxCE.apply(h, w_out, b, t, coef, chunk, True)
    logits = h @ w_out.T + (b if with_bias else 0)
    ref = (F.cross_entropy(logits, t, reduction="none") * w).sum() / w.sum()
    torch.testing.assert_close(ours, ref)
    for a, r in zip(torch.autograd.grad(ours, params), torch.autograd.grad(ref, params, retain_graph=True)):
        torch.testing.assert_close(a, r)
    # the gradient is computed in the forward pass: an outer factor must still scale it
    ours = _LinearSoftmaxCE.apply(h, w_out, b, t, coef, chunk, True)
    for a, r in zip(torch.autograd.grad(-2.5 * ours, params), torch.autograd.grad(-2.5 * ref, params)):
        torch.testing.assert_close(a, r)
    with torch.no_grad():  # no gradient wanted: value only
        torch.testing.assert_close(weighted_softmax_ce(h, w_out, t, w, bias=b), ref.detach())


def test_chunked_ce_under_bfloat16_autocast_keeps_a_float32_softmax():
    g = torch.Generator().manual_seed(1)
    h32 = torch.randn(40, 16, generator=g)
    w_out = (0.3 * torch.randn(300, 16, generator=g)).requires_grad_()
    t = torch.randint(0, 300, (40,), generator=g)
    w = torch.rand(40, generator=g)
    ref = weighted_softmax_ce(h32, w_out, t, w)
    (ref_grad,) = torch.autograd.grad(ref, w_out)
    # h in bfloat16, as a model's last Linear gives it under autocast; the weights stay float32
    h16 = h32.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        val = weighted_softmax_ce(h16, w_out, t, w, bias=None)
        grads = torch.autograd.grad(val, [h16, w_out])
    assert val.dtype == torch.float32 and grads[0].dtype == torch.bfloat16 and grads[1].dtype == torch.float32
    torch.testing.assert_close(val, ref, rtol=2e-2, atol=0.0)
    torch.testing.assert_close(grads[1], ref_grad, rtol=0.0, atol=0.05 * float(ref_grad.abs().max()))


def test_ce_hand_computed():
    # two classes with logits (0, log 3): p = (1/4, 3/4); CE for class 1 = -log(3/4)
    h = torch.tensor([[1.0]])
    w = torch.tensor([[0.0], [float(np.log(3.0))]])
    val = weighted_softmax_ce(h, w, torch.tensor([1]), torch.tensor([2.0]))
    assert float(val) == pytest.approx(-np.log(0.75), rel=1e-6)
    assert float(weighted_softmax_ce(h, w, torch.tensor([1]), torch.tensor([0.0]))) == 0.0


def test_attention_mask_causal_and_padding():
    valid = torch.tensor([[False, True, True]])
    m = attention_mask(valid, causal=True)[0, 0]
    assert m.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    m2 = attention_mask(valid, causal=False)[0, 0]
    assert m2.tolist() == [[True, True, True], [False, True, True], [False, True, True]]


def test_batches_cover_every_user_once_with_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    out = batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(out)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in out])
    assert spread < 20  # bucketing: far below the ~190 of random batches
    again = batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))


def test_fast_dropout_rate_scale_gradient_and_seed():
    from recguard.victims._layers import fast_dropout, keep_mask

    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(3)
    y = fast_dropout(x, 0.2, True)
    kept = y.detach() != 0
    assert abs(float(1 - kept.float().mean()) - 0.2) < 0.005  # drop rate
    assert torch.allclose(y.detach()[kept], torch.full_like(y.detach()[kept], 1 / 0.8))  # inverted scaling
    assert abs(float(y.detach().mean()) - 1.0) < 0.01  # expectation kept
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(sum)/dx = keep * scale
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.2, True).detach(), y.detach())  # torch's generator fixes it
    assert fast_dropout(x, 0.2, False) is x and fast_dropout(x, 0.0, True) is x
    lanes = keep_mask(torch.Size([7, 3]), 0.5, torch.device("cpu"))
    assert lanes.shape == (7, 3) and lanes.dtype == torch.bool


def test_training_attention_path_equals_sdpa_when_nothing_is_dropped():
    import recguard.victims._layers as L

    torch.manual_seed(0)
    blk = L.TransformerBlock(16, 2, 1e-9, 16)  # p > 0 takes the written-out path; rounds to no drops, scale ~1
    x = torch.randn(3, 5, 16)
    mask = attention_mask(torch.tensor([[False, True, True, True, True]] * 3), causal=True)
    ref = blk.eval()(x, mask)  # scaled_dot_product_attention
    out = blk.train()(x, mask)
    torch.testing.assert_close(out, ref)


def test_forward_first_equals_the_full_blocks_first_row():
    import recguard.victims._layers as L

    torch.manual_seed(0)
    blk = L.TransformerBlock(16, 2, 1e-9, 24, activation="gelu")
    x = torch.randn(4, 7, 16, requires_grad=True)
    keep = torch.rand(4, 7) > 0.4
    keep[:, 0] = True  # the CLS position is always a key
    keep[0, 3] = False
    mask = attention_mask(keep, causal=False)
    for train in (False, True):  # eval: SDPA path; train: the written-out path (nothing dropped at p ~ 0)
        blk.train(train)
        ref = blk(x, mask)[:, 0]
        out = blk.forward_first(x, keep)
        torch.testing.assert_close(out, ref)
        g_ref, = torch.autograd.grad(ref.square().sum(), x)
        g_out, = torch.autograd.grad(out.square().sum(), x)
        torch.testing.assert_close(g_out, g_ref)
    # a masked key changes nothing; an attended one does
    blk.eval()
    y = x.detach().clone()
    y[0, 3] += 5.0
    torch.testing.assert_close(blk.forward_first(y, keep)[0], blk.forward_first(x.detach(), keep)[0])
    y = x.detach().clone()
    y[0, 0] += 5.0
    assert not torch.allclose(blk.forward_first(y, keep)[0], blk.forward_first(x.detach(), keep)[0])
