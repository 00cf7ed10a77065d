"""BERT4Rec as the SASRec-CE paper's code builds it (issue 29): HuggingFace's post-LayerNorm BertLayer,
a head tied to the item embeddings without a transform or bias, positions counted from the first item."""

import pytest
import torch

import recguard
from recguard.errors import ConfigError
from recguard.victims._layers import PostLNTransformerBlock, attention_mask

from conftest import assert_variant_learns_and_round_trips, cyclic_data


def test_the_post_ln_block_computes_what_huggingfaces_bert_layer_computes():
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    torch.manual_seed(0)
    config = BertConfig(hidden_size=8, num_attention_heads=2, intermediate_size=32, hidden_act="gelu", layer_norm_eps=1e-8,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    bert = BertLayer(config).eval()
    blk = PostLNTransformerBlock(8, 2, 0.0, 32, activation="gelu").eval()
    att = bert.attention
    with torch.no_grad():
        blk.qkv.weight.copy_(torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight]))
        blk.qkv.bias.copy_(torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias]))
        for ours, theirs in ((blk.proj, att.output.dense), (blk.ln1, att.output.LayerNorm), (blk.ff1, bert.intermediate.dense),
                             (blk.ff2, bert.output.dense), (blk.ln2, bert.output.LayerNorm)):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
    x = torch.randn(3, 5, 8)
    valid = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    additive = torch.zeros(3, 1, 1, 5).masked_fill(~valid[:, None, None, :], torch.finfo(torch.float32).min)
    expected = bert(x, attention_mask=additive)
    expected = expected[0] if isinstance(expected, tuple) else expected
    torch.testing.assert_close(blk(x, attention_mask(valid, causal=False))[valid], expected[valid], rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError):
        blk.forward_first(x, valid)


def test_the_published_bert4rec_learns_and_comes_back_from_disk(tmp_path):
    data = cyclic_data(num_users=150, num_items=30, length=12, noise=0.05)
    settings = dict(block="post_ln", head="tied", positions="first")
    victim = recguard.BERT4Rec(hidden=32, epochs=30, lr=5e-3, **settings).fit(data, rng=0, progress=False)
    module = victim.module
    assert module.out_bias is None and not hasattr(module, "out_proj") and isinstance(module.final_norm, torch.nn.Identity)
    fresh = recguard.BERT4Rec(hidden=64, block="post_ln").build(2000)  # HuggingFace BERT's N(0, 0.02) everywhere
    for weight in (fresh.item_emb.weight, fresh.blocks[0].qkv.weight, fresh.blocks[1].ff2.weight):
        assert float(weight.detach()[1:].std()) == pytest.approx(0.02, rel=0.1)
    assert_variant_learns_and_round_trips(victim, data, settings, tmp_path)


def test_positions_counted_from_the_first_item_do_not_depend_on_padding():
    module = recguard.BERT4Rec(positions="first", max_len=8, hidden=16, dropout=0.0).build(20).eval()
    short, padded = torch.tensor([[3, 4, 5]]), torch.tensor([[0, 0, 3, 4, 5]])
    torch.testing.assert_close(module.hidden_states(short)[:, -1], module.hidden_states(padded)[:, -1], rtol=1e-5, atol=1e-5)


def test_unknown_bert4rec_variants_are_refused_by_name():
    for bad, param in [(dict(block="post"), "block"), (dict(head="untied"), "head"), (dict(positions="last"), "positions")]:
        with pytest.raises(ConfigError) as e:
            recguard.BERT4Rec(**bad)
        assert e.value.param == param
