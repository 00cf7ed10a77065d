"""Contract checks for victims, in the spirit of scikit-learn's ``parametrize_with_checks``.

``parametrize_with_checks([SASRec(...), make_my_victim])`` turns every (victim, check) pair
into its own pytest test. A victim is given as an instance (recguard victims are cloned
from their config, a :class:`~recguard.victims.TorchVictim` by deep-copying its unfitted
module) or as a zero-argument factory returning a fresh, unfitted victim. Checks fit the
victim on a tiny seeded dataset sized to it.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..errors import RecguardError
from ._data import tiny_dataset

__all__ = ["CHECKS", "CAPABILITY_CHECKS", "checks_for", "parametrize_with_checks", "check_victim", "victim_id"]


def _factory(victim) -> Callable[[], object]:
    """A factory of fresh victims: a factory as given, else the victim's ``clone()`` (of a frozen
    copy, so later changes to ``victim`` do not leak in), else deep copies."""
    if callable(victim) and not hasattr(victim, "fit"):
        return victim
    if callable(getattr(victim, "clone", None)):
        frozen = victim.clone()
        return frozen.clone
    return lambda: copy.deepcopy(victim)


def victim_id(victim) -> str:
    if callable(victim) and not hasattr(victim, "fit"):
        return getattr(victim, "__name__", type(victim).__name__)
    return repr(victim) if len(repr(victim)) < 80 else type(victim).__name__


def _data_for(v):
    n = getattr(v, "num_items", None)
    return tiny_dataset(num_items=int(n) if n else 30, num_users=80, length=10, seed=0)


def _inputs(v, data, n=6) -> np.ndarray:
    split = data.split()
    x, _ = split.inputs("test", v.max_len)
    return np.ascontiguousarray(x[:n])


def _fitted(make, data, seed=0, **kw):
    return make().fit(data, rng=seed, **kw)


# ---------------------------------------------------------------------------- checks
def check_score_shape_and_padding(make):
    """score() returns float [B, num_items + 1] with column 0 (padding) = -inf and finite scores elsewhere."""
    data = _data_for(make())
    v = _fitted(make, data)
    x = _inputs(v, data)
    s = v.score(x)
    assert isinstance(s, torch.Tensor) and s.is_floating_point(), f"score() must return a float tensor, got {type(s).__name__}"
    want = (len(x), v.num_items + 1)
    assert tuple(s.shape) == want, f"score() shape {tuple(s.shape)} != (batch, num_items + 1) = {want}"
    assert torch.isneginf(s[:, 0]).all(), "score()[:, 0] (the padding item) must be -inf"
    assert torch.isfinite(s[:, 1:]).all(), "score() has non-finite scores for real items"


def check_recommend_excludes_seen(make):
    """recommend(k) returns [B, k] distinct real item ids, none of them already in the history."""
    data = _data_for(make())
    v = _fitted(make, data)
    x = _inputs(v, data)
    r = np.asarray(v.recommend(x, k=5))
    assert r.shape == (len(x), 5), f"recommend(k=5) shape {r.shape} != ({len(x)}, 5)"
    assert ((r >= 1) & (r <= v.num_items)).all(), "recommend() returned padding or out-of-catalogue ids"
    for row, hist in zip(r, x):
        assert len(set(row.tolist())) == 5, f"duplicate items in a top-5 list: {row.tolist()}"
        seen = set(hist[hist > 0].tolist())
        assert not seen & set(row.tolist()), f"recommend() returned already-seen items {sorted(seen & set(row.tolist()))}"


def check_deterministic_under_seed(make):
    """Two fits with the same seed give identical scores."""
    data = _data_for(make())
    a, b = _fitted(make, data, seed=3), _fitted(make, data, seed=3)
    x = _inputs(a, data)
    sa, sb = a.score(x), b.score(x)
    diff = float((sa[:, 1:] - sb[:, 1:]).abs().max())
    assert diff <= 1e-6, f"same seed, different scores (max |diff| = {diff:.3g}); seed every random choice from rng"


def check_batch_invariance(make):
    """A sequence's scores do not depend on the other sequences in its batch, nor on how much
    padding the batch adds (histories of different lengths, scored alone and together)."""
    data = _data_for(make())
    v = _fitted(make, data)
    x = _inputs(v, data)
    seqs = [row[row > 0][-(2 + i):] for i, row in enumerate(x)]  # lengths 2, 3, ...
    width = max(len(s) for s in seqs)
    batch = np.zeros((len(seqs), width), dtype=np.int64)  # left-padded to the longest only
    for i, s in enumerate(seqs):
        batch[i, width - len(s):] = s
    together = v.score(batch)
    for i, s in enumerate(seqs):
        alone = v.score(np.asarray([s], dtype=np.int64))  # no padding at all
        diff = float((alone[0, 1:] - together[i, 1:]).abs().max())
        assert diff <= 1e-4, (f"history of length {len(s)}: scores differ alone vs in a padded batch (max |diff| = {diff:.3g}); "
                              "padding leaks into scores")


def check_save_load_roundtrip(make):
    """save(dir) then load gives identical scores (safetensors + JSON, no pickle)."""
    from ..victims import TorchVictim, load

    data = _data_for(make())
    v = _fitted(make, data)
    assert hasattr(v, "save"), "the victim has no save(directory) method"
    x = _inputs(v, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "victim"
        v.save(path)
        files = {p.suffix for p in path.iterdir()}
        assert ".pkl" not in files and ".pt" not in files, f"artifact contains pickle-based files: {sorted(files)}"
        back = make().load_weights(path) if isinstance(v, TorchVictim) else load(path)
        diff = float((back.score(x)[:, 1:] - v.score(x)[:, 1:]).abs().max())
    assert diff <= 1e-6, f"scores changed after save/load (max |diff| = {diff:.3g})"


def check_user_weights_honoured(make):
    """fit(user_weights=1) equals fit(); zeroing half the users' weights changes the model."""
    data = _data_for(make())
    n = data.split().train.num_users
    base = _fitted(make, data, seed=1)
    ones = _fitted(make, data, seed=1, user_weights=np.ones(n))
    x = _inputs(base, data)
    diff = float((base.score(x)[:, 1:] - ones.score(x)[:, 1:]).abs().max())
    assert diff <= 1e-5, f"user_weights of all ones changed the model (max |diff| = {diff:.3g})"
    w = np.ones(n)
    w[: n // 2] = 0.0
    half = _fitted(make, data, seed=1, user_weights=w)
    moved = float((base.score(x)[:, 1:] - half.score(x)[:, 1:]).abs().max())
    assert moved > 1e-6, "zero weight for half the users left the model unchanged: user_weights are ignored"


def check_inputs_not_mutated(make):
    """fit/score/recommend never modify their inputs."""
    data = _data_for(make())
    fp = data.fingerprint()
    v = _fitted(make, data)
    assert data.fingerprint() == fp, "fit() modified the dataset"
    x = _inputs(v, data)
    x0 = x.copy()
    t = torch.from_numpy(x.copy())
    t0 = t.clone()
    v.score(x)
    v.recommend(x, k=3)
    v.score(t)
    v.recommend(t, k=3)
    assert np.array_equal(x, x0), "score()/recommend() modified a numpy input"
    assert torch.equal(t, t0), "score()/recommend() modified a tensor input"


def _hook_count(module: torch.nn.Module) -> int:
    total = 0
    for m in module.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            total += len(getattr(m, name, {}) or {})
    return total


def check_hooks_cleaned_up(make):
    """No hooks are left on the module after fit/score/recommend, nor after recguard's
    scoped capture, even when the hooked forward pass raises."""
    from ..victims import capture

    data = _data_for(make())
    v = _fitted(make, data)
    module = getattr(v, "module", None)
    assert isinstance(module, torch.nn.Module), "the victim exposes no .module (an nn.Module) to inspect"
    before = _hook_count(module)
    x = _inputs(v, data)
    v.score(x)
    v.recommend(x, k=3)
    assert _hook_count(module) == before, "score()/recommend() left hooks on the module"
    layer = next((m for name, m in module.named_modules() if name), module)
    orig = layer.forward

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    layer.forward = boom
    try:
        with capture(layer):
            try:
                v.score(x)
            except RuntimeError:
                pass
    finally:
        layer.forward = orig
    assert _hook_count(module) == before, "recguard's capture left a hook after the forward pass raised"


def check_rejects_out_of_catalogue_ids(make):
    """Item ids outside 0..num_items raise a recguard error that names the valid range."""
    data = _data_for(make())
    v = _fitted(make, data)
    try:
        v.score(np.array([[1, v.num_items + 5]]))
    except RecguardError as exc:
        assert str(v.num_items) in str(exc), f"the error should name the valid range: {exc}"
        return
    except Exception as exc:
        raise AssertionError(f"an out-of-catalogue id raised {type(exc).__name__} ({exc}); expected a recguard ConfigError") from None
    raise AssertionError("an out-of-catalogue item id was scored without error")


# ---------------------------------------------------------------- the white-box surface
def _scale(t: torch.Tensor) -> float:
    return max(1.0, float(t.abs().max()))


def check_representation_consistent_with_score(make):
    """score(x) equals score_representation(representation(x)): the representation is the state
    the scores are computed from (probes splice edited states through score_representation)."""
    data = _data_for(make())
    v = _fitted(make, data)
    x = _inputs(v, data)
    rep = v.representation(x)
    assert isinstance(rep, torch.Tensor) and rep.dim() == 2 and rep.shape[0] == len(x), \
        f"representation() must return [B, D], got {tuple(getattr(rep, 'shape', ()))}"
    with torch.no_grad():
        again = v.score_representation(rep)
    s = v.score(x)
    diff = float((s[:, 1:] - again[:, 1:].to(s)).abs().max())
    assert diff <= 1e-4 * _scale(s[:, 1:]), (f"score(x) and score_representation(representation(x)) differ by up to {diff:.3g}: "
                                             "representation() is not the state the scores come from")


def check_item_embeddings_shape(make):
    """item_embeddings() is [num_items + 1, D] with the representation's width D."""
    data = _data_for(make())
    v = _fitted(make, data)
    emb = v.item_embeddings()
    d = v.representation(_inputs(v, data)[:1]).shape[1]
    assert isinstance(emb, torch.Tensor) and tuple(emb.shape) == (v.num_items + 1, d), \
        f"item_embeddings() shape {tuple(getattr(emb, 'shape', ()))} != (num_items + 1, D) = ({v.num_items + 1}, {d})"


def check_gradients_reach_input_embeddings(make):
    """The scores are differentiable with respect to the output of input_embedding_layer(), and the
    gradient reaches every row's most recent item (what gradient attacks and captum use)."""
    from ..victims import eval_mode
    from ..victims import capture

    data = _data_for(make())
    v = _fitted(make, data)
    x = torch.from_numpy(_inputs(v, data)).to(v.device)
    layer = v.input_embedding_layer()
    with eval_mode(v), torch.enable_grad(), capture(layer) as box:
        scores = v.differentiable_score(x)
        e = box.last
        assert isinstance(e, torch.Tensor) and e.requires_grad, \
            "input_embedding_layer()'s output does not carry gradients to the scores (is it detached?)"
        (g,) = torch.autograd.grad(scores[:, 1:].logsumexp(1).sum(), e, allow_unused=True)
    assert g is not None, "the scores do not depend on input_embedding_layer()'s output"
    ids = box.inputs[-1][0]
    assert ids.dim() == 2 and ids.shape[0] == len(x), (f"input_embedding_layer() must embed the id sequence itself ([B, L] ids), "
                                                      f"it saw ids of shape {tuple(ids.shape)}; embed x first, then reshape")
    for row, hist in zip(ids.tolist(), x.tolist()):
        seen = [i for i in row if 1 <= i <= v.num_items]
        want = [i for i in hist if i > 0]
        assert seen and seen == want[-len(seen):], "input_embedding_layer() does not see the history ids in chronological order"
    real = ((ids >= 1) & (ids <= v.num_items)).to(torch.int8)
    col = ids.shape[1] - 1 - real.flip(1).argmax(1)
    reach = g[torch.arange(len(col), device=g.device), col].abs().sum(-1)
    assert bool((reach > 0).all()), "no gradient reaches the most recent item's input embedding in some rows"


def check_hidden_states(make):
    """hidden_states(x) is [B, L, D]; a causal victim's states at a position do not depend on later items."""
    from ..victims import eval_mode

    data = _data_for(make())
    v = _fitted(make, data)
    x = torch.from_numpy(_inputs(v, data)).to(v.device)
    with eval_mode(v), torch.no_grad():
        h = v.hidden_states(x)
        assert isinstance(h, torch.Tensor) and h.dim() == 3 and tuple(h.shape[:2]) == tuple(x.shape), \
            f"hidden_states(x) shape {tuple(getattr(h, 'shape', ()))} != (B, L, D) with (B, L) = {tuple(x.shape)}"
        if getattr(v, "causal", False):
            changed = x.clone()
            changed[:, -1] = changed[:, -1] % v.num_items + 1  # another item at the last position
            h2 = v.hidden_states(changed)
            diff = float((h2[:, :-1] - h[:, :-1]).abs().max())
            assert diff <= 1e-5 * _scale(h), (f"declared causal, but changing the last item moved earlier states by {diff:.3g}; "
                                              "declare causal=False")


def check_epoch_callback_honoured(make):
    """fit(on_epoch_end=...) calls the callback after every epoch (1, 2, ...) with the victim; the user
    weights it returns change the following epochs; STOP ends training."""
    from ..victims import STOP

    data = _data_for(make())
    n = data.split().train.num_users
    calls: list = []

    def record(epoch, victim):
        calls.append((epoch, victim))

    base = make()
    base.fit(data, rng=1, on_epoch_end=record)
    epochs = [e for e, _ in calls]
    assert epochs and epochs == list(range(1, len(epochs) + 1)), f"on_epoch_end was called with epochs {epochs}, not 1, 2, ..."
    assert all(vic is base for _, vic in calls), "on_epoch_end must receive the victim being trained"
    assert len(epochs) >= 2, "fit ran one epoch only: the check needs at least two to see weights act on the next one"
    w = np.zeros(n)
    w[: max(1, n // 4)] = 1.0
    moved = make().fit(data, rng=1, on_epoch_end=lambda e, vic: w if e == 1 else None)
    x = _inputs(base, data)
    diff = float((base.score(x)[:, 1:] - moved.score(x)[:, 1:]).abs().max())
    assert diff > 1e-6, "user weights returned by on_epoch_end did not change the following epochs"
    calls.clear()
    make().fit(data, rng=1, on_epoch_end=lambda e, vic: (record(e, vic), STOP)[1])
    assert [e for e, _ in calls] == [1], f"training went on after on_epoch_end returned STOP (epochs {[e for e, _ in calls]})"


def check_item_weights_honoured(make):
    """fit(item_weights=1) equals fit(); skewed item weights change the model."""
    data = _data_for(make())
    base = _fitted(make, data, seed=1)
    ones = _fitted(make, data, seed=1, item_weights=np.ones(data.num_items + 1))
    x = _inputs(base, data)
    diff = float((base.score(x)[:, 1:] - ones.score(x)[:, 1:]).abs().max())
    assert diff <= 1e-5, f"item_weights of all ones changed the model (max |diff| = {diff:.3g})"
    w = np.ones(data.num_items + 1)
    w[1 : data.num_items // 2] = 0.0
    moved = float((base.score(x)[:, 1:] - _fitted(make, data, seed=1, item_weights=w).score(x)[:, 1:]).abs().max())
    assert moved > 1e-6, "zero weight for half the items left the model unchanged: item_weights are ignored"


def check_adversarial_training_honoured(make):
    """fit(adversarial=(eps, lam)) trains differently from plain fit with the same seed (APR is applied)."""
    data = _data_for(make())
    base = _fitted(make, data, seed=1)
    adv = _fitted(make, data, seed=1, adversarial=(0.5, 1.0))
    x = _inputs(base, data)
    diff = float((base.score(x)[:, 1:] - adv.score(x)[:, 1:]).abs().max())
    assert diff > 1e-6, "fit(adversarial=...) gave the same model as plain fit: the adversarial term is ignored"


def _capability_checks() -> dict[str, tuple[Callable, ...]]:
    from ..victims import CAPABILITY_TABLE

    return {c.name: tuple(globals()[name] for name in c.checks) for c in CAPABILITY_TABLE if c.checks}


#: contract checks run for each capability a victim declares (read from the capability table)
CAPABILITY_CHECKS: dict[str, tuple[Callable, ...]] = _capability_checks()


def checks_for(victim) -> list[Callable]:
    """The base checks plus those of every capability ``victim`` (instance or factory) declares."""
    from ..victims import capabilities

    have = capabilities(_factory(victim)())
    return list(CHECKS) + [c for cap, cs in CAPABILITY_CHECKS.items() if cap in have for c in cs]


CHECKS: tuple[Callable, ...] = (
    check_score_shape_and_padding,
    check_recommend_excludes_seen,
    check_deterministic_under_seed,
    check_batch_invariance,
    check_save_load_roundtrip,
    check_user_weights_honoured,
    check_inputs_not_mutated,
    check_hooks_cleaned_up,
    check_rejects_out_of_catalogue_ids,
)


def check_victim(victim, checks: Iterable[Callable] | None = None) -> None:
    """Run every contract check that applies to ``victim`` (instance or factory): the base checks and
    those of each capability it declares; or only ``checks``. The first failure raises."""
    make = _factory(victim)
    for check in checks_for(victim) if checks is None else checks:
        check(make)


def parametrize_with_checks(victims: list, checks: Iterable[Callable] | None = None):
    """A ``pytest.mark.parametrize("victim, check", ...)`` decorator: one test per (victim, check).

    >>> @parametrize_with_checks([SASRec(epochs=2, hidden=16), make_my_torch_victim])   # doctest: +SKIP
    ... def test_contract(victim, check):
    ...     check(victim)
    """
    import pytest

    params, ids = [], []
    for v in victims:
        make = _factory(v)
        for check in checks_for(v) if checks is None else checks:
            params.append((make, check))
            ids.append(f"{victim_id(v)}-{check.__name__}")
    return pytest.mark.parametrize("victim, check", params, ids=ids)
