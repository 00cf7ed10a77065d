"""LLM4Dec / LoRec, the text encoder and the in-training reweighting hook."""

import math

import numpy as np
import pytest
import torch

import recguard
from recguard.audit import AuditSpec, run_audit
from recguard.data import ItemMeta, SequenceData
from recguard.defenses import LLM4Dec, LoRec, lorec_weights, make_defense, update_scores
from recguard.defenses.lorec import lct_batches
from recguard.defenses.textdefense import pu_loss
from recguard.defenses.text import TextEncoder, item_texts, user_prompt
from recguard.errors import ConfigError, DataError
from recguard.metrics import detection_metrics

from conftest import WORDS, cyclic_data, make

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny decoder-only model whose tokenizer has no padding token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {w: i for i, w in enumerate(["<unk>", "</s>"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=40)).save_pretrained(str(d))
    return d


def titled(d: SequenceData) -> SequenceData:
    colours = ["red", "blue", "green"]
    titles = [""] + [f"{colours[i % 3]} star {i}" for i in range(1, d.num_items + 1)]
    return SequenceData.from_sequences([s.tolist() for s in d], num_items=d.num_items, meta=ItemMeta(titles=tuple(titles)),
                                       name="ml-toy")


# ------------------------------------------------------------------ encoder
def test_encoder_chunks_by_token_weighted_mean(bert_dir, tmp_path):
    enc = TextEncoder(bert_dir, max_tokens=16, cache_dir=tmp_path, batch_size=3)
    long = " ".join(["red star war love night day"] * 6)
    e = enc.encode([long], progress=False)[0]
    # by hand: encode every chunk on its own and average with token counts as weights
    chunks, _ = enc._chunks([long])
    assert len(chunks) > 2
    parts, counts = [], []
    with torch.no_grad():
        for c in chunks:
            h = enc._model(input_ids=torch.tensor([c])).last_hidden_state[0]
            parts.append(h.mean(0).numpy())
            counts.append(len(c))
    expect = np.average(np.stack(parts), axis=0, weights=counts)
    np.testing.assert_allclose(e, expect, rtol=1e-4, atol=1e-5)
    # padding inside a batch does not change an embedding
    both = enc.encode([long, "red"], progress=False)
    np.testing.assert_allclose(both[0], e, atol=1e-5)


def test_encoder_cache_reuses_and_survives_restart(bert_dir, tmp_path):
    texts = ["red star", "blue war", "red star"]
    enc = TextEncoder(bert_dir, cache_dir=tmp_path)
    a = enc.encode(texts, progress=False)
    assert enc.stats["encoded_texts"] == 2  # the duplicate is encoded once
    np.testing.assert_array_equal(a[0], a[2])
    again = TextEncoder(bert_dir, cache_dir=tmp_path)
    b = again.encode(texts[:2], progress=False)
    assert again.stats["encoded_texts"] == 0 and again.stats["cached_texts"] == 2
    np.testing.assert_array_equal(a[:2], b)
    assert again._model is None  # nothing to encode: the model was never loaded
    shards = list((tmp_path / enc.identity).glob("*.safetensors"))
    assert shards and not list((tmp_path / enc.identity).glob("*.tmp"))


def test_encoder_cache_shared_by_concurrent_writers(bert_dir, tmp_path):
    """Audit workers share one cache and may save the same shard at once (seen on a GPU machine
    with 8 workers: a fixed temp name let one writer rename the other's file away)."""
    from concurrent.futures import ThreadPoolExecutor

    encs = [TextEncoder(bert_dir, cache_dir=tmp_path) for _ in range(4)]
    keys = [bytes([i]) * 32 for i in range(8)]
    emb = np.arange(8 * 32, dtype=np.float32).reshape(8, 32)

    def save(e):
        for _ in range(25):
            e._save_shard(keys, emb)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, encs))  # re-raises a writer's error
    files = sorted(p.name for p in (tmp_path / encs[0].identity).iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 1 and not [f for f in files if f.endswith(".tmp")]
    cache = TextEncoder(bert_dir, cache_dir=tmp_path)._load_cache()
    np.testing.assert_array_equal(cache[keys[3]], emb[3])


def test_decoder_only_model_without_pad_token(gpt2_dir, tmp_path):
    enc = TextEncoder(gpt2_dir, cache_dir=tmp_path, max_tokens=12)
    out = enc.encode(["red star war", " ".join(["love night day"] * 8)], progress=False)
    assert out.shape == (2, 32) and np.all(np.isfinite(out))


def test_half_precision_directory_computes_in_float32_by_default(bert_dir, tmp_path):
    """A checkpoint stored in float16 is loaded as float32 unless dtype says otherwise, and the
    compute dtype is part of the cache identity."""
    import shutil

    from safetensors.torch import load_file, save_file

    half = tmp_path / "half"
    shutil.copytree(bert_dir, half)
    sd = load_file(str(half / "model.safetensors"))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()},
              str(half / "model.safetensors"), metadata={"format": "pt"})
    enc = TextEncoder(half, cache_dir=tmp_path / "cache")
    a = enc.encode(["red star war"], progress=False)
    assert next(enc._model.parameters()).dtype == torch.float32
    ref = TextEncoder(bert_dir, use_cache=False).encode(["red star war"], progress=False)
    np.testing.assert_allclose(a, ref, atol=5e-3)  # only the stored weights were rounded
    b16 = TextEncoder(half, cache_dir=tmp_path / "cache", dtype="bfloat16")
    assert b16.identity == enc.identity + "-bfloat16"
    assert b16.encode(["red star war"], progress=False).dtype == np.float32
    assert next(b16._model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype"):
        TextEncoder(half, dtype="int8")


def test_encoder_bad_paths(tmp_path):
    with pytest.raises(ConfigError, match="encoder"):
        TextEncoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        TextEncoder(tmp_path / "empty")


def test_titles_required_unless_id_tokens():
    d = cyclic_data(num_users=10, num_items=5)
    with pytest.raises(DataError, match="id_tokens"):
        item_texts(d.meta, d.num_items)
    assert item_texts(d.meta, d.num_items, id_tokens=True)[3] == "item 3"


def test_untitled_items_fall_back_per_item():
    meta = ItemMeta(titles=("", "red star", "", ""), genres=((), ("Office", "Pens_&_Pencils"), ("Office", "Paper"), ()))
    counts = {}
    texts = item_texts(meta, 3, counts=counts)
    assert texts == ["", "red star", "categories: Office > Paper", "item 3"]
    assert counts == {"title": 1, "categories": 1, "id": 1}
    p = user_prompt(["A", "B"], "movie")
    assert p.startswith("In movie recommendation") and "(Item title: A); (Item title: B)" in p and p.endswith("fraudster.")


def test_real_minilm_is_a_sentence_encoder(tmp_path):
    enc = TextEncoder("minilm", cache_dir=tmp_path)
    e = enc.encode(["A science fiction space adventure film.", "A movie about a journey among the stars.",
                    "Quarterly tax filing deadlines for small businesses."], progress=False)
    assert e.shape == (3, 384) and enc.context == 256
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(e[0], e[1]) > cos(e[0], e[2]) + 0.2


# ------------------------------------------------------------- update rule
def test_update_rule_by_hand():
    a = np.full(6, 3.0)
    p = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1])  # mean 0.233: only user 0 is above
    new, applied = update_scores(a, p)
    assert applied
    np.testing.assert_allclose(new, [2.0, 3.2, 3.2, 3.2, 3.2, 3.2])
    assert math.isclose(new.sum(), a.sum())
    # |S| = 2 >= 6/3: skipped
    same, applied = update_scores(a, np.array([0.9, 0.9, 0.1, 0.1, 0.1, 0.1]))
    assert not applied and np.array_equal(same, a)


def test_weights_snap_and_down_weight_after_four_flags():
    w = lorec_weights(np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0, 4.0]))
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    np.testing.assert_allclose(w[:4], 1.0)  # 0.92, 0.77, 0.52 snap to 1
    np.testing.assert_allclose(w[4:6], [s(-1) / s(3), s(-2) / s(3)])
    assert math.isclose(w[4], 0.282, abs_tol=1e-3) and math.isclose(w[5], 0.125, abs_tol=1e-3)  # PROTOCOLS §3
    assert w[6] > 1  # users pushed up keep the extra weight (the sum of scores is preserved)


def test_pu_loss_entropy_term():
    z = torch.tensor([0.3, -1.2])
    y = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(z)
    bce = -(y * p.log() + (1 - y) * (1 - p).log())
    ent = -(p * p.log() + (1 - p) * (1 - p).log())
    expect = (bce + 0.5 * (1 - y) * ent).mean()
    assert torch.allclose(pu_loss(z, y, 0.5), expect, atol=1e-6)
    balanced = (bce * torch.tensor([3.0, 1.0]) + 0.5 * (1 - y) * ent).mean()  # known fakes' BCE weighted 3x
    assert torch.allclose(pu_loss(z, y, 0.5, pos_weight=3.0), balanced, atol=1e-6)
    assert LoRec(balance=True).pos_weight(990, 10) == 99.0 and LoRec().pos_weight(990, 10) == 1.0


def test_detection_metrics_by_hand():
    fake = np.array([1, 1, 0, 0, 0], bool)
    m = detection_metrics(fake, np.array([0.9, 0.2, 0.8, 0.1, 0.0]), np.array([1, 0, 1, 0, 0], bool))
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["F1"] == 0.5
    assert math.isclose(m["FPR"], 1 / 3) and math.isclose(m["ROC-AUC"], 5 / 6)  # 5 of 6 (fake, genuine) pairs ordered right


# ---------------------------------------------------------- training hook
def test_epoch_callback_reweights_and_resets_selection(tiny):
    from recguard.victims import EpochUpdate

    base = make("sasrec", epochs=4).fit(tiny, rng=0, progress=False)
    calls = []

    def hook(epoch, victim):
        calls.append(epoch)
        assert not victim.module.training
        weights = np.where(np.arange(tiny.num_users) < 60, 0.0, 1.0) if epoch == 2 else None
        return EpochUpdate(user_weights=weights, reset_selection=epoch <= 3)

    v = make("sasrec", epochs=4).fit(tiny, rng=0, progress=False, on_epoch_end=hook)
    assert calls == [1, 2, 3, 4]
    assert [h.get("reweighted", False) for h in v.history_] == [False, True, False, False]
    assert [h.get("selection_reset", False) for h in v.history_] == [True, True, True, False]
    assert v.fit_info_["best_epoch"] >= 3  # validations before the last reset never choose the checkpoint
    assert v.history_[1]["loss"] == pytest.approx(base.history_[1]["loss"])  # weights apply from the next epoch
    assert v.history_[2]["loss"] != pytest.approx(base.history_[2]["loss"])


# ------------------------------------------------------------- defenses
@pytest.fixture(scope="module")
def poisoned_split():
    d = titled(cyclic_data(num_users=120, num_items=30, length=12, seed=3))
    split = d.split()
    res = recguard.attacks.poisoning.make_attack("popular", budget=0.05, targets=[7], max_profile_length=12).poison(split.train, rng=1)
    return split.with_train(res.data), res


def _make_v():
    return make("sasrec", epochs=6, max_len=12)


def test_llm4dec_learns_from_its_own_simulated_attack(poisoned_split, bert_dir, tmp_path):
    split, res = poisoned_split
    dfn = LLM4Dec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, known_budget=0.1, epochs=5)
    out = dfn.detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    n = split.train.num_users
    assert out.user_weights.shape == (n,) and set(np.unique(out.user_weights)) <= {0.0, 1.0}
    assert np.array_equal(out.user_weights == 0, out.flagged)
    if out.threshold is not None:  # the lowest flagged score; None when nobody was flagged
        assert np.array_equal(out.flagged, out.scores >= out.threshold)
    else:
        assert not out.flagged.any()
    assert out.info["known_fakes"] == round(0.1 * n) and out.info["known"] == "random"  # budget over all training users
    # the default: the shared decision layer's mixture rule, never more than 3% of the users flagged
    assert out.info["rule"] == "mixture" and out.flagged.sum() <= 0.03 * n
    assert out.info["known_held_out"] == round(0.2 * out.info["known_fakes"]) and 0 <= out.info["simulated_separation_auc"] <= 1
    # Elkan-Noto's rule: c from held-out simulated fakes, flag p >= c / 2 among the 3% highest
    prior = LLM4Dec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, known_budget=0.1, epochs=5, rule="prior")
    pr = prior.detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    c = pr.info["label_frequency_c"]
    top = np.zeros(n, dtype=bool)
    top[np.argsort(-pr.scores, kind="stable")[: int(0.03 * n)]] = True
    assert np.array_equal(pr.flagged, (pr.scores >= c / 2) & top)
    again = dfn.detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.scores, again.scores)
    paper = LLM4Dec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, known_budget=0.1, epochs=5, rule="paper")
    p_out = paper.detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    assert p_out.threshold == 0.5 and np.array_equal(p_out.flagged, p_out.scores >= 0.5)


def test_mixed_known_attack_shares_the_budget(poisoned_split):
    split, _ = poisoned_split
    d = LLM4Dec(known="random+popular", known_budget=0.1)
    fakes = d.simulate_known(split.train, np.random.default_rng(0), 12)
    n = split.train.num_users
    assert d.known == "random+popular" and len(fakes) == 2 * max(1, round(0.05 * n))
    with pytest.raises(ConfigError, match="known attack"):
        LLM4Dec(known="random+surrogate")


def test_lorec_calibrates_during_training(poisoned_split, bert_dir, tmp_path):
    split, res = poisoned_split
    dfn = LoRec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, user_text="items",
                calibration_start=3, update_every=(1, 2))
    victim, out = dfn.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    n = split.train.num_users
    ups = out.info["updates"]
    assert [u["epoch"] for u in ups] == [1, 2, 3, 5]
    assert out.user_weights.shape == (n,) and out.scores.shape == (n,)
    assert victim.fit_info_["best_epoch"] >= 3 and victim.fit_info_["callback_time_s"] > 0
    # the defender's own fakes are trained on; the decision layer removes at most 3% of the users
    assert n - int(0.03 * n) <= victim.fit_info_["train_users"] <= n + out.info["known_fakes"]
    assert out.flagged.sum() <= int(0.03 * n) and np.array_equal(out.user_weights == 0, out.flagged)
    assert out.info["known_injected"] and "known_down_weighted" in ups[-1] and out.info["decision"]["rule"] == "mixture"
    assert [h.get("reweighted", False) for h in victim.history_] == [False, False, True, False, True, False]
    v2, out2 = dfn.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.user_weights, out2.user_weights)
    torch.testing.assert_close(victim.score([[1, 2, 3]]), v2.score([[1, 2, 3]]))
    # the published rule: weight sigmoid(a)/sigmoid(3), a user loses weight after four net flags
    paper = LoRec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, user_text="items",
                  calibration_start=3, update_every=(1, 2), rule="paper")
    _, po = paper.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    assert po.info["decision"] == {"rule": "paper"} and np.array_equal(po.flagged, po.user_weights < 1)
    assert (po.user_weights > 0).all() and not ((po.user_weights > 0.5) & (po.user_weights < 1.0)).any()  # snapped to 1 in (0.5, 1)


def test_lct_batches_take_each_sampled_row_once_per_pass():
    gen = np.random.default_rng(0)
    order = np.argsort(gen.integers(1, 50, size=1000), kind="stable")
    chunks = [order[s : s + 64] for s in range(0, 1000, 64)]
    take = np.zeros(1000, dtype=bool)
    take[900:] = True  # the labelled fakes: always in
    take[gen.choice(900, size=150, replace=False)] = True
    batches = lct_batches(chunks, take, 64, gen)
    rows = np.concatenate([chunks[ci][r] for b in batches for ci, r in b])
    assert sorted(rows.tolist()) == np.flatnonzero(take).tolist()  # every taken row exactly once
    sizes = [sum(len(r) for _, r in b) for b in batches]
    assert all(s >= 64 for s in sizes[:-1]) and 0 < sizes[-1]
    # all rows taken: whole chunks, only the short last chunk may join another one
    full = lct_batches(chunks, np.ones(1000, dtype=bool), 64, gen)
    assert sum(len(b) for b in full) == len(chunks) and sum(len(b) > 1 for b in full) <= 1 and max(map(len, full)) <= 2


def test_lorec_every_epoch_schedule_and_sampled_rows(poisoned_split, bert_dir, tmp_path):
    split, _ = poisoned_split
    dfn = LoRec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, user_text="items", unlabeled_per_pass=8)
    victim, out = dfn.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    assert [u["epoch"] for u in out.info["updates"]] == list(range(1, victim.fit_info_["epochs_run"] + 1))
    assert out.info["schedule"] == {"kind": "every-epoch", "start": 1, "every": [1, 1]}
    assert not any(h.get("selection_reset") for h in victim.history_[1:])  # early stopping as without LoRec
    v2, out2 = dfn.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.scores, out2.scores)


def test_lorec_without_injecting_known_fakes(poisoned_split, bert_dir, tmp_path):
    split, _ = poisoned_split
    dfn = LoRec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, user_text="items",
                calibration_start=2, update_every=(1, 2), inject_known=False, feature_cache_mb=0)
    victim, out = dfn.train(split, make_victim=_make_v, seed=0, rng=np.random.default_rng(0))
    # only the data's users are trained on (less those the decision removed)
    n = split.train.num_users
    assert victim.fit_info_["train_users"] == n - int(out.flagged.sum()) and not out.info["known_injected"]
    assert out.simulated_scores is None


def test_lorec_schedule_scales_with_epochs():
    paper = LoRec(schedule="paper")
    assert paper.schedule(300) == (30, 5, 10)
    assert paper.schedule(200) == (20, 3, 7)
    assert paper.schedule(20) == (2, 1, 1)
    assert LoRec().schedule(200) == (1, 1, 1)  # every epoch, whatever the victim's maximum
    assert LoRec(calibration_start=4, update_every=(2, 3)).schedule(200) == (4, 2, 3)
    assert LoRec(schedule="paper", calibration_start=5).schedule(300) == (5, 5, 10)


def test_defense_option_errors():
    with pytest.raises(ConfigError, match="known"):
        LoRec(known="surrogate")
    with pytest.raises(ConfigError, match="user_text"):
        LLM4Dec(user_text="tweets")
    with pytest.raises(ConfigError, match="defense"):
        make_defense("lorec", nonsense=1)
    with pytest.raises(ConfigError, match="update_every"):
        LoRec(update_every=(0, 3))
    with pytest.raises(ConfigError, match="schedule"):
        LoRec(schedule="weekly")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="unlabeled_per_pass"):
            LoRec(unlabeled_per_pass=bad)


def test_audit_with_defenses_reports_detection(bert_dir, tmp_path):
    from test_audit import FAST_MODEL

    d = titled(cyclic_data(num_users=80, num_items=30, length=10, seed=5))
    path = tmp_path / "toy.txt"
    path.write_text("".join(f"{u + 1} {i}\n" for u, s in enumerate(d) for i in s.tolist()))
    # a user-item file has no titles: the text defenses must say so ...
    spec = AuditSpec(dataset=str(path), model="sasrec", model_config={**FAST_MODEL, "epochs": 4}, attacks=("popular",),
                     budgets=(0.05,), seeds=(0,), num_targets=2, defenses=("none", "llm4dec"),
                     defense_params={"llm4dec": {"encoder": str(bert_dir), "encoder_options": {"cache_dir": str(tmp_path / "c")}}})
    with pytest.raises(DataError, match="title"):
        run_audit(spec, tmp_path / "a", progress=False)
    # ... unless told to describe items by id
    opts = {"encoder": str(bert_dir), "encoder_options": {"cache_dir": str(tmp_path / "c")}, "id_tokens": True, "known_budget": 0.1}
    spec = spec.replace(defenses=["none", "llm4dec", "lorec"], defense_params={"llm4dec": {**opts, "epochs": 10},
                                                                               "lorec": {**opts, "user_text": "items"}})
    res = run_audit(spec, tmp_path / "b", progress=False)
    rows = {r["defense"]: r for r in res["summary"]}
    assert set(rows) == {"none", "llm4dec", "lorec"}
    # every defense faces the very same injected users as the undefended cell (paired comparison)
    assert len({c["poisoned_fingerprint"] for c in res["cells"] if c["kind"] == "poisoned"}) == 1
    for name in ("llm4dec", "lorec"):
        det = rows[name]["detection"]
        assert det["ROC-AUC"]["n"] == 1 and 0 <= det["ROC-AUC"]["mean"] <= 1
        assert "removal_T-HR@50" in rows[name]
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Detection of the injected users" in html and "Defense comparison" in html
    md = (tmp_path / "b" / "report.md").read_text()
    assert "| popular | 5% | lorec |" in md and "net removal" not in md

    # controls: the same audit resumed with each defense also trained on the clean data
    cells = tmp_path / "b" / "cells"
    before = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    res = run_audit(spec.replace(defense_controls=True), tmp_path / "b", progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert {k: after[k] for k in before} == before  # nothing recomputed: the other cells' keys did not change
    assert sorted(set(after) - set(before)) == sorted(p.name for p in cells.glob("control_*.json"))
    from recguard.audit import plan  # the cells the audit plans are exactly the files it wrote

    assert sorted(c.file(tmp_path / "b").name for p in plan(spec.replace(defense_controls=True)) for c in p) == sorted(after)
    ctrl = {c["defense"]: c for c in res["cells"] if c["kind"] == "control"}
    clean = next(c for c in res["cells"] if c["kind"] == "clean")
    assert set(ctrl) == {"llm4dec", "lorec"} and ctrl["lorec"]["targets"] == clean["targets"]
    k = "T-HR@50"
    for name in ("llm4dec", "lorec"):  # net removal by hand from the cells
        row = next(r for r in res["summary"] if r["defense"] == name)
        poisoned = {c["defense"]: c for c in res["cells"] if c["kind"] == "poisoned"}
        lift = poisoned["none"]["metrics"]["target"][k] - clean["metrics"]["target"][k]
        if lift > 0:
            expect = 1 - (poisoned[name]["metrics"]["target"][k] - ctrl[name]["metrics"]["target"][k]) / lift
            assert row[f"net_removal_{k}"]["mean"] == pytest.approx(expect)
        assert row[f"control_{k}"]["mean"] == pytest.approx(ctrl[name]["metrics"]["target"][k])
        summary = res["clean"]["controls"][name]
        assert summary[f"shift_{k}"]["mean"] == pytest.approx(ctrl[name]["metrics"]["target"][k] - clean["metrics"]["target"][k])
        assert 0 <= summary["flagged_share"]["mean"] <= 1
    md = (tmp_path / "b" / "report.md").read_text()
    assert "## Defenses on clean data (controls)" in md and "net removal" in md
    assert "Defenses on clean data" in (tmp_path / "b" / "report.html").read_text()
    with pytest.raises(ConfigError, match="defense_controls"):
        spec.replace(defense_controls="yes")
    # controls alone (no attack): what the defenses cost on clean data; reuses the clean and control cells
    res = run_audit(spec.replace(attacks=(), defense_controls=True), tmp_path / "b", progress=False)
    assert {c["kind"] for c in res["cells"]} == {"clean", "control"} and res["summary"] == []
    assert set(res["clean"]["controls"]) == {"llm4dec", "lorec"}
    assert "## Defenses on clean data (controls)" in (tmp_path / "b" / "report.md").read_text()
    with pytest.raises(ConfigError, match="nothing to audit"):
        spec.replace(attacks=())


def test_cli_defense_options(bert_dir, tmp_path, capsys, monkeypatch):
    from recguard.cli import main

    assert main(["audit", "--out", str(tmp_path / "x"), "--known", "popular"]) == 2
    assert "only apply to defenses that read user text" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "x"), "--defense", "none,pca", "--defense-param", "lorec.rule=top"]) == 2
    assert "not among the audit's defenses" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "x"), "--defense", "none,pca", "--defense-param", "pca.rule=sometimes"]) == 2
    assert "rule" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "x"), "--defense", "none,pca", "--defense-param", "pca-rule"]) == 2
    assert "DEFENSE.KEY=VALUE" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "x"), "--defense", "none,shield"]) == 2
    assert "unknown defense 'shield'" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "x"), "--defense", "lorec", "--user-text", "tweets"]) == 2
    assert "user_text" in capsys.readouterr().err
    # controls alone need a real defense; the flag reaches the spec
    assert main(["audit", "--out", str(tmp_path / "x"), "--attacks", "", "--defense", "none", "--defense-controls"]) == 2
    assert "nothing to audit" in capsys.readouterr().err
    import recguard.audit

    seen = []

    def fake_run(spec, out, **kw):
        seen.append(spec)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(recguard.audit, "run_audit", fake_run)
    assert main(["audit", "--out", str(tmp_path / "x"), "--attacks", "", "--defense", "lorec", "--defense-controls"]) == 2
    assert seen[0].defense_controls is True and seen[0].attacks == () and seen[0].defenses == ("lorec",)


def test_lorec_reads_extra_victim_features(poisoned_split, bert_dir, tmp_path):
    split, _ = poisoned_split
    dfn = LoRec(encoder=str(bert_dir), encoder_options={"cache_dir": str(tmp_path)}, user_text="items", calibration_start=2,
                update_every=(1, 1), lct_features="norm+entropy")
    victim, out = dfn.train(split, make_victim=lambda: make("sasrec", epochs=3, max_len=12), seed=0, rng=np.random.default_rng(0))
    assert out.info["lct_features"] == ["norm", "entropy"] and out.scores.shape == (split.train.num_users,)
    with pytest.raises(ConfigError, match="lct_features"):
        LoRec(lct_features="norm,loss")


# ------------------------------------------------------------------ baselines
def test_pca_select_finds_correlated_fakes_without_an_attack_size(poisoned_split):
    from recguard.defenses import PCASelect
    from recguard.defenses.baselines import pca_contributions

    split, res = poisoned_split
    out = PCASelect().detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    n = split.train.num_users
    y = np.zeros(n, dtype=bool)
    y[res.fake_users] = True
    m = detection_metrics(y, out.scores, out.flagged)
    # on this dense, regular toy data the paper's side holds (fakes contribute least); the defender's own
    # simulated fakes tell which side applies (on sparse Amazon Office it is the other one)
    assert out.info["direction"] == "low" and m["ROC-AUC"] > 0.9
    flipped = PCASelect(direction="high").detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    assert detection_metrics(y, flipped.scores, flipped.flagged)["ROC-AUC"] < 0.1
    assert out.flagged.sum() <= 0.05 * n + 1 and np.array_equal(out.user_weights == 0, out.flagged)
    # loadings do not depend on the size of a group of identical users: 3 copies or 9 copies load the same
    base = cyclic_data(num_users=60, num_items=30, length=10, seed=1)
    for copies in (3, 9):
        d = base.append_users([[1, 2, 3, 4, 5, 6]] * copies)
        c = pca_contributions(d, 3)
        if copies == 3:
            first = c[-1]
    assert c[-1] == pytest.approx(first, rel=0.25)


def test_shared_rare_item_confirms_a_campaign_and_not_a_genuine_group():
    from recguard.data import SequenceData
    from recguard.defenses.baselines import shared_rare_item

    rng = np.random.default_rng(0)
    genuine = [rng.choice(np.arange(1, 201), size=6, replace=False).tolist() for _ in range(300)]
    genuine += [[250, *rng.choice(np.arange(1, 201), size=5, replace=False).tolist()] for _ in range(3)]  # 3 genuine fans of 250
    campaign = [[250, *rng.choice(np.arange(1, 21), size=5, replace=False).tolist()] for _ in range(20)]  # 20 fakes push 250
    data = SequenceData.from_sequences(genuine + campaign, num_items=250)
    fakes = np.arange(303, 323)
    ranked = np.concatenate([fakes, [300, 0, 1]])  # the budget, most suspicious first: the fakes, then genuine users
    out = shared_rare_item(data, fakes[:12], ranked=ranked)
    assert out["confirmed"] and out["item"] == 250 and out["held_share"] == 1.0 and out["holders_inside"] == 12 / 23
    assert out["members"].tolist() == [*fakes.tolist(), 300]  # every fake in the budget, and the one fan ranked there
    popular_fans = shared_rare_item(data, np.arange(0, 300, 15))  # a genuine group: no item nearly all of them hold
    assert not popular_fans["confirmed"] and "members" not in popular_fans
    spread = shared_rare_item(data, np.concatenate([fakes[:4], np.arange(300, 303)]))  # 250's holders, but not a group of its own
    assert spread["held_share"] == 1.0 and spread["holders_inside"] == 7 / 23 and not spread["confirmed"]


def test_apr_adversarial_training_changes_training_and_needs_the_capability(tiny):
    from recguard.defenses import AdversarialTraining
    from recguard.errors import CapabilityError
    from recguard.victims import TorchVictim

    split = tiny.split()
    plain = make("sasrec", epochs=2).fit(split, rng=0)
    victim, out = AdversarialTraining(eps=0.5, lam=1.0).train(split, make_victim=lambda: make("sasrec", epochs=2), seed=0,
                                                             rng=np.random.default_rng(0))
    x = tiny.padded(16)[:5]
    assert float((plain.score(x)[:, 1:] - victim.score(x)[:, 1:]).abs().max()) > 1e-4
    assert "parametrizations" not in " ".join(victim.module.state_dict())  # the shift is gone after training
    bare = lambda: TorchVictim(torch.nn.Embedding(41, 4), num_items=40, fit_fn=lambda m, s, w, r: None, device="cpu")  # noqa: E731
    with pytest.raises(CapabilityError, match="adversarial"):
        AdversarialTraining().train(split, make_victim=bare, seed=0, rng=np.random.default_rng(0))


def test_lorec_detect_retrain_scores_decides_and_retrains(poisoned_split, bert_dir, tmp_path):
    from recguard.defenses import make_defense

    split, res = poisoned_split
    n = split.train.num_users
    opts = {"encoder": str(bert_dir), "encoder_options": {"cache_dir": str(tmp_path)}, "user_text": "items"}
    dfn = make_defense("lorec-detect", rule="top", max_flag_share=0.05, **opts)
    victim, out = dfn.train(split, make_victim=lambda: make("sasrec", epochs=3, max_len=12), seed=0, rng=np.random.default_rng(0))
    # scores are the calibration's net flags (as in calibrate mode); the decision flags exactly the budget
    assert out.scores.shape == (n,) and np.isfinite(out.scores).all()
    assert out.flagged.sum() == int(0.05 * n) and np.array_equal(out.user_weights == 0, out.flagged)
    assert out.info["mode"] == "detect-retrain" and out.info["decision"]["rule"] == "top"
    assert out.info["retrain_time_s"] > 0 and out.simulated_scores is not None and len(out.simulated_scores) == out.info["known_fakes"]
    # the returned victim is the retrained one: it never saw the defender's simulated fakes
    assert victim.fit_info_["train_users"] <= n
    again_v, again = dfn.train(split, make_victim=lambda: make("sasrec", epochs=3, max_len=12), seed=0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.scores, again.scores)
    with pytest.raises(ConfigError, match="mode"):
        LoRec(mode="afterwards")


def test_pca_select_decides_through_the_shared_layer(poisoned_split):
    from recguard.defenses import PCASelect

    split, res = poisoned_split
    n = split.train.num_users
    top = PCASelect(rule="top", max_flag_share=0.1).detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    paper = PCASelect(rule="paper", max_flag_share=0.1).detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    assert top.flagged.sum() == int(0.1 * n) and np.array_equal(top.flagged, paper.flagged)  # the paper's fixed count = top
    assert top.info["rule"] == "top" and paper.info["rule"] == "paper" and "simulated_separation_auc" in top.info
    legacy = PCASelect(rule="simulated").detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    assert legacy.flagged.sum() <= 0.03 * n and legacy.simulated_scores is not None
    soft = PCASelect(weights="soft", max_flag_share=0.1).detect(split, make_victim=_make_v, rng=np.random.default_rng(0))
    assert ((soft.user_weights >= 0) & (soft.user_weights <= 1)).all() and (soft.user_weights == 1).sum() >= 0.9 * n
    with pytest.raises(ConfigError, match="rule"):
        PCASelect(rule="sometimes")
