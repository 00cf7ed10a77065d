"""Property: whatever bytes or JSON a user hands recguard as a data file, an inject file, a
saved model's config.json, an audit spec or an audit's results.json, the answer is a valid
result or a typed :class:`recguard.errors.RecguardError`, never another exception."""

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recguard
from recguard.audit import AuditSpec
from recguard.audit import rerender
from recguard.errors import RecguardError

from conftest import cyclic_data

# examples per property: 60 in the suite; `HYPOTHESIS_PROFILE=thorough pytest tests/test_bad_input_properties.py` runs 2,000.
# One scratch folder per test function is fine: every example overwrites the files it uses.
settings.register_profile("suite", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=5)),
                           max_leaves=25)


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)


@pytest.fixture(scope="module")
def data():
    return cyclic_data(num_users=30, num_items=12, length=6, seed=2)


# --------------------------------------------------------------------------- data files
line_tokens = st.one_of(st.integers(min_value=-5, max_value=2**66).map(str), st.sampled_from(["a", "", "1.5", "nan", "\t", "x y"]))
lines = st.lists(st.tuples(line_tokens, line_tokens, line_tokens), min_size=0, max_size=8)


@SETTINGS
@given(raw=st.one_of(st.binary(max_size=200), lines.map(lambda rows: "\n".join(" ".join(r[:2]) for r in rows).encode())),
       suffix=st.sampled_from([".txt", ".inter", ".txt.gz"]))
def test_any_bytes_as_a_data_file(raw, suffix, tmp_path):
    p = tmp_path / f"data{suffix}"
    if suffix == ".inter" and raw[:1].isdigit():
        raw = b"user_id:token\titem_id:token\ttimestamp:float\n" + raw.replace(b" ", b"\t")
    p.write_bytes(raw)
    try:
        d = recguard.data.load(str(p))
    except RecguardError:
        return
    assert d.num_interactions > 0 and d.items.min() >= 1 and d.items.max() <= d.num_items


# --------------------------------------------------------------------------- inject files
inject_like = st.fixed_dictionaries({"fake_users": st.lists(st.lists(scalars, max_size=4), max_size=4),
                                     "targets": st.one_of(scalars, st.lists(scalars, max_size=3))})


@SETTINGS
@given(value=st.one_of(json_values, inject_like))
def test_any_json_as_an_inject_file(value, data, tmp_path):
    from recguard.attacks.poisoning import InjectedAttack

    p = tmp_path / "inject.json"
    p.write_text(_dump(value))
    try:
        atk = InjectedAttack(p)
        atk.check(data.split().train, max_fake_users=15)
        res = atk.poison(data.split().train)
    except RecguardError:
        return
    assert res.data.num_users == data.split().train.num_users + len(atk.fake_sequences)


# --------------------------------------------------------------------------- saved models
@pytest.fixture(scope="module")
def saved(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("m") / "gru"
    recguard.make_victim("gru4rec", hidden=8, max_len=6, epochs=1, batch_size=32, eval_every=1, patience=0).fit(data, rng=0).save(out)
    return out


def _mutations(meta: dict):
    keys = st.sampled_from(sorted(meta) + ["config.hidden", "config.max_len", "config.dropout", "config.batching"])
    return st.lists(st.tuples(keys, json_values), min_size=1, max_size=3)


@SETTINGS
@given(data_=st.data())
def test_any_config_json_for_a_saved_model(data_, saved, tmp_path):
    meta = json.loads((saved / "config.json").read_text())
    if data_.draw(st.booleans()):
        new = data_.draw(json_values)
    else:
        new = json.loads(json.dumps(meta))
        for key, val in data_.draw(_mutations(meta)):
            if key.startswith("config."):
                if isinstance(new.get("config"), dict):
                    new["config"][key.split(".", 1)[1]] = val
            else:
                new[key] = val
    d = tmp_path / "m"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(saved, d)
    (d / "config.json").write_text(_dump(new))
    try:
        v = recguard.load(d)
    except RecguardError:
        return
    assert v.recommend([[1, 2, 3]], k=2).shape == (1, 2)


# --------------------------------------------------------------------------- audit specs
spec_keys = st.sampled_from(["dataset", "model", "model_config", "attacks", "attack_params", "budgets", "defenses", "defense_params",
                             "defense_controls", "seeds", "targets", "num_targets", "order", "surrogate", "ks", "extraction",
                             "k_core", "min_rating", "inject", "path", "nonsense"])


@SETTINGS
@given(value=st.one_of(json_values, st.dictionaries(spec_keys, json_values, max_size=5)))
def test_any_table_as_an_audit_spec(value):
    try:
        spec = AuditSpec.from_dict(value)
    except RecguardError:
        return
    assert AuditSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).to_dict() == spec.to_dict()


# --------------------------------------------------------------------------- results.json
@SETTINGS
@given(value=st.one_of(json_values, st.dictionaries(st.sampled_from(["spec", "summary", "clean", "cells", "provenance", "wall_time_s"]),
                                                    json_values, max_size=6).map(lambda d: {**d, "format": "recguard-audit"})))
def test_any_json_as_results(value, tmp_path):
    (tmp_path / "results.json").write_text(_dump(value))
    try:
        rerender(tmp_path)
    except RecguardError:
        return
    assert (Path(tmp_path) / "report.html").exists()
