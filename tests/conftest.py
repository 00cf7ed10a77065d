import numpy as np
import torch
import pytest

import recguard
from recguard.data import SequenceData


def cyclic_data(num_users: int = 120, num_items: int = 40, length: int = 12, noise: float = 0.1, seed: int = 0) -> SequenceData:
    """Synthetic sequences with a learnable rule: the next item is usually ``prev % N + 1``."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(num_users):
        cur = int(rng.integers(1, num_items + 1))
        s = [cur]
        for _ in range(length - 1):
            cur = int(rng.integers(1, num_items + 1)) if rng.random() < noise else cur % num_items + 1
            s.append(cur)
        seqs.append(s)
    return SequenceData.from_sequences(seqs, num_items=num_items, name="cyclic")


def assert_variant_learns_and_round_trips(victim, data: SequenceData, settings: dict, tmp_path) -> None:
    """A victim trained with ``settings`` learns the cyclic rule (test HR@10 > 0.8) and comes back from disk
    with those settings and the same top-5 lists."""
    assert recguard.evaluate(victim, data.split(), ks=(10,))["HR@10"] > 0.8
    victim.save(tmp_path / "v")
    back = recguard.load(tmp_path / "v")
    assert {k: back.config.to_dict()[k] for k in settings} == settings
    x = [data[u] for u in range(5)]
    np.testing.assert_array_equal(np.asarray(back.recommend(x, k=5)), np.asarray(victim.recommend(x, k=5)))


@pytest.fixture(scope="session")
def tiny() -> SequenceData:
    return cyclic_data()


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("RECGUARD_OFFLINE", "1")
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


WORDS = ["movie", "item", "title", "user", "recommendation", "sequence", "interaction", "fraudster", "likelihood",
         "assess", "please", "this", "being", "the", "of", "in", "a", "is", "as", "follows", "s", "'", ":", ";", ".",
         "(", ")", ",", "red", "blue", "green", "star", "war", "love", "night", "day"] + [str(i) for i in range(10)]


def _write_vocab(path):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + WORDS) + "\n")
    return len(specials) + len(WORDS)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    """A tiny randomly initialised BERT with a WordPiece tokenizer, saved like any HF model directory."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    n = _write_vocab(d / "vocab.txt")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(d))
    return d


FAST = dict(hidden=16, max_len=16, epochs=3, batch_size=32, eval_every=1, patience=0)


@pytest.fixture
def fast_cfg():
    return dict(FAST)


def make(arch: str, **kw):
    cfg = {**FAST, **kw}
    if arch != "gru4rec":
        cfg.setdefault("num_heads", 1 if arch == "sasrec" else 2)
    return recguard.make_victim(arch, **cfg)


def pytest_configure(config):
    # the test models are tiny: one thread is fastest and avoids oversubscribing busy machines
    import torch

    torch.set_num_threads(1)
