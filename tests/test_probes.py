import json

import numpy as np
import pytest
import torch

from conftest import make
from recguard.data import ItemMeta, SequenceData
from recguard.errors import ArtifactError, CapabilityError, ConfigError
from recguard.probes import SAEConfig, SAEProbe, Site, TopKSAE, attribute, build_catalogue, load_sae, train_sae
from recguard.probes.concepts import validate_dictionary

GENRES = ("Horror", "Romance", "Comedy")


def clustered_data(num_users: int = 150, per_genre: int = 16, length: int = 14, seed: int = 0) -> SequenceData:
    """Users stay inside one genre block of items and mostly walk it in order."""
    rng = np.random.default_rng(seed)
    n = per_genre * len(GENRES)
    seqs = []
    for u in range(num_users):
        g = u % len(GENRES)
        lo = g * per_genre + 1
        cur = int(rng.integers(0, per_genre))
        s = []
        for _ in range(length):
            cur = int(rng.integers(0, per_genre)) if rng.random() < 0.15 else (cur + 1) % per_genre
            s.append(lo + cur)
        seqs.append(s)
    genres = [()] + [(GENRES[(i - 1) // per_genre],) for i in range(1, n + 1)]
    words = ("saga", "night", "love", "river", "island", "winter", "garden", "mirror")
    titles = [""] + [f"{GENRES[(i - 1) // per_genre].lower()} {words[i % 8]} {i} ({1970 + 10 * (i % 3)})" for i in range(1, n + 1)]
    years = [0] + [1970 + 10 * (i % 3) for i in range(1, n + 1)]
    meta = ItemMeta(titles=tuple(titles), genres=tuple(genres), years=np.array(years))
    return SequenceData.from_sequences(seqs, num_items=n, meta=meta, name="clustered")


@pytest.fixture(scope="module")
def clustered():
    return clustered_data()


@pytest.fixture(scope="module")
def victim(clustered):
    return make("sasrec", epochs=6, hidden=16).fit(clustered, rng=0)


@pytest.fixture(scope="module")
def probe(victim, clustered):
    return SAEProbe(victim, k=4, expansion=4, epochs=6, batch_size=64, seed=0).fit(clustered)


# ------------------------------------------------------------------------ capture
def test_capture_removes_hooks_even_when_the_forward_raises(victim):
    site = Site(victim, "block.0")
    layer = victim.layers()["block.0"]
    x = site.batch([[1, 2, 3]])
    norm = victim.module.final_norm
    orig = norm.forward
    norm.forward = lambda *_a, **_k: (_ for _ in ()).throw(RuntimeError("boom"))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            site.last(x)
        with pytest.raises(RuntimeError, match="boom"):
            site.scores(x, lambda s: s)
    finally:
        norm.forward = orig
    assert len(layer._forward_hooks) == 0
    site.scores(x, lambda s: s * 0)  # the splice hook is gone afterwards too
    assert len(layer._forward_hooks) == 0


def test_prefix_states_are_the_probed_states_of_every_prefix(victim, clustered):
    site = Site(victim)
    seq = clustered[0][:9].tolist()
    states = site.prefix_states(site.batch([seq, seq[:4]]))
    assert states.shape == (9 + 4, 16)
    for t in (0, 4, 8):
        assert torch.allclose(states[t], victim.representation([seq[: t + 1]])[0], atol=1e-5)
    assert torch.allclose(states[9 + 3], victim.representation([seq[:4]])[0], atol=1e-5)
    # SASRec anchors positions at the right edge: an in-sequence state is not its prefix's state
    in_seq = site.positions(site.batch([seq]))
    assert in_seq.shape == (9, 16) and torch.allclose(in_seq[-1], states[8], atol=1e-5)
    assert not torch.allclose(in_seq[0], states[0], atol=1e-3)


def test_gru4rec_positions_coincide_with_prefix_states(clustered):
    v = victim_for("gru4rec", clustered)
    site = Site(v)
    x = site.batch([clustered[2][:7].tolist()])
    assert torch.allclose(site.positions(x), site.prefix_states(x), atol=1e-5)
    train = clustered.split().train  # "auto" checks the coincidence on the data itself
    assert SAEProbe(v)._positions_are_prefixes(train) and not SAEProbe(victim_for("sasrec", clustered))._positions_are_prefixes(train)


@pytest.mark.parametrize("prefixes", [False, True])
def test_stream_covers_every_valid_position_in_chunks(victim, clustered, prefixes):
    stream = Site(victim).stream(clustered, batch_users=32, rng=0, prefixes=prefixes)
    chunks = list(stream)
    assert len(chunks) == int(np.ceil(clustered.num_users / 32))
    assert sum(len(c) for c in chunks) == int(np.minimum(clustered.lengths, victim.max_len).sum())
    again = list(stream)
    assert not torch.equal(again[0], chunks[0])  # each pass visits the users in a new order


def test_bad_layer_and_non_whitebox_victims_are_refused(victim):
    with pytest.raises(ConfigError, match="unknown layer"):
        Site(victim, "block.9")
    with pytest.raises(CapabilityError, match="white_box"):
        Site(object())
    with pytest.raises(CapabilityError, match="layers"):  # GRU4Rec runs right-aligned: no layer lines up with the input
        Site(make("gru4rec", epochs=1).fit(clustered_data(num_users=12), rng=0), "gru")


# ---------------------------------------------------------------------------- SAE
def test_topk_sae_structure_and_seeded_init():
    a, b = TopKSAE(8, SAEConfig(expansion=4, k=3, seed=5)), TopKSAE(8, SAEConfig(expansion=4, k=3, seed=5))
    assert a.width == 32
    assert torch.equal(a.W_enc, b.W_enc) and torch.equal(a.W_dec, a.W_enc)  # decoder starts as the encoder
    assert torch.allclose(a.W_dec.norm(dim=1), torch.ones(32))
    z = a.encode(torch.randn(20, 8))
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all()
    assert not torch.equal(TopKSAE(8, SAEConfig(expansion=4, k=3, seed=6)).W_enc, a.W_enc)


def test_train_sae_is_seeded_keeps_unit_decoder_and_uses_auxk():
    x = torch.randn(3000, 8) @ torch.randn(8, 8)
    cfg = SAEConfig(expansion=8, k=2, epochs=3, batch_size=128, dead_after=256, seed=1)
    s1, s2 = train_sae(x, config=cfg), train_sae(x, config=cfg)
    assert torch.equal(s1.W_dec, s2.W_dec)
    assert torch.allclose(s1.W_dec.norm(dim=1), torch.ones(s1.width), atol=1e-5)
    assert s1.history_[-1]["fvu"] < s1.history_[0]["fvu"] < 1.0
    assert any(h["aux"] > 0 for h in s1.history_)  # 64 latents at k=2 leave dead ones for AuxK


def test_auxk_targets_the_detached_residual():
    def grads(aux_coef):
        sae = TopKSAE(4, SAEConfig(expansion=4, k=1, dead_after=1, aux_coef=aux_coef, seed=3))
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))  # 3 rows fire at most 3 of 16 latents
        sae.loss(x)  # the others are now dead
        loss, parts = sae.loss(x)
        loss.backward()
        live = (sae.encode(x) > 0).any(0)
        return sae.W_dec.grad.clone(), live, parts

    g_aux, live, parts = grads(1.0)
    g_plain, _, _ = grads(0.0)
    assert parts["dead"] > 0 and parts["aux"] > 0
    # the residual is detached: live latents' decoder rows get exactly the plain gradient ...
    assert torch.allclose(g_aux[live], g_plain[live], atol=1e-6)
    # ... and only dead latents learn from AuxK
    assert g_plain[~live].abs().sum() == 0 and g_aux[~live].abs().sum() > 0


def test_train_sae_accepts_tensors_chunks_callables_and_one_shot_streams():
    x = torch.randn(600, 6)
    cfg = SAEConfig(expansion=2, k=2, epochs=2, batch_size=100)
    assert len(train_sae([x[:300], x[300:]], config=cfg).history_) == 2
    assert len(train_sae(lambda: iter([x]), config=cfg).history_) == 2
    one_shot = (c for c in (x[:200], x[200:]))
    sae = train_sae(one_shot, config=cfg)
    assert len(sae.history_) == 1 and sae.history_[0]["rows"] == 600
    with pytest.raises(ConfigError, match="no rows"):
        train_sae([], config=cfg)
    with pytest.raises(ConfigError, match="width"):
        train_sae([x, torch.randn(10, 5)], config=cfg)


def test_sae_config_errors_name_the_parameter():
    with pytest.raises(ConfigError, match="k"):
        SAEConfig(k=0)
    with pytest.raises(ConfigError, match="unknown SAE option"):
        SAEConfig.from_dict({"widht": 3})


def test_sae_save_load_roundtrip(tmp_path):
    sae = train_sae(torch.randn(400, 6), config=SAEConfig(expansion=2, k=2, epochs=1, batch_size=50))
    sae.save(tmp_path / "s", meta={"layer": "x"})
    back, meta = load_sae(tmp_path / "s")
    x = torch.randn(5, 6)
    assert torch.equal(back.encode(x), sae.encode(x)) and meta == {"layer": "x"}
    (tmp_path / "s" / "sae.json").write_text("{ nope")
    with pytest.raises(ArtifactError, match="sae.json"):
        load_sae(tmp_path / "s")
    with pytest.raises(ArtifactError, match="missing"):
        load_sae(tmp_path / "nothing")


# -------------------------------------------------------------------------- probe
def test_fidelity_report(probe):
    f = probe.fidelity()
    assert 0 <= f["fvu"] < 1 and 0 < f["l0"] <= 4 and 0 <= f["dead_fraction"] <= 1
    assert f["ndcg_recovered"] == pytest.approx((f["ndcg_sae"] - f["ndcg_mean_ablated"]) / (f["ndcg_clean"] - f["ndcg_mean_ablated"]))
    assert f["ndcg_clean"] > f["ndcg_mean_ablated"]


def test_catalogue_has_genres_decades_terms_and_popularity(clustered):
    cat = build_catalogue(clustered.split().train)
    kinds = set(cat.kinds)
    assert {"genre", "decade", "title", "popularity"} <= kinds
    assert cat.matrix.shape == (clustered.num_items + 1, len(cat)) and not cat.matrix[0].any()
    h = cat.names.index("genre: Horror")
    assert cat.matrix[1:17, h].all() and not cat.matrix[17:, h].any()
    assert "title: saga" in cat.names  # TF-IDF vocabulary from titles
    assert "title: horror" not in cat.names  # in a third of the titles: too common to be a concept
    s = cat.strength(np.array([[1, 2, 0], [20, 0, 0]]))
    assert s[0, h] == 1.0 and s[1, h] == 0.0


def test_concepts_find_the_planted_genres(probe):
    entries = probe.concepts()
    assert len(entries) == probe.sae_.width
    good = [e for e in entries if e["interpretable"]]
    assert any(e["kind"] == "genre" for e in good)
    for e in good:
        assert e["confidence"] >= 0.8 and e["top_items"] and e["description"] == e["concept"]
    summary = probe.dictionary_summary()
    assert summary["interpretable"] == len(good)


def test_validation_confidence_counts_hits():
    acts = np.zeros((20, 1), dtype=np.float32)
    acts[:5, 0] = [5, 4, 3, 2, 1]
    strength = np.zeros((20, 1), dtype=np.float32)
    strength[:5, 0] = 1.0  # concept present exactly where it fires
    e = [{"latent": 0, "concept": "c", "concept_index": 0, "threshold": 0.5}]
    validate_dictionary(e, acts, strength, rng=0)
    assert e[0]["confidence"] == 1.0 and e[0]["auc"] == 1.0
    strength[:, 0] = 1 - strength[:, 0]  # present exactly where it does not fire
    validate_dictionary(e, acts, strength, rng=0)
    assert e[0]["confidence"] == 0.0 and e[0]["auc"] == 0.0


def test_ablation_with_alpha_one_changes_nothing_and_zero_removes_the_concept(probe):
    entries = probe.concepts()
    best = max((e for e in entries if e.get("concept")), key=lambda e: (e["confidence"], e["firing"]))
    same = probe.ablate(best["latent"], 1.0)
    assert same["users"] > 0 and same["delta_ndcg@10"] == pytest.approx(0, abs=1e-9) and same["jaccard@10"] == 1.0
    gone = probe.ablate(best["latent"], 0.0)
    assert gone["jaccard@10"] < 1.0 and gone["delta_concept_share@10"] <= 0
    up = probe.steer(best["latent"], 4.0)
    assert up["delta_concept_share@10"] >= gone["delta_concept_share@10"]
    with pytest.raises(ConfigError, match="latent"):
        probe.ablate(10_000)


def test_explain_decomposes_the_top_item_score(probe, clustered):
    seq = clustered[0].tolist()
    ex = probe.explain(seq)
    z = probe.encode([seq])[0]
    assert ex["active"] == int((z > 0).sum()) and ex["latents"]
    emb = probe.victim.item_embeddings()[ex["top_item"]]
    total = sum(r["contribution_to_top_item"] for r in ex["latents"]) if ex["active"] <= 8 else None
    if total is not None:  # reconstruction score = sum of latent terms + b_dec . e
        rec = probe.sae_.decode(z[None])[0]
        assert total + float(probe.sae_.b_dec.detach() @ emb) == pytest.approx(float(rec.detach() @ emb), abs=1e-4)


def test_probe_save_load_reproduces_everything(probe, victim, clustered, tmp_path):
    probe.concepts()
    probe.save(tmp_path / "p")
    assert not list(tmp_path.glob(".p.*"))  # atomic: no temporary folder left
    back = SAEProbe.load(tmp_path / "p", victim, clustered)
    seq = clustered[3].tolist()
    assert torch.equal(back.encode([seq]), probe.encode([seq]))
    assert back.concepts() == json.loads(json.dumps(probe.concepts()))
    with pytest.raises(ArtifactError, match="probe.json"):
        SAEProbe.load(tmp_path / "nope", victim, clustered)


def test_probe_is_deterministic(victim, clustered, probe):
    again = SAEProbe(victim, k=4, expansion=4, epochs=6, batch_size=64, seed=0).fit(clustered)
    assert torch.equal(again.sae_.W_enc, probe.sae_.W_enc)
    assert [e.get("confidence") for e in again.concepts()] == [e.get("confidence") for e in probe.concepts()]


def test_poisoning_latents_flag_fake_users(probe, clustered):
    # fake users: the same odd profile (horror start, romance end, a target from comedy)
    fake = [[1, 2, 3, 17, 18, 40, 40]] * 15
    poisoned = clustered.append_users(fake)
    fake_ids = np.arange(clustered.num_users, poisoned.num_users)
    res = probe.poisoning_latents(poisoned, fake_ids, targets=[40], top=5)
    assert res["fake_users"] == 15 and len(res["fake"]) == 5
    assert res["fake"][0]["auc"] > 0.9  # identical profiles share their active latents
    assert res["fake"][0]["rate_fake"] == 1.0
    assert len(res["pushes_targets"]) == 5 and "decoder_alignment" in res["on_targets"][0]
    with pytest.raises(ConfigError, match="fake"):
        probe.poisoning_latents(poisoned, [], targets=[40])


def test_named_layer_probe_splices_there(victim, clustered):
    p = SAEProbe(victim, layer="block.0", k=4, expansion=2, epochs=2, batch_size=64).fit(clustered)
    f = p.fidelity()
    assert f["layer"] == "block.0" and 0 <= f["fvu"] < 1.5 and f["ndcg_sae"] > 0


# -------------------------------------------------------------------- attribution
@pytest.mark.parametrize("arch", ["sasrec", "bert4rec", "gru4rec"])
def test_attributions_are_complete_and_chronological(arch, clustered):
    v = victim_for(arch, clustered)
    seq = clustered[1].tolist()[:10]
    a = attribute(v, seq, n_steps=64)
    assert a["items"] == seq[-len(a["items"]):] and len(a["items"]) >= 9
    assert a["item"] not in seq  # default target: the top unseen recommendation
    assert abs(a["delta"]) < 0.05 * max(1.0, abs(a["score"] - a["baseline_score"]))
    b = attribute(v, seq, item=a["item"], n_steps=64)
    assert b["contributions"] == a["contributions"]  # deterministic


_VICTIMS: dict = {}


def victim_for(arch, data):
    if arch not in _VICTIMS:
        _VICTIMS[arch] = make(arch, epochs=2).fit(data, rng=0)
    return _VICTIMS[arch]


def test_attribution_input_errors(victim):
    with pytest.raises(ConfigError, match="item ids"):
        attribute(victim, [0, 1])
    with pytest.raises(ConfigError, match="empty"):
        attribute(victim, [])
    with pytest.raises(ConfigError, match="item must be"):
        attribute(victim, [1, 2], item=999)


# ------------------------------------------------------------------ descriptions
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-lm")
    words = ["<unk>", "</s>", "horror", "romance", "comedy", "tale", "feature", "items", "genre", ":", ".", ","]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", unk_token="<unk>").save_pretrained(str(d))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=512)).save_pretrained(str(d))
    return d


def test_descriptions_from_a_local_causal_lm(probe, tiny_lm, tmp_path):
    from recguard.probes import describe_latents

    entries = [dict(e) for e in probe.concepts() if e.get("concept")][:3]
    describe_latents(entries, tiny_lm, max_new_tokens=5)
    first = [e["lm_description"] for e in entries]
    assert all(isinstance(t, str) for t in first)
    describe_latents(entries, tiny_lm, max_new_tokens=5)
    assert [e["lm_description"] for e in entries] == first  # greedy: deterministic
    with pytest.raises(ConfigError, match="config.json"):
        describe_latents(entries, tmp_path)


# ---------------------------------------------------------------------------- CLI
def test_probe_cli_writes_json_and_html(tmp_path, capsys):
    from recguard.cli import main

    lines = [f"{u} {(u + t) % 15 + 1}" for u in range(1, 61) for t in range(10)]
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "log.txt"), "--epochs", "2", "--max-len", "8", "--set", "hidden=8",
                 "--set", "num_heads=1", "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "probe"
    argv = ["probe", str(run), "--out", str(out), "--k", "2", "--expansion", "2", "--epochs", "2", "--ablate-top", "2", "--no-progress"]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"fidelity", "dictionary", "latents", "ablations"} <= set(rep)
    assert rep["fidelity"]["width"] == 16
    html = (out / "report.html").read_text()
    assert "<table>" in html and "NDCG recovered" in html
    assert main(argv) == 0  # second run reuses the SAE
    assert "reusing the SAE" in capsys.readouterr().out
    assert main(["probe", str(run), "--out", str(out), "--layer", "nope", "--no-progress"]) == 2
    assert "unknown layer" in capsys.readouterr().err


def test_null_control_passes_far_fewer_latents(probe):
    real = probe.dictionary_summary()
    null = probe.null_control(seed=0)
    assert null["latents"] == real["latents"]
    assert null["interpretable"] < real["interpretable"]


@pytest.mark.parametrize("arch", ["bert4rec", "gru4rec"])
def test_probe_other_architectures(arch, clustered):
    v = victim_for(arch, clustered)
    p = SAEProbe(v, k=2, expansion=2, epochs=2, batch_size=64).fit(clustered)
    f = p.fidelity()
    assert f["train_rows"] == int(np.minimum(clustered.split().train.lengths, v.max_len).sum())  # one row per prefix
    assert 0 <= f["fvu"] < 1.5 and f["ndcg_recovered"] is not None
    assert len(p.concepts()) == p.sae_.width
