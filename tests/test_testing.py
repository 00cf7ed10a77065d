"""recguard.testing: contract checks, robustness assertions, the pytest plugin, the example project."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recguard.testing import (
    CHECKS,
    RobustnessError,
    assert_clean_quality,
    assert_extraction_resistant,
    assert_robust,
    check_victim,
    make_fast_victim,
    parametrize_with_checks,
    tiny_dataset,
)
from recguard.testing import checks as C
from recguard.victims import EpochUpdate, TorchVictim

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------ recguard's victims pass its own checks
@parametrize_with_checks([make_fast_victim("sasrec", epochs=2), make_fast_victim("bert4rec", epochs=2, num_heads=2),
                          make_fast_victim("gru4rec", epochs=2)])
def test_recguard_victims_pass_the_contract(victim, check):
    check(victim)


# ------------------------------------------------------------ broken victims fail them
class Mean(nn.Module):
    def __init__(self, n=30, d=8):
        super().__init__()
        self.emb = nn.Embedding(n + 1, d, padding_idx=0)

    def forward(self, x):
        m = (x > 0).unsqueeze(-1)
        return (self.emb(x) * m).sum(1) / m.sum(1).clamp_min(1) @ self.emb.weight.T


def _fit(module, split, user_weights, rng):
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    x, y = (np.array(a) for a in split.inputs("valid", 8))  # writable copies
    w = torch.ones(len(y)) if user_weights is None else torch.tensor(np.asarray(user_weights, dtype=np.float32)[split.eval_users])
    for _ in range(3):
        loss = (nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y), reduction="none") * w).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _good():
    torch.manual_seed(0)
    return TorchVictim(Mean(), num_items=30, max_len=8, fit_fn=_fit, device="cpu")


def test_a_well_behaved_user_model_passes_every_check():
    check_victim(_good)


def test_unseeded_initialisation_fails_determinism():
    def fresh():  # initialised from whatever the global RNG holds: two fits differ
        return TorchVictim(Mean(), num_items=30, max_len=8, fit_fn=_fit, device="cpu")

    with pytest.raises(AssertionError, match="same seed, different scores"):
        C.check_deterministic_under_seed(fresh)


def test_ignored_user_weights_are_caught():
    def fresh():
        torch.manual_seed(0)
        return TorchVictim(Mean(), num_items=30, max_len=8, fit_fn=lambda m, s, w, r: _fit(m, s, None, r), device="cpu")

    with pytest.raises(AssertionError, match="user_weights are ignored"):
        C.check_user_weights_honoured(fresh)


def test_input_mutation_and_leftover_hooks_are_caught():
    class Mutating(Mean):
        def forward(self, x):
            x[:, 0] = 1  # writes into the caller's batch
            return super().forward(x)

    def mutating():
        torch.manual_seed(0)
        return TorchVictim(Mutating(), num_items=30, max_len=8, fit_fn=_fit, device="cpu")

    with pytest.raises(AssertionError, match="modified a"):
        C.check_inputs_not_mutated(mutating)

    class Hooking(Mean):
        def forward(self, x):
            self.emb.register_forward_hook(lambda *a: None)  # leaks a hook per call
            return super().forward(x)

    def hooking():
        torch.manual_seed(0)
        return TorchVictim(Hooking(), num_items=30, max_len=8, fit_fn=_fit, device="cpu")

    with pytest.raises(AssertionError, match="left hooks"):
        C.check_hooks_cleaned_up(hooking)


# ------------------------------------------- the white-box checks fail on broken models
class Prefix(nn.Module):
    """A correct white-box model: the state at t is the mean of the embeddings of items up to t."""

    def __init__(self, n=30, d=8):
        super().__init__()
        self.emb = nn.Embedding(n + 1, d, padding_idx=0)

    def hidden_states(self, x):
        m = (x > 0).unsqueeze(-1).float()
        return (self.emb(x) * m).cumsum(1) / m.cumsum(1).clamp_min(1)

    def representation(self, x):
        return self.hidden_states(x)[:, -1]

    def item_embeddings(self):
        return self.emb.weight

    def forward(self, x):
        return self.representation(x) @ self.emb.weight.T


def _fit_full(module, split, user_weights, rng, *, item_weights=None, on_epoch_end=None, epochs=3):
    opt = torch.optim.SGD(module.parameters(), lr=0.2)
    x, y = (np.array(a) for a in split.inputs("valid", 8))
    w = torch.ones(len(y)) if user_weights is None else torch.tensor(np.asarray(user_weights, dtype=np.float32)[split.eval_users])
    for epoch in range(1, epochs + 1):
        terms = w * (1.0 if item_weights is None else torch.as_tensor(item_weights, dtype=torch.float32)[torch.from_numpy(y)])
        loss = (nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y), reduction="none") * terms).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_epoch_end is not None:
            update = on_epoch_end(epoch)
            if update.user_weights is not None:
                w = torch.tensor(np.asarray(update.user_weights, dtype=np.float32)[split.eval_users])
            if update.stop:
                break


def _wrap(module_cls, fit=_fit_full, **kw):
    def make():
        torch.manual_seed(0)
        return TorchVictim(module_cls(), num_items=30, max_len=8, fit_fn=fit, device="cpu", causal=True, **kw)

    return make


def test_a_correct_white_box_model_passes_every_capability_check():
    make = _wrap(Prefix)
    assert {"white_box", "gradients", "hidden_states", "epoch_callback", "item_weights"} <= make().capabilities()
    check_victim(make)


def test_each_white_box_check_fails_on_a_model_broken_for_it():
    class WrongRep(Prefix):  # the representation is not what the scores come from
        def representation(self, x):
            return self.hidden_states(x)[:, 0]

        def forward(self, x):
            return self.hidden_states(x)[:, -1] @ self.emb.weight.T

    class ShortTable(Prefix):
        def item_embeddings(self):
            return self.emb.weight[1:]

    class Detached(Prefix):  # input embeddings cut off from the gradient
        def hidden_states(self, x):
            m = (x > 0).unsqueeze(-1).float()
            return (self.emb(x).detach() * m).cumsum(1) / m.cumsum(1).clamp_min(1) + 0 * self.emb.weight.sum()

    class Peeking(Prefix):  # declared causal, but every position sees the whole sequence
        def hidden_states(self, x):
            m = (x > 0).unsqueeze(-1).float()
            return ((self.emb(x) * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)).expand(-1, x.shape[1], -1)

    def never_calls(module, split, user_weights, rng, *, on_epoch_end=None):
        _fit_full(module, split, user_weights, rng)

    def ignores_weights(module, split, user_weights, rng, *, on_epoch_end=None):
        _fit_full(module, split, user_weights, rng, on_epoch_end=lambda e: (on_epoch_end(e), EpochUpdate())[1])

    def ignores_stop(module, split, user_weights, rng, *, on_epoch_end=None):
        def cb(e):
            u = on_epoch_end(e)
            return EpochUpdate(user_weights=u.user_weights)

        _fit_full(module, split, user_weights, rng, on_epoch_end=cb)

    def ignores_item_weights(module, split, user_weights, rng, *, item_weights=None):
        _fit_full(module, split, user_weights, rng)

    cases = [
        (C.check_representation_consistent_with_score, _wrap(WrongRep), "not the state the scores come from"),
        (C.check_item_embeddings_shape, _wrap(ShortTable), "item_embeddings\\(\\) shape"),
        (C.check_gradients_reach_input_embeddings, _wrap(Detached), "do not depend on input_embedding_layer"),
        (C.check_hidden_states, _wrap(Peeking), "declared causal"),
        (C.check_epoch_callback_honoured, _wrap(Prefix, never_calls), "called with epochs \\[\\]"),
        (C.check_epoch_callback_honoured, _wrap(Prefix, ignores_weights), "did not change the following epochs"),
        (C.check_epoch_callback_honoured, _wrap(Prefix, ignores_stop), "went on after on_epoch_end returned STOP"),
        (C.check_item_weights_honoured, _wrap(Prefix, ignores_item_weights), "item_weights are ignored"),
    ]
    for check, make, needle in cases:
        check(_wrap(Prefix))  # the correct model passes the very same check ...
        with pytest.raises(AssertionError, match=needle):  # ... and the broken one fails it
            check(make)


def test_padding_leak_breaks_batch_invariance():
    class Leaky(Mean):
        def forward(self, x):  # the mean runs over padding too: depends on the batch's padded width
            return self.emb(x).mean(1) @ self.emb.weight.T

    def leaky():
        torch.manual_seed(0)
        return TorchVictim(Leaky(), num_items=30, max_len=8, fit_fn=_fit, device="cpu")

    with pytest.raises(AssertionError, match="padding leaks"):
        C.check_batch_invariance(leaky)


def test_parametrize_ids_name_victim_and_check():
    mark = parametrize_with_checks([_good])
    ids = mark.kwargs["ids"]
    assert len(ids) == len(C.checks_for(_good)) > len(CHECKS) and ids[0] == "_good-check_score_shape_and_padding"


# ------------------------------------------------------------------------- assertions
def _train(split, seed):
    return make_fast_victim("gru4rec", epochs=3).fit(split, rng=seed)


def test_assert_robust_reports_figures_and_fails_informatively(tmp_path):
    data = tiny_dataset(num_users=80)
    res = assert_robust(_train, data, attack="popular", budget=0.05, metric="T-HR@10", max_lift=1.0, seeds=[0, 1],
                        report=tmp_path, name="ok")
    assert res["passed"] and len(res["per_seed"]) == 2 and res["mean_lift"] == pytest.approx(
        np.mean([r["poisoned"] - r["clean"] for r in res["per_seed"]]))
    assert (tmp_path / "ok.json").exists() and "passed" in (tmp_path / "ok.html").read_text()
    with pytest.raises(RobustnessError) as exc:
        assert_robust(_train, data, attack="random", budget=0.05, metric="T-HR@10", max_lift=-1.0, seeds=1, report=tmp_path,
                      name="bad")
    msg = str(exc.value)
    for needle in ("NOT robust", "T-HR@10", "max_lift -1.0", "'random'", "5.00%", "seed 0"):
        assert needle in msg, needle
    assert exc.value.result["passed"] is False and json.loads((tmp_path / "bad.json").read_text())["passed"] is False


def test_assert_robust_rejects_bad_metrics():
    from recguard.errors import ConfigError

    with pytest.raises(ConfigError, match="T-HR@50"):
        assert_robust(_train, tiny_dataset(num_users=30), metric="HR@10")


def test_assert_extraction_resistant_and_clean_quality():
    data = tiny_dataset(num_users=60)
    v = _train(data.split(), 0)
    with pytest.raises(RobustnessError, match=r"NOT resistant: a gru4rec stolen data-free with \d+ top-10 queries"):
        assert_extraction_resistant(v, data, budget=30, k=10, epochs=2, max_agreement=0.0, surrogate="gru4rec",
                                    surrogate_config={"hidden": 8})
    ok = assert_clean_quality(v, data, min_ndcg=0.0)
    assert ok["passed"] and 0 <= ok["NDCG@10"] <= 1
    with pytest.raises(RobustnessError, match=r"NDCG@10 0\.\d+ < min_ndcg 1\.1"):
        assert_clean_quality(v, data, min_ndcg=1.1)


# ---------------------------------------------------------------------------- plugin
def test_plugin_marker_options_and_reports(pytester):
    pytester.makepyfile(
        """
        def test_quality(recguard):
            v = recguard.make_victim("gru4rec", epochs=2).fit(recguard.data, rng=0)
            recguard.assert_clean_quality(v, min_ndcg=0.0)

        def test_robust(recguard):
            def train(split, seed):
                return recguard.make_victim("gru4rec", epochs=2).fit(split, rng=seed)
            res = recguard.assert_robust(train, attack="random", budget=0.05, metric="T-HR@10", max_lift=1.0, seeds=3)
            assert len(res["per_seed"]) == 1  # --recguard-seeds 1 overrides the test's 3

        def test_plain(recguard_data, recguard_victim):
            assert recguard_data.num_users == 120 and recguard_victim("sasrec").max_len == 16
        """
    )
    report = pytester.path / "reports"
    res = pytester.runpytest("--recguard-seeds", "1", "--recguard-report", str(report), "-q")
    res.assert_outcomes(passed=3)
    names = sorted(p.name for p in report.iterdir())
    assert any(n.startswith("test_quality-quality") and n.endswith(".html") for n in names)
    assert any(n.startswith("test_robust-robust") and n.endswith(".json") for n in names)
    res = pytester.runpytest("-m", "not recguard", "-q")
    res.assert_outcomes(passed=1, deselected=2)
    res = pytester.runpytest("--recguard-seeds", "0")
    assert res.ret != 0


def test_the_example_project_passes():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=ROOT / "examples" / "custom_model", env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "18 passed" in run.stdout  # 9 base contract checks + 6 capability checks + 3 requirements


def test_the_example_readme_audit_command_runs(tmp_path, monkeypatch, capsys):
    """The README's `recguard audit --model mymodel:make_victim ...` as written, on a small titled dataset
    (the README runs it on ML-100k) with fewer epochs."""
    import shlex

    from recguard.cli import main

    from conftest import cyclic_data

    readme = (ROOT / "examples" / "custom_model" / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("recguard audit --model mymodel:make_victim"))
    argv = shlex.split(line)[1:]
    assert {"--attacks", "--defense"} <= set(argv) and "popular,surrogate" in argv and "none,lorec" in argv
    d = cyclic_data(num_users=60, num_items=20, length=10, seed=2)
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                        + "".join(f"{u}\t{i}\t{t}\n" for u, s in enumerate(d) for t, i in enumerate(s.tolist())))
    (tmp_path / "toy.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"{i}\tred star {i}\n" for i in range(1, 21)))
    monkeypatch.chdir(ROOT / "examples" / "custom_model")
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)
    out = tmp_path / "audit"
    argv += ["--dataset", str(tmp_path / "toy.inter"), "--budgets", "0.05", "--set", "epochs=4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert {(r["attack"], r["defense"]) for r in res["summary"]} == {(a, d) for a in ("popular", "surrogate") for d in ("none", "lorec")}
    assert res["provenance"]["model"]["module_file"].endswith("mymodel.py")
