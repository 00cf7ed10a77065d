"""API-side defenses against model extraction: served lists, their cost, and the attack through them."""

import numpy as np
import pytest
import torch

import recguard
from recguard._rng import keyed_uniform, query_keys
from recguard.defenses.serving import ServedVictim, ServingPolicy, served_quality
from recguard.errors import CapabilityError, ConfigError

from conftest import cyclic_data, make


@pytest.fixture(scope="module")
def trained():
    data = cyclic_data(num_users=200, num_items=60, length=12, noise=0.05)
    split = data.split()
    return split, make("sasrec", epochs=5).fit(split, rng=0)


def test_policies_parse_and_name_what_is_wrong():
    assert ServingPolicy.parse("truncate:10") == ServingPolicy("truncate", size=10)
    assert ServingPolicy.parse(" Sample:0.5 ", seed=3) == ServingPolicy("sample", temperature=0.5, seed=3)
    assert ServingPolicy.parse("none").label == "none" and ServingPolicy.parse("unordered:100").label == "unordered:100"
    for bad, match in (("blur:3", "unknown API defense"), ("truncate", "takes a number"), ("shuffle:x", "takes a number"),
                       ("sample:0", "temperature > 0"), ("truncate:0", "positive number")):
        with pytest.raises(ConfigError, match=match):
            ServingPolicy.parse(bad)


def test_the_noise_is_keyed_by_the_query_not_by_the_call():
    x = np.array([[0, 3, 4], [0, 3, 5], [0, 3, 4]])
    keys = query_keys(x, seed=1)
    assert keys[0] == keys[2] != keys[1] and query_keys(x, seed=2)[0] != keys[0]
    u = keyed_uniform(keys, 1000)
    assert np.array_equal(u[0], u[2]) and 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    assert np.array_equal(keyed_uniform(keys[:1], 10), u[:1, :10])  # the j-th draw does not depend on the width


def test_each_policy_serves_what_it_promises(trained):
    split, victim = trained
    x = split.train.padded(victim.max_len)[:50]
    plain = victim.recommend(x, k=20)
    truncated = ServedVictim(victim, "truncate:5")
    assert truncated.max_list == 5 and np.array_equal(truncated.recommend(x, k=5), plain[:, :5])
    with pytest.raises(CapabilityError, match="at most 5"):
        truncated.recommend(x, k=6)
    shuffled = ServedVictim(victim, "shuffle:10").recommend(x, k=20)
    assert not np.array_equal(shuffled, plain)
    for lo in (0, 10):  # each window keeps its set
        assert np.array_equal(np.sort(shuffled[:, lo:lo + 10]), np.sort(plain[:, lo:lo + 10]))
    unordered = ServedVictim(victim, "unordered:20").recommend(x, k=20)
    assert np.array_equal(unordered, np.sort(plain, axis=1))
    api = ServedVictim(victim, "sample:0.5")
    sampled = api.recommend(x, k=20)
    assert np.array_equal(sampled, api.recommend(x, k=20))  # asked again: the same answer
    assert all(len(set(row)) == 20 and not set(row) & set(seq[seq > 0]) for row, seq in zip(sampled, x))
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(sampled, plain)])
    hot = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ServedVictim(victim, "sample:5").recommend(x, k=20), plain)])
    assert 0.3 < overlap < 1.0 and hot < overlap  # a hotter draw strays further from the model's own list
    with pytest.raises(CapabilityError, match="only its lists"):
        api.score(x)

    class Diverged:  # a model whose scores are NaN: a sampled list from it is an error, never an answer
        num_items, max_len = victim.num_items, victim.max_len

        def score(self, seqs):
            return torch.full((len(seqs), victim.num_items + 1), float("nan"))

    from recguard.errors import NonFiniteError

    with pytest.raises(NonFiniteError):
        ServedVictim(Diverged(), "sample:0.5").recommend(x, k=5)
    assert recguard.victims.capabilities(api) == frozenset()


def test_served_quality_is_what_genuine_users_are_shown(trained):
    split, victim = trained
    plain = served_quality(victim, split)
    # the API never shows a seen item, so a held-out repeat counts as a miss (the full-ranking evaluation keeps it)
    assert 0 < plain["NDCG@10"] <= recguard.metrics.evaluate(victim, split, which="test", ks=(10,))["NDCG@10"] + 1e-9
    assert served_quality(ServedVictim(victim, "truncate:20"), split)["NDCG@10"] == pytest.approx(plain["NDCG@10"])
    reordered = served_quality(ServedVictim(victim, "shuffle:10"), split)
    assert reordered["HR@10"] == pytest.approx(plain["HR@10"]) and reordered["NDCG@10"] < plain["NDCG@10"]
    short = served_quality(ServedVictim(victim, "truncate:3"), split)
    assert short["shown"] == 3 and short["HR@10"] <= plain["HR@10"]


def test_the_attack_reaches_a_defended_api_through_the_black_box(trained):
    from recguard.attacks.extraction import agreement, extract
    from recguard.testing import assert_extraction_resistant

    split, victim = trained
    with pytest.raises(ConfigError, match="at most 5 items"):
        recguard.BlackBoxVictim(ServedVictim(victim, "truncate:5"), k=10)
    bb = recguard.BlackBoxVictim(ServedVictim(victim, "truncate:5"), k=5, query_budget=400)
    res = extract(bb, num_sequences=40, length=8, epochs=2, surrogate_config={"hidden": 16, "epochs": 2}, rng=0, progress=False)
    assert res.transcript.lists.shape[2] == 5 and bb.queries_used == res.queries <= 400
    x, _ = split.inputs("test", victim.max_len)
    assert 0 <= agreement(victim, res.surrogate, x)["Agreement@10"] <= 1
    out = assert_extraction_resistant(victim, split, budget=30, epochs=2, k=20, defense="shuffle:10", max_agreement=1.0,
                                      surrogate_config={"hidden": 16, "epochs": 2})
    assert out["defense"] == "shuffle:10" and out["k"] == 20 and out["served_cost"] < 0
    with pytest.raises(AssertionError, match="costs too much"):
        assert_extraction_resistant(victim, split, budget=30, epochs=2, k=20, defense="shuffle:10", max_agreement=1.0,
                                    max_cost=0.0001, surrogate_config={"hidden": 16, "epochs": 2})


def test_the_cli_and_the_audit_serve_the_attacker_through_the_defense(tmp_path, capsys):
    import json

    from recguard.audit import AuditSpec, run_audit
    from recguard.cli import main

    d = cyclic_data(num_users=80, num_items=30, length=10, seed=5)
    path = tmp_path / "toy.txt"
    path.write_text("".join(f"{u + 1} {i}\n" for u, s in enumerate(d) for i in s.tolist()))
    spec = AuditSpec(dataset=str(path), model="sasrec", model_config={"hidden": 16, "max_len": 12, "epochs": 3, "patience": 0},
                     attacks=("extracted",), budgets=(0.05,), seeds=(0,), num_targets=2,
                     extraction={"num_sequences": 30, "length": 8, "k": 10, "epochs": 3, "defense": "truncate:5"})
    res = run_audit(spec, tmp_path / "a", progress=False)
    assert res["extraction"]["defense"] == "truncate:5" and res["extraction"]["served_cost_NDCG@10"]["n"] == 1
    ext = next(c for c in res["cells"] if c["kind"] == "extraction")["extraction"]
    assert ext["served"]["defense"] == "truncate:5" and ext["queries"] == 30 * 8
    assert "The stolen model (black-box chain)" in (tmp_path / "a" / "report.md").read_text()
    with pytest.raises(ConfigError, match="extraction.defense"):
        AuditSpec(extraction={"defense": "blur:3"})

    victim_dir = tmp_path / "victim"
    assert main(["train", "--dataset", str(path), "--model", "sasrec", "--out", str(victim_dir), "--set", "hidden=16",
                 "--set", "max_len=12", "--set", "epochs=2", "--no-progress"]) == 0
    out = tmp_path / "stolen"
    argv = ["extract", "--victim", str(victim_dir), "--out", str(out), "--budget", "20", "--length", "6", "--k", "10",
            "--epochs", "1", "--no-progress", "--defense", "shuffle:5"]
    assert main(argv) == 0
    rep = json.loads((out / "extraction.json").read_text())
    assert rep["defense"] == "shuffle:5" and 0 <= rep["served_test"]["NDCG@10"] <= 1
    capsys.readouterr()
    assert main([*argv[:-1], "truncate:5"]) == 2  # --k 10 from a 5-item API: one line naming --k
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--k" in err[0]


def test_a_head_is_served_exactly_and_only_the_rest_is_perturbed(trained):
    split, victim = trained
    x = split.train.padded(victim.max_len)[:50]
    plain = victim.recommend(x, k=30)
    assert ServingPolicy.parse("shuffle:10,head=10").label == "shuffle:10,head=10"
    for policy in ("shuffle:10,head=10", "sample:1,head=10", "unordered:20,head=10"):
        served = ServedVictim(victim, policy).recommend(x, k=30)
        assert np.array_equal(served[:, :10], plain[:, :10]) and not np.array_equal(served, plain), policy
        assert all(len(set(row)) == 30 for row in served)
    assert served_quality(ServedVictim(victim, "shuffle:10,head=10"), split)["NDCG@10"] == pytest.approx(
        served_quality(victim, split)["NDCG@10"])
    for bad in ("truncate:10,head=3", "shuffle:10,hed=3", "shuffle:10,head=-1"):
        with pytest.raises(ConfigError, match="head"):
            ServingPolicy.parse(bad)


def test_the_query_stream_detector_flags_extraction_accounts_within_its_budget():
    from recguard.attacks.extraction import generate
    from recguard.defenses.querystream import QueryStreamDetector, stream_ranks
    from recguard.errors import NotFittedError

    data = cyclic_data(num_users=300, num_items=60, length=12, noise=0.1, seed=3)
    victim = make("sasrec", epochs=8, lr=5e-3).fit(data.split(), rng=0)
    detector = QueryStreamDetector(max_flag_share=0.02, simulated_accounts=100, simulated_k=20, max_queries=12, seed=0)
    with pytest.raises(NotFittedError):
        detector.flagged_at([np.array([1, 2, 3])])
    detector.fit(victim, data.split())
    assert detector.info_["held_flagged_share"] <= 0.02 + 1 / detector.info_["genuine_users_held"]
    # genuine users follow the cycle the model learned: their next items rank first
    ranks = stream_ranks(victim, [np.arange(1, 8)])[0]
    assert len(ranks) == 6 and np.median(ranks) <= 3
    attack = generate(recguard.BlackBoxVictim(victim, k=20), num_sequences=60, length=12, rng=99, progress=False)
    at = detector.flagged_at([attack.seqs[i, : attack.lengths[i]] for i in range(60)])
    assert np.mean(at > 0) >= 0.9 and np.all(at <= 12)
    running = detector.scores([attack.seqs[0, : attack.lengths[0]]])[0]
    assert len(running) == 12 and np.all(np.diff(running) >= 0)  # once flagged, an account stays flagged
    # served query by query (each extending the last by one item), the API decides as flagged_at does
    from recguard.data import pad_sequences

    streams = [attack.seqs[i, : attack.lengths[i]] for i in range(5)] + [data[u] for u in range(5)]
    expected = detector.flagged_at(streams)
    detector.reset_queries()
    online = np.zeros(len(streams), dtype=np.int64)
    for t in range(1, 13):
        rows = [i for i, s in enumerate(streams) if len(s) >= t]
        flags = detector.flag_queries(pad_sequences([streams[i][:t] for i in rows], victim.max_len))
        for i, f in zip(rows, flags):
            if f and not online[i]:
                online[i] = t
    assert np.array_equal(online, expected)
    # behind the guard, a flagged account is served random unseen items
    guarded = ServedVictim(victim, guard=detector)
    flagged_stream = streams[int(np.argmax(expected > 0))]
    served = guarded.recommend([flagged_stream], k=10)[0]
    assert guarded.guard_flags == 1 and not set(served) & set(flagged_stream)
    served_quality(guarded, data.split())  # the genuine users are scored on their own; the attacker's count stays
    assert guarded.guard_flags == 1
    assert not np.array_equal(served, victim.recommend([flagged_stream], k=10)[0])
    with pytest.raises(ConfigError, match="guard"):
        ServedVictim(make("sasrec", epochs=1).fit(data.split(), rng=1), guard=detector)
    for bad in (dict(max_flag_share=0.6), dict(max_queries=1), dict(holdout=1.0)):
        with pytest.raises(ConfigError):
            QueryStreamDetector(**bad)


def test_the_detector_holds_its_budget_on_the_last_window_of_long_histories(trained):
    from recguard.defenses.querystream import QueryStreamDetector

    split, victim = trained  # histories of 10 training items, read as streams of at most 6 queries
    kw = dict(max_flag_share=0.05, simulated_accounts=60, simulated_k=20, max_queries=6, seed=0)
    both = QueryStreamDetector(**kw).fit(victim, split)
    first = QueryStreamDetector(windows="first", **kw).fit(victim, split)
    assert both.info_["windows"] == "first+last" and both.info_["revision"] == 2 and first.info_["revision"] == 1
    assert both.info_["genuine_prefixes"] == 2 * first.info_["genuine_prefixes"]  # every history gives two windows here
    history = split.train[0]
    assert [len(w) for w in both.genuine_streams(history)] == [6, 6] and np.array_equal(both.genuine_streams(history)[1], history[-6:])
    held = [split.train[u] for u in range(split.train.num_users)]
    flagged = (both.flagged_at([h[:6] for h in held]) > 0) | (both.flagged_at([h[-6:] for h in held]) > 0)
    assert both.info_["held_flagged_share"] <= 0.05 + 1 / both.info_["genuine_users_held"] and flagged.mean() <= 0.15
    with pytest.raises(ConfigError) as err:
        QueryStreamDetector(windows="last")
    assert err.value.param == "windows"


def test_serve_names_the_defense_and_fits_the_guard_on_the_genuine_users(trained):
    from recguard.defenses.serving import check_defense, serve

    split, victim = trained
    assert serve(victim, "truncate:5").label == "truncate:5" and serve(victim, "none").guard is None
    guarded = serve(victim, "shuffle:10,head=10+guard", split.train, seed=1)
    assert guarded.label == "shuffle:10,head=10+guard" and guarded.guard.victim_ is victim
    with pytest.raises(ConfigError, match="pass the data"):
        serve(victim, "guard")
    assert check_defense(" guard ") == "guard"
    for bad in ("guard+truncate:5", "blur+guard", "truncate:5guard"):
        with pytest.raises(ConfigError):
            check_defense(bad)


def test_a_wrapped_model_is_served_and_guarded_through_the_contract():
    from foreign_models import make_narm

    from recguard.defenses.serving import serve

    data = cyclic_data(num_users=120, num_items=30, length=10, seed=2)
    victim = make_narm(num_items=data.num_items, epochs=2, max_len=12).fit(data.split(), rng=0)
    x = data.padded(12)[:20]
    sampled = ServedVictim(victim, "sample:0.5,head=3").recommend(x, k=8)
    assert np.array_equal(sampled[:, :3], victim.recommend(x, k=3)) and all(len(set(r)) == 8 for r in sampled)
    guarded = serve(victim, "truncate:10+guard", data, seed=0)
    assert guarded.max_list == 10 and guarded.recommend(x, k=10).shape == (20, 10)
    assert 0 <= served_quality(guarded, data.split())["NDCG@10"] <= 1


def test_gro_closed_form_swaps_match_the_dense_swap_matrix():
    """The paper's swap: the argmax over items of d loss / d swap-matrix, row by row; here in closed form."""
    from recguard.victims._gro import best_swaps

    gen = torch.Generator().manual_seed(0)
    student = torch.randn(4, 30, generator=gen)
    lists = torch.stack([torch.randperm(30, generator=gen)[:6] for _ in range(4)])
    weights = torch.randn(4, 6, generator=gen)

    def loss_of(listed):  # any loss that is smooth in the listed scores
        return (weights * listed).sum() + (listed[:, :-1] - listed[:, 1:]).pow(2).sum()

    swap = torch.zeros(4, 6, 30)
    swap[torch.arange(4)[:, None], torch.arange(6)[None, :], lists] = 1
    swap.requires_grad_(True)
    loss_of(torch.bmm(swap, student[:, :, None]).squeeze(-1)).backward()
    dense_best = swap.grad.argmax(-1)
    listed = student.gather(1, lists).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(listed), listed)
    best, raises = best_swaps(grad, student, lists)
    assert raises.sum() > 12 and torch.equal(best[raises], dense_best[raises])
    # a rank whose gradient is zero gets no swap (the published code would pull up column 0)
    _, none_raised = best_swaps(torch.zeros(4, 6), student, lists)
    assert not none_raised.any()


def test_gro_trains_a_causal_victim_and_refuses_others():
    data = cyclic_data(num_users=120, num_items=40, length=10, noise=0.05)
    split = data.split()
    plain = make("sasrec", epochs=2, eval_every=1).fit(split, rng=0)
    gro = make("sasrec", epochs=2, eval_every=1, gro_lambda=1.0, gro_k=10).fit(split, rng=0)
    info = gro.fit_info_["gro"]
    assert info["lambda"] == 1.0 and info["k"] == 10 and np.isfinite(info["last_student_loss"])
    assert "gro" not in plain.fit_info_
    x = split.train.padded(gro.max_len)[:20]
    assert not np.array_equal(gro.recommend(x, k=10), plain.recommend(x, k=10))
    with pytest.raises(ConfigError, match="causal model") as err:
        make("bert4rec", epochs=1, gro_lambda=1.0).fit(split, rng=0)
    assert err.value.param == "gro_lambda"
    for bad, param in (({"gro_lambda": -1.0}, "gro_lambda"), ({"gro_lambda": float("nan")}, "gro_lambda"), ({"gro_k": 1}, "gro_k"),
                       ({"gro_positions": 0}, "gro_positions")):
        with pytest.raises(ConfigError) as err:
            make("sasrec", **bad)
        assert err.value.param == param


def test_compare_puts_the_audits_of_each_api_defense_side_by_side(tmp_path, capsys):
    import json

    from recguard.audit import AuditSpec, run_audit
    from recguard.cli import main

    d = cyclic_data(num_users=80, num_items=30, length=10, seed=6)
    path = tmp_path / "toy.txt"
    path.write_text("".join(f"{u + 1} {i}\n" for u, s in enumerate(d) for i in s.tolist()))
    folders = []
    for defense in ("truncate:5", "none"):
        spec = AuditSpec(dataset=str(path), model="sasrec", model_config={"hidden": 16, "max_len": 12, "epochs": 3, "patience": 0},
                         attacks=("extracted",), budgets=(0.2,), seeds=(0, 1), num_targets=2, ks=(10,),
                         extraction={"num_sequences": 20, "length": 6, "k": 10, "epochs": 1, "defense": defense})
        run_audit(spec, tmp_path / defense.replace(":", "-"), progress=False)
        folders.append(str(tmp_path / defense.replace(":", "-")))
    out = tmp_path / "cmp"
    assert main(["compare", *folders, "--out", str(out)]) == 0
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["baseline"] == "none" and [a["label"] for a in cmp["audits"]] == ["truncate:5", "none"]

    def lifts(folder):
        res = json.loads((tmp_path / folder / "results.json").read_text())
        return {c["seed"]: c["derived"]["lift_T-HR@10"] for c in res["cells"] if c["kind"] == "poisoned"}

    plain, truncated = lifts(folders[1]), lifts(folders[0])
    row = cmp["audits"][0]["rows"][0]
    assert len(set(plain.values()) | set(truncated.values())) > 1  # lifts that differ, so the pairing is tested
    assert row["paired_seeds"] == 2 and row["removed"]["mean"] == pytest.approx(np.mean([plain[s] - truncated[s] for s in (0, 1)]))
    assert cmp["audits"][1]["rows"][0]["removed"]["mean"] == 0
    assert "data:image/png" in (out / "compare.html").read_text() and "truncate:5" in (out / "compare.md").read_text()
    capsys.readouterr()
    other = tmp_path / "other.txt"
    other.write_text(path.read_text())
    for argv, needle in ((["compare", folders[0], "--out", str(tmp_path / "c2")], "at least two"),
                         (["compare", folders[0], str(tmp_path), "--out", str(tmp_path / "c3")], "results.json"),
                         (["compare", *folders, "--out", str(tmp_path / "toy.txt")], "toy.txt")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    spec = AuditSpec(dataset=str(other), model="sasrec", model_config={"hidden": 16, "max_len": 12, "epochs": 1, "patience": 0},
                     attacks=("random",), budgets=(0.05,), seeds=(0,), num_targets=2)
    run_audit(spec, tmp_path / "other", progress=False)
    assert main(["compare", folders[0], str(tmp_path / "other"), "--out", str(tmp_path / "c4")]) == 2
    assert "one dataset and model" in capsys.readouterr().err


def test_audit_cells_behind_the_guard_name_the_detectors_revision():
    from recguard.audit import AuditSpec
    from recguard.audit.cells import Cell
    from recguard.defenses.querystream import DETECTOR_REVISION

    guarded = AuditSpec(attacks=("extracted",), extraction={"defense": "truncate:10+guard"})
    plain = AuditSpec(attacks=("extracted",), extraction={"defense": "truncate:10"})
    for kind, args in (("extraction", ()), ("poisoned", ("extracted", 0.01, "none"))):
        assert Cell.make(guarded, kind, 0, *args).key["guard_revision"] == DETECTOR_REVISION
        assert "guard_revision" not in Cell.make(plain, kind, 0, *args).key
    assert Cell.make(guarded, "extraction", 0).name != Cell.make(plain, "extraction", 0).name
