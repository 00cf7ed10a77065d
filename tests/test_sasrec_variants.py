"""SASRec's published-code variants (issue 29): the block of SASRec's public PyTorch code, positions
counted from the first item, and Adam's second-moment decay, each selectable and saved with the model."""

import numpy as np
import pytest
import torch

import recguard
from recguard.errors import ConfigError
from recguard.victims.sasrec import PublishedSASRecBlock

from conftest import cyclic_data


def test_the_published_block_is_the_public_codes_arithmetic():
    torch.manual_seed(0)
    blk = PublishedSASRecBlock(8, 2, 0.0).eval()
    blk.draw_projections()
    x = torch.randn(3, 5, 8)
    causal = torch.zeros(5, 5).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))[None, None]
    # the same computation through torch's own MultiheadAttention, as SASRec's public code calls it
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([blk.q.weight, blk.kv.weight]))
        mha.in_proj_bias.copy_(torch.cat([blk.q.bias, blk.kv.bias]))
        mha.out_proj.weight.copy_(blk.proj.weight)
        mha.out_proj.bias.copy_(blk.proj.bias)
    q = blk.ln1(x)
    h = q + mha(q, x, x, attn_mask=causal[0, 0], need_weights=False)[0]
    y = blk.ln2(h)
    expected = y + blk.ff2(torch.relu(blk.ff1(y)))
    torch.testing.assert_close(blk(x, causal), expected, rtol=1e-5, atol=1e-5)
    # Xavier uniform over the joint [3D, D] matrix, as nn.MultiheadAttention draws it
    bound = (6.0 / (8 + 24)) ** 0.5
    assert float(blk.kv.weight.detach().abs().max()) <= bound and float(blk.q.weight.detach().abs().max()) > 0.5 * bound


def test_positions_counted_from_the_first_item_do_not_depend_on_padding():
    victim = recguard.SASRec(positions="first", max_len=8, hidden=16, dropout=0.0).build(20)
    module = victim.eval()
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 3, 4, 5]])
    torch.testing.assert_close(module.hidden_states(short)[:, -1], module.hidden_states(padded)[:, -1], rtol=1e-5, atol=1e-5)
    recent = recguard.SASRec(max_len=8, hidden=16, dropout=0.0).build(20).eval()
    recent.load_state_dict(module.state_dict())
    # counted from the latest item instead, the same weights read the same history differently
    assert not torch.allclose(recent.hidden_states(short)[:, -1], module.hidden_states(short)[:, -1])


@pytest.mark.parametrize("settings", [dict(block="published"), dict(block="published", positions="first", adam_beta2=0.999)])
def test_the_published_variants_learn_and_come_back_from_disk(settings, tmp_path):
    data = cyclic_data(num_users=150, num_items=30, length=12, noise=0.05)
    victim = recguard.SASRec(hidden=32, epochs=20, lr=5e-3, dropout=0.1, **settings).fit(data, rng=0, progress=False)
    assert recguard.evaluate(victim, data.split(), ks=(10,))["HR@10"] > 0.8
    victim.save(tmp_path / "v")
    back = recguard.load(tmp_path / "v")
    assert {k: back.config.to_dict()[k] for k in settings} == settings
    x = [data[u] for u in range(5)]
    np.testing.assert_array_equal(np.asarray(back.recommend(x, k=5)), np.asarray(victim.recommend(x, k=5)))


def test_unknown_variants_are_refused_by_name():
    for bad, param in [(dict(block="post_ln"), "block"), (dict(positions="last"), "positions"), (dict(adam_beta2=1.0), "adam_beta2")]:
        with pytest.raises(ConfigError) as e:
            recguard.SASRec(**bad)
        assert e.value.param == param
