"""SASRec's published-code variants (issue 29): the block of SASRec's public PyTorch code, positions
counted from the first item, and Adam's second-moment decay, each selectable and saved with the model."""

import pytest
import torch

import recguard
from recguard.errors import ConfigError
from recguard.victims._layers import attention_bias
from recguard.victims.sasrec import PublishedSASRecBlock

from conftest import assert_variant_learns_and_round_trips, cyclic_data


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


def test_the_rectools_initialisation_draws_every_matrix_from_xavier_normal():
    torch.manual_seed(0)
    module = recguard.SASRec(hidden=64, block="published", init="xavier_normal", scale_embeddings=False).build(2000)
    emb = module.item_emb.weight.detach()
    assert float(emb[0].abs().sum()) == 0.0  # the padding row stays zero
    # Xavier normal: std sqrt(2 / (fan_in + fan_out)), the [3D, D] query/key/value matrix counted as one
    torch.testing.assert_close(float(emb[1:].std()), (2 / (2001 + 64)) ** 0.5, rtol=0.05, atol=0.0)
    torch.testing.assert_close(float(module.blocks[0].ff1.weight.detach().std()), (2 / 128) ** 0.5, rtol=0.1, atol=0.0)
    torch.testing.assert_close(float(module.blocks[0].kv.weight.detach().std()), (2 / 256) ** 0.5, rtol=0.1, atol=0.0)
    assert module.scale == 1.0 and recguard.SASRec(hidden=64).build(10).scale == 8.0
    default = recguard.SASRec(hidden=64).build(2000)
    torch.testing.assert_close(float(default.item_emb.weight.detach()[1:].std()), 0.02, rtol=0.05, atol=0.0)


def test_attended_padding_equals_a_window_padded_to_max_len_without_a_key_mask():
    torch.manual_seed(0)
    module = recguard.SASRec(block="published", padding_keys="attended", max_len=8, hidden=16, num_heads=2, num_blocks=2,
                             dropout=0.0).build(20).eval()
    with torch.no_grad():
        for blk in module.blocks:  # non-zero biases: the padding's key and value
            blk.kv.bias.normal_()
    got = module.hidden_states(torch.tensor([[0, 0, 3, 4, 5], [7, 8, 9, 10, 11]]))[:, -1]
    # RecTools' way: every window padded to max_len, zero inputs there, a causal mask and no key padding mask
    full = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5], [0, 0, 0, 7, 8, 9, 10, 11]])
    valid = (full > 0).unsqueeze(-1)
    h = (module.item_emb(full) * module.scale + module.pos_emb(torch.arange(8))[None]) * valid
    causal = attention_bias(torch.ones(8, 8, dtype=torch.bool).tril()[None, None], h.dtype)
    for blk in module.blocks:
        h = blk(h, causal) * valid
    torch.testing.assert_close(got, module.final_norm(h)[:, -1], rtol=1e-5, atol=1e-5)
    hidden = recguard.SASRec(block="published", max_len=8, hidden=16, num_heads=2, dropout=0.0).build(20).eval()
    hidden.load_state_dict(module.state_dict())
    assert not torch.allclose(hidden.hidden_states(torch.tensor([[3, 4, 5]]))[:, -1], got[:1], atol=1e-4)
    with pytest.raises(ConfigError) as e:
        recguard.SASRec(padding_keys="attended")  # the pre-LN block's padding keys are not the biases
    assert e.value.param == "padding_keys"


@pytest.mark.parametrize("settings", [dict(block="published"), dict(block="published", positions="first", adam_beta2=0.999),
                                      dict(block="published", init="xavier_normal", scale_embeddings=False),
                                      dict(precision="bfloat16"), dict(block="published", padding_keys="attended"),
                                      dict(item_dropout=0.2, loss="sampled_ce", num_negatives=8)])
def test_the_published_variants_learn_and_come_back_from_disk(settings, tmp_path):
    data = cyclic_data(num_users=150, num_items=30, length=12, noise=0.05)
    victim = recguard.SASRec(hidden=32, epochs=20, lr=5e-3, dropout=0.1, **settings).fit(data, rng=0, progress=False)
    assert_variant_learns_and_round_trips(victim, data, settings, tmp_path)


def test_unknown_variants_are_refused_by_name():
    for bad, param in [(dict(block="post_ln"), "block"), (dict(positions="last"), "positions"), (dict(adam_beta2=1.0), "adam_beta2"),
                       (dict(init="uniform"), "init"), (dict(precision="float16"), "precision"),
                       (dict(scale_embeddings="no"), "scale_embeddings"), (dict(padding_keys="all"), "padding_keys"),
                       (dict(item_dropout=1.0), "item_dropout"), (dict(item_dropout="0.2"), "item_dropout")]:
        with pytest.raises(ConfigError) as e:
            recguard.SASRec(**bad)
        assert e.value.param == param


def test_item_dropout_drops_the_table_once_for_the_inputs_and_the_outputs():
    victim = recguard.SASRec(item_dropout=0.5, max_len=6, hidden=8, dropout=0.0, loss="ce")
    module = victim.build(30).train()
    torch.manual_seed(0)
    table = module.item_table()
    weight = module.item_emb.weight
    kept = table != 0
    assert 0.3 < float(kept[1:].float().mean()) < 0.7  # half the entries, the kept ones scaled by 1 / (1 - p)
    torch.testing.assert_close(table[kept], weight[kept] * 2.0)
    assert module.eval().item_table() is weight  # evaluation reads the table as it is
    module.train()
    # one training step reads the inputs and the outputs from the same dropped table
    seen, objective = [], victim.objective

    class Spy:
        num_items = objective.num_items

        def __call__(self, h, tbl, targets, w, gen):
            seen.extend([tbl, h])
            return objective(h, tbl, targets, w, gen)

    victim.objective_ = Spy()
    batch = torch.tensor([[0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 9, 10, 11, 12]])
    loss = victim.training_loss(module, batch, torch.ones(2), None, None)
    states = module.hidden_states(batch[:, :-1], seen[0])
    torch.testing.assert_close(seen[1], states[(batch[:, 1:] > 0) & (batch[:, :-1] > 0)])
    module.item_drop = 0.0
    assert not torch.allclose(states, module.hidden_states(batch[:, :-1]))
    loss.backward()
    assert float(weight.grad[0].abs().sum()) == 0.0  # the padding row takes no gradient


def test_item_dropout_keeps_the_item_table_dense_on_large_catalogues():
    from recguard.victims._train import SPARSE_ROWS_FROM, training_optimizer

    for item_dropout, sparse in [(0.0, True), (0.2, False)]:
        victim = recguard.SASRec(item_dropout=item_dropout, loss="sampled_ce", hidden=8, max_len=4)
        module = victim.build(SPARSE_ROWS_FROM)
        _, table = training_optimizer(victim, module, SPARSE_ROWS_FROM)
        assert (table is not None) == sparse
