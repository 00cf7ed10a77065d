"""Model extraction: query generation, distillation, agreement."""

import json

import numpy as np
import pytest
import torch

import recguard
from recguard.attacks.extraction import Transcript, agreement, extract, generate, ranking_loss
from recguard.errors import ConfigError, QueryBudgetExceeded
from recguard.victims import BlackBoxVictim

from conftest import cyclic_data, make


@pytest.fixture(scope="module")
def victim_split():
    d = cyclic_data(num_users=200, num_items=40, length=12, seed=1)
    split = d.split()
    return make("sasrec", epochs=15).fit(split, rng=0, progress=False), split


def test_generate_counts_queries_and_pairs(victim_split):
    v, _ = victim_split
    bb = BlackBoxVictim(v, k=5)
    tr = generate(bb, num_sequences=7, length=6, rng=0, progress=False, batch_size=3)
    assert tr.queries == 7 * 6 == bb.queries_used == tr.pairs
    assert tr.lists.shape == (7, 6, 5) and (tr.seqs > 0).all()
    # every stored list is what the API returns for that prefix
    for i, t in [(0, 0), (3, 4), (6, 5)]:
        np.testing.assert_array_equal(tr.lists[i, t], v.recommend([tr.seqs[i, : t + 1]], k=5)[0])
    # with no random share every next item comes from the previous list
    tr0 = generate(BlackBoxVictim(v, k=5), num_sequences=4, length=5, random_share=0.0, rng=1, progress=False)
    for i in range(4):
        for t in range(4):
            assert tr0.seqs[i, t + 1] in tr0.lists[i, t]
    same = generate(BlackBoxVictim(v, k=5), num_sequences=7, length=6, rng=0, progress=False, batch_size=3)
    np.testing.assert_array_equal(tr.seqs, same.seqs)


def test_generate_few_shot_keeps_real_prefixes(victim_split):
    v, split = victim_split
    real = [split.train[u].tolist() for u in range(5)]
    tr = generate(BlackBoxVictim(v, k=5), num_sequences=10, length=8, seeds=real, rng=0, progress=False)
    for i in range(10):
        cut = tr.real_prefix[i]
        assert 1 <= cut <= 7
        pref = tr.seqs[i, :cut].tolist()
        assert any(pref == r[j : j + cut] for r in real for j in range(len(r) - cut + 1))


def test_budget_exhaustion_keeps_work_and_checkpoint_resumes(victim_split, tmp_path):
    v, _ = victim_split
    bb = BlackBoxVictim(v, k=5, query_budget=25)
    tr = generate(bb, num_sequences=10, length=6, rng=0, progress=False, batch_size=10)
    assert tr.meta["budget_exhausted"] and tr.queries == 20 and tr.pairs == 20 and (tr.lengths == 2).all()
    with pytest.raises(QueryBudgetExceeded):
        bb.recommend([[1, 2]] * 10)
    # a checkpointed run cut short by its budget resumes to exactly the uninterrupted result
    ck = tmp_path / "t.safetensors"
    full = generate(BlackBoxVictim(v, k=5), num_sequences=6, length=5, rng=3, progress=False)
    part = generate(BlackBoxVictim(v, k=5, query_budget=15), num_sequences=6, length=5, rng=3, progress=False, checkpoint=ck,
                    batch_size=4)
    assert part.meta["budget_exhausted"] and Transcript.load(ck).meta["next_step"] == 2
    more = BlackBoxVictim(v, k=5)
    done = generate(more, num_sequences=6, length=5, rng=99, progress=False, checkpoint=ck, batch_size=4)
    np.testing.assert_array_equal(done.seqs, full.seqs)
    np.testing.assert_array_equal(done.lists, full.lists)
    assert more.queries_used == 6 * 3  # only steps 2..4 were asked again
    with pytest.raises(ConfigError, match="other settings"):
        generate(BlackBoxVictim(v, k=5), num_sequences=7, length=5, rng=3, progress=False, checkpoint=ck)
    (tmp_path / "bad.safetensors").write_bytes(b"")
    with pytest.raises(recguard.errors.ArtifactError):
        Transcript.load(tmp_path / "bad.safetensors")


def test_ranking_loss_by_hand():
    scores = torch.tensor([[0.0, 3.0, 2.9, 0.0, 5.0]])
    lists = torch.tensor([[1, 2]])
    neg = torch.tensor([[4, 3]])
    # order term: max(0, 2.9 - 3.0 + 0.5) = 0.4; negatives: max(0, 5 - 3 + .5) = 2.5, max(0, 0 - 2.9 + .5) = 0
    assert torch.isclose(ranking_loss(scores, lists, neg), torch.tensor(0.4 + 2.5 / 2))


def test_extract_data_free_clones_a_model(victim_split, tmp_path):
    v, split = victim_split
    bb = BlackBoxVictim(v, k=10)
    res = extract(bb, num_sequences=300, length=16, surrogate="sasrec", surrogate_config={"hidden": 16}, epochs=40, rng=0,
                  progress=False)
    seqs = [split.train[u].tolist() for u in range(split.train.num_users)]
    agree = agreement(v, res.surrogate, seqs)
    baseline = agreement(v, make("sasrec", epochs=1).fit(split, rng=5, progress=False), seqs)
    assert res.queries == bb.queries_used == 300 * 16
    assert agree["Agreement@10"] > baseline["Agreement@10"] + 0.2 and agree["Agreement@1"] > 0.5
    # the surrogate is an ordinary victim: save, load, same lists
    res.surrogate.save(tmp_path / "stolen")
    back = recguard.load(tmp_path / "stolen")
    np.testing.assert_array_equal(back.recommend(seqs[:5]), res.surrogate.recommend(seqs[:5]))


def test_extract_errors(victim_split):
    v, _ = victim_split
    with pytest.raises(ConfigError, match="real_sequences"):
        extract(BlackBoxVictim(v, k=10), mode="few-shot")
    with pytest.raises(ConfigError, match="mode"):
        extract(BlackBoxVictim(v, k=10), mode="psychic")
    with pytest.raises(ConfigError, match="random_share"):
        generate(BlackBoxVictim(v, k=10), num_sequences=3, random_share=1.5)


def test_cli_extract(tmp_path, capsys):
    from recguard.cli import main

    run = tmp_path / "victim"
    assert main(["train", "--dataset", "ml-100k", "--model", "sasrec", "--out", str(run), "--set", "hidden=16",
                 "--set", "max_len=20", "--set", "epochs=2", "--no-progress"]) == 0
    out = tmp_path / "stolen"
    argv = ["extract", "--victim", str(run), "--out", str(out), "--budget", "40", "--length", "6", "--k", "20",
            "--epochs", "2", "--no-progress", "--mode", "few-shot", "--real-fraction", "0.02"]
    assert main(argv) == 0
    rep = json.loads((out / "extraction.json").read_text())
    assert rep["queries"] == 40 * 6 and rep["real_sequences"] == 19 and 0 <= rep["agreement"]["Agreement@10"] <= 1
    assert recguard.load(out / "surrogate").num_items == 1682
    assert "Agreement@10" in capsys.readouterr().out
    assert main(["extract", "--victim", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_black_box_chain_in_audit(tmp_path):
    from recguard.audit import AuditSpec, run_audit
    from test_audit import FAST_MODEL

    d = cyclic_data(num_users=80, num_items=30, length=10, seed=5)
    path = tmp_path / "toy.txt"
    path.write_text("".join(f"{u + 1} {i}\n" for u, s in enumerate(d) for i in s.tolist()))
    spec = AuditSpec(dataset=str(path), model="sasrec", model_config={**FAST_MODEL, "epochs": 3}, attacks=("surrogate", "extracted"),
                     budgets=(0.05,), seeds=(0,), num_targets=2,
                     extraction={"num_sequences": 30, "length": 8, "k": 10, "epochs": 3})
    res = run_audit(spec, tmp_path / "a", progress=False)
    cells = {c["attack"]: c for c in res["cells"] if c["kind"] == "poisoned"}
    ext = cells["extracted"]["extraction"]
    assert ext["queries"] == 30 * 8 and 0 <= ext["agreement"]["Agreement@10"] <= 1
    assert "extraction" not in cells["surrogate"]
    assert {r["attack"] for r in res["summary"]} == {"surrogate", "extracted"}
    with pytest.raises(ConfigError, match="extraction"):
        AuditSpec(extraction={"budget": 3})
    # resuming loads the saved surrogate instead of querying again
    again = run_audit(spec, tmp_path / "a", progress=False)
    assert again["summary"] == res["summary"]
