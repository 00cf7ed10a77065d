import numpy as np
import pytest
import torch
from torch import nn

import recguard
from recguard.errors import ArtifactError, CapabilityError, ConfigError, NotFittedError, QueryBudgetExceeded
from recguard.victims import BlackBoxVictim, TorchVictim

from conftest import cyclic_data, make

ARCHS = ["sasrec", "bert4rec", "gru4rec"]


@pytest.fixture(scope="module", params=ARCHS)
def fitted(request):
    data = cyclic_data()
    return make(request.param, epochs=4).fit(data, rng=0, progress=False), data


def test_score_shape_padding_and_recommend(fitted):
    victim, data = fitted
    seqs = data.padded(victim.max_len)[:5]
    s = victim.score(seqs)
    assert s.shape == (5, data.num_items + 1)
    assert torch.isinf(s[:, 0]).all() and (s[:, 0] < 0).all()
    assert torch.isfinite(s[:, 1:]).all()
    rec = victim.recommend(seqs, k=5)
    assert rec.shape == (5, 5) and rec.min() >= 1
    for row, seq in zip(rec, seqs):
        assert not set(row.tolist()) & set(seq[seq > 0].tolist())
    assert victim.representation(seqs).shape == (5, victim.config.hidden)
    assert victim.item_embeddings().shape == (data.num_items + 1, victim.config.hidden)
    assert victim.input_embedding_layer().num_embeddings >= data.num_items + 1
    every = frozenset(recguard.victims.CAPABILITIES)
    assert victim.capabilities() == (every - {"layers"} if victim.architecture == "gru4rec" else every)


def test_list_input_and_bad_ids(fitted):
    victim, data = fitted
    a = victim.score([[1, 2, 3]])
    b = victim.score(np.array([[0] * (victim.max_len - 3) + [1, 2, 3]]))
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="item ids"):
        victim.score([[1, data.num_items + 5]])


def test_save_load_identical_scores(fitted, tmp_path):
    victim, data = fitted
    victim.save(tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["config.json", "weights.safetensors"]
    again = recguard.load(tmp_path / "v")
    seqs = data.padded(victim.max_len)
    assert torch.equal(victim.score(seqs), again.score(seqs))
    assert again.data_fingerprint_ == data.fingerprint() and again.config == victim.config


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_model_and_global_rng_untouched(arch):
    data = cyclic_data(num_users=40)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make(arch, epochs=2).fit(data, rng=7, progress=False)
    after = torch.rand(1)
    assert torch.equal(before, after), "fit must not consume the caller's global torch RNG"
    b = make(arch, epochs=2).fit(data, rng=7, progress=False)
    c = make(arch, epochs=2).fit(data, rng=8, progress=False)
    seqs = data.padded(a.max_len)
    assert torch.equal(a.score(seqs), b.score(seqs))
    assert not torch.equal(a.score(seqs), c.score(seqs))


@pytest.mark.parametrize("arch", ARCHS)
def test_models_learn_a_sequential_rule(arch):
    data = cyclic_data(num_users=200, num_items=30, length=14, noise=0.05)
    victim = make(arch, hidden=32, epochs=30, lr=5e-3, dropout=0.1).fit(data, rng=0, progress=False)
    m = recguard.evaluate(victim, data.split(), ks=(1, 10))
    # random guessing gives HR@10 ~ 10/28; the rule makes the next item nearly certain
    assert m["HR@10"] > 0.8, m


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_weight_user_has_no_influence_on_gradients(arch):
    data = cyclic_data(num_users=6, num_items=20, length=10)
    victim = make(arch, dropout=0.0, epochs=1).fit(data, rng=0, progress=False)
    module = victim.module
    module.train()
    x = torch.from_numpy(data.padded(11)[:4])
    w = torch.tensor([1.0, 0.5, 0.0, 2.0])
    x2 = x.clone()
    x2[2] = torch.from_numpy(np.array([0, 0, 0] + [5, 9, 1, 3, 7, 2, 8, 4]))  # change the zero-weight user's data

    def grads(batch):
        gen = torch.Generator().manual_seed(0)
        module.zero_grad()
        victim.training_loss(module, batch, w, gen, None).backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]

    g1, g2 = grads(x), grads(x2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    w_all = torch.tensor([1.0, 0.5, 1.0, 2.0])  # with weight 1 the same change does move the gradients
    gen = torch.Generator().manual_seed(0)
    module.zero_grad()
    victim.training_loss(module, x, w_all, gen, None).backward()
    ga = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    gen = torch.Generator().manual_seed(0)
    module.zero_grad()
    victim.training_loss(module, x2, w_all, gen, None).backward()
    gb = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    assert any(not torch.allclose(a, b) for a, b in zip(ga, gb))


def test_user_weights_change_training_and_are_validated():
    data = cyclic_data(num_users=30)
    w = np.ones(30)
    w[:10] = 0
    a = make("sasrec", epochs=2).fit(data, rng=0, progress=False)
    b = make("sasrec", epochs=2).fit(data, user_weights=w, rng=0, progress=False)
    seqs = data.padded(16)
    assert not torch.equal(a.score(seqs), b.score(seqs))
    with pytest.raises(ConfigError, match="user_weights"):
        make("sasrec").fit(data, user_weights=np.ones(3), progress=False)
    with pytest.raises(ConfigError, match="user_weights"):
        make("sasrec").fit(data, user_weights=-w, progress=False)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown key.*hiden"):
        recguard.SASRec(hiden=3)
    with pytest.raises(ConfigError, match="loss"):
        recguard.SASRec(loss="hinge")
    with pytest.raises(ConfigError, match="model"):
        recguard.make_victim("lstm")
    with pytest.raises(NotFittedError):
        recguard.SASRec().score([[1]])
    with pytest.raises(ConfigError, match="batching"):
        recguard.SASRec(batching="bucketed")
    with pytest.raises(ConfigError, match="init_std"):
        recguard.GRU4Rec(init_std=0)


def test_random_batching_mixes_lengths(monkeypatch):
    import recguard.victims._train as T

    seqs = [[1 + (i + j) % 30 for j in range(3 + i % 20)] for i in range(256)]  # lengths 3..22
    data = recguard.data.SequenceData.from_sequences(seqs, num_items=30)
    seen: dict[str, list] = {}
    original = T.batches

    def spy(lengths, bs, gen, bucket=64):
        out = original(lengths, bs, gen, bucket=bucket)
        seen.setdefault(mode, []).extend(float(np.ptp(lengths[b])) for b in out)
        return out

    monkeypatch.setattr(T, "batches", spy)
    for mode in ("length", "random"):
        make("sasrec", epochs=1, batching=mode).fit(data, rng=0, progress=False)
    # sorted within a chunk, the length batches span a few lengths; random ones span most of 3..22
    assert max(seen["length"]) <= 6 < min(seen["random"])


@pytest.mark.parametrize("arch", ARCHS)
def test_init_std_redraws_linear_and_embedding_weights(arch):
    from recguard.victims._layers import reinitialise

    module = make(arch).new_module(500)
    reinitialise(module, 0.02)
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            w = m.weight.detach()
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                assert not w[m.padding_idx].any()
            assert abs(float(w.std()) - 0.02) < 0.004
        if isinstance(m, nn.Linear) and m.bias is not None:
            assert not m.bias.any()
    data = cyclic_data()
    a = make(arch, epochs=1, init_std=0.02).fit(data, rng=0, progress=False)
    b = make(arch, epochs=1).fit(data, rng=0, progress=False)
    assert a.config.init_std == 0.02 and not torch.equal(a.score(data.padded(16)[:4]), b.score(data.padded(16)[:4]))


def test_bce_loss_option_trains(tiny):
    v = make("sasrec", loss="bce", num_negatives=4, epochs=2).fit(tiny, rng=0, progress=False)
    assert torch.isfinite(v.score(tiny.padded(16)[:3])[:, 1:]).all()


def test_load_errors(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        recguard.load(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="weights.safetensors"):
        recguard.load(tmp_path / "half")


class MyModel(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.emb = nn.Embedding(n + 1, 8, padding_idx=0)

    def forward(self, x):
        return self.emb(x).mean(1) @ self.emb.weight.T


def _fit(module, split, weights, rng):
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    x, y = split.inputs("valid", 10)
    for _ in range(20):
        loss = nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_torch_victim_adapter(tiny, tmp_path):
    v = TorchVictim(MyModel(tiny.num_items), num_items=tiny.num_items, max_len=10, fit_fn=_fit).fit(tiny, rng=0)
    seqs = tiny.padded(10)[:4]
    s = v.score(seqs)
    assert s.shape == (4, tiny.num_items + 1) and torch.isinf(s[:, 0]).all()
    assert v.recommend(seqs, k=3).shape == (4, 3)
    v.save(tmp_path / "mine")
    with pytest.raises(ArtifactError, match="TorchVictim.load"):
        recguard.load(tmp_path / "mine")
    again = TorchVictim.load(tmp_path / "mine", module=MyModel(tiny.num_items))
    assert torch.equal(again.score(seqs), s)
    with pytest.raises(CapabilityError, match="representation"):
        v.representation(seqs)
    with pytest.raises(CapabilityError, match="fit_fn"):
        TorchVictim(MyModel(3), num_items=3).fit(tiny)
    bad = TorchVictim(nn.Embedding(6, 3), num_items=5, max_len=10)  # returns [B, L, 3]
    with pytest.raises(CapabilityError, match="expected scores"):
        bad.score(torch.zeros(2, 10, dtype=torch.long))


def test_black_box_counts_queries_and_enforces_budget(fitted):
    victim, data = fitted
    bb = BlackBoxVictim(victim, k=7, query_budget=5)
    seqs = data.padded(victim.max_len)
    out = bb.recommend(seqs[:3])
    assert out.shape == (3, 7) and bb.queries_used == 3
    np.testing.assert_array_equal(out, victim.recommend(seqs[:3], k=7))
    with pytest.raises(QueryBudgetExceeded) as exc:
        bb.recommend(seqs[:3])
    assert exc.value.used == 3 and bb.queries_used == 3
    assert bb.recommend(seqs[:2]).shape == (2, 7) and bb.queries_left == 0
    with pytest.raises(CapabilityError):
        bb.score(seqs[:1])
    with pytest.raises(CapabilityError, match="at most 7"):
        bb.recommend(seqs[:1], k=10)


def test_epoch_callback_can_stop_training(tiny):
    from recguard.victims import STOP

    seen = []
    v = make("gru4rec", epochs=10).fit(tiny, rng=0, progress=False,
                                       on_epoch_end=lambda e, vic: seen.append(e) or (STOP if e >= 3 else None))
    assert seen == [1, 2, 3] and v.fit_info_["epochs_run"] == 3
