import json

import numpy as np
import pytest
import torch

import recguard
from recguard.attacks.poisoning import (
    InjectedAttack,
    PopularAttack,
    RandomAttack,
    SegmentAttack,
    SurrogateAttack,
    make_attack,
    select_targets,
)
from recguard.data import ItemMeta, SequenceData
from recguard.errors import CapabilityError, ConfigError, DataError

from conftest import cyclic_data, make


@pytest.fixture(scope="module")
def meta_data():
    base = cyclic_data(num_users=100, num_items=40, length=12, seed=3)
    genres = ((),) + tuple((f"g{i % 4}",) for i in range(1, 41))
    meta = ItemMeta(titles=("",) + tuple(f"item {i}" for i in range(1, 41)), genres=genres, years=np.zeros(41, int))
    return SequenceData(base.items, base.offsets, 40, meta=meta, name="meta")


@pytest.mark.parametrize("cls", [RandomAttack, PopularAttack, SegmentAttack])
def test_heuristic_attacks_append_fakes_and_never_mutate(cls, meta_data):
    fp = meta_data.fingerprint()
    res = cls(budget=0.05, targets=[3, 7]).poison(meta_data, rng=0)
    assert meta_data.fingerprint() == fp
    assert res.data.num_users == 105 and res.fake_users.tolist() == list(range(100, 105))
    assert res.data.select_users(range(100)).fingerprint() == meta_data.select_users(range(100)).fingerprint()
    length = round(meta_data.lengths.mean())
    for seq in res.fake_sequences:
        seq = np.array(seq)
        assert len(seq) == length
        assert seq[::2].tolist() == np.resize([3, 7], len(seq[::2])).tolist()  # interleave: t, a, t, a ...
        assert not set(seq[1::2].tolist()) & {3, 7}
    again = cls(budget=0.05, targets=[3, 7]).poison(meta_data, rng=0)
    assert again.data.fingerprint() == res.data.fingerprint()


def test_orders_and_split_mode(meta_data):
    last = RandomAttack(budget=0.02, targets=[5, 6], order="target_last", profile_length=8).poison(meta_data, rng=1)
    for seq in last.fake_sequences:
        assert seq[-2:] == [5, 6] and not set(seq[:-2]) & {5, 6}
    rnd = RandomAttack(budget=0.02, targets=[5], order="random", profile_length=10).poison(meta_data, rng=1)
    assert all(seq.count(5) == 5 for seq in rnd.fake_sequences)
    split = RandomAttack(budget=0.04, targets=[5, 6], target_mode="split", profile_length=6).poison(meta_data, rng=1)
    assert [sorted(set(s) & {5, 6}) for s in split.fake_sequences] == [[5], [6], [5], [6]]


def test_popular_share(meta_data):
    res = PopularAttack(budget=0.1, targets=[1], popular_share=0.5, profile_length=12).poison(meta_data, rng=0)
    counts = meta_data.item_counts()
    pool = np.setdiff1d(np.arange(1, 41), [1])
    top = set(pool[np.argsort(-counts[pool], kind="stable")][:4].tolist())  # top 10% of 39 items
    for seq in res.fake_sequences:
        fillers = seq[1::2]
        assert sum(f in top for f in fillers) >= 3  # round(0.5 * 6) from the top items


def test_segment_fillers_share_the_targets_genre(meta_data):
    res = SegmentAttack(budget=0.05, targets=[4, 5]).poison(meta_data, rng=0)
    g = meta_data.meta.genres
    for seq in res.fake_sequences:
        for j in range(1, len(seq), 2):
            owner = seq[j - 1]
            assert set(g[seq[j]]) & set(g[owner]), (owner, seq[j])


def test_target_selection():
    d = cyclic_data(num_users=50, num_items=30, noise=0.5)
    counts = d.item_counts()
    t = select_targets(d, "unpopular", 3, np.random.default_rng(0))
    order = np.argsort(counts[1:], kind="stable") + 1
    assert set(t.tolist()) <= set(order[: max(3, int(np.ceil(0.2 * 30)))].tolist())
    p = select_targets(d, "popular", 3, np.random.default_rng(0))
    assert set(p.tolist()) <= set(order[-6:].tolist())
    assert select_targets(d, [5, 2, 5], 1, np.random.default_rng(0)).tolist() == [2, 5]


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(budget=0), "budget"), (dict(budget=0.9), "budget"), (dict(budget=-1), "budget"),
     (dict(targets=[0]), "outside the catalogue"), (dict(targets=[99]), "outside the catalogue"),
     (dict(order="sideways"), "order"), (dict(targets="rare"), "unpopular")],
)
def test_bad_options_are_typed_errors(kwargs, match, tiny):
    with pytest.raises(ConfigError, match=match):
        RandomAttack(**kwargs).poison(tiny, rng=0)


def test_segment_needs_metadata(tiny):
    with pytest.raises(ConfigError, match="genres"):
        SegmentAttack().poison(tiny, rng=0)


def test_unknown_attack():
    with pytest.raises(ConfigError, match="unknown attack"):
        make_attack("sybil")
    assert isinstance(make_attack("bandwagon"), PopularAttack)


def test_surrogate_attack_checks_its_surrogate(tiny):
    with pytest.raises(ConfigError, match="surrogate"):
        SurrogateAttack().poison(tiny, rng=0)
    other = make("sasrec", epochs=1).fit(cyclic_data(num_items=25), rng=0, progress=False)
    with pytest.raises(ConfigError, match="knows 25 items"):
        SurrogateAttack(other).poison(tiny, rng=0)
    with pytest.raises(CapabilityError, match="gradients"):
        SurrogateAttack(recguard.BlackBoxVictim(other, k=5)).poison(cyclic_data(num_items=25), rng=0)


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec", "gru4rec"])
def test_surrogate_fillers_raise_the_target_more_than_random(arch):
    data = cyclic_data(num_users=150, num_items=30, length=12, noise=0.1, seed=1)
    kw = dict(budget=0.05, targets=[9], profile_length=10)
    margins = []
    for seed in (0, 1):  # two surrogates: the size of the margin varies with the training seed
        sur = make(arch, hidden=32, epochs=15, lr=5e-3, dropout=0.1).fit(data, rng=seed, progress=False)
        guided = SurrogateAttack(sur, objective="likelihood", pool_fraction=1.0, candidates=8, **kw).poison(data, rng=0)
        rand = RandomAttack(**kw).poison(data, rng=0)

        def mean_logp(res, sur=sur):
            vals = []
            for seq in res.fake_sequences:
                for j in range(1, len(seq) - 1, 2):  # after filler j comes the target
                    s = sur.score([seq[: j + 1]])
                    vals.append(float(torch.log_softmax(s[0, 1:], 0)[9 - 1]))
            return np.mean(vals)

        margins.append(mean_logp(guided) - mean_logp(rand))
    assert min(margins) > 0.2 and np.mean(margins) > 0.5, margins
    assert data.fingerprint() == cyclic_data(num_users=150, num_items=30, length=12, noise=0.1, seed=1).fingerprint()


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec"])
def test_influence_objective_beats_random_fillers_on_its_own_objective(arch):
    data = cyclic_data(num_users=150, num_items=30, length=12, noise=0.1, seed=2)
    sur = make(arch, hidden=32, epochs=10, lr=5e-3, dropout=0.1).fit(data, rng=0, progress=False)
    kw = dict(budget=0.05, targets=[9], profile_length=10)
    atk = SurrogateAttack(sur, candidates=8, pool_fraction=1.0, **kw)
    guided = atk.poison(data, rng=0)
    rand = RandomAttack(**kw).poison(data, rng=0)

    def mean_objective(res):
        vals = []
        for seq in res.fake_sequences:
            for j in range(1, len(seq) - 1, 2):
                x = recguard.victims.as_batch([seq[: j + 1]], sur.max_len).numpy()
                with torch.no_grad():
                    vals.append(float(atk._objective(x, np.array([9]))))
        return np.mean(vals)

    assert mean_objective(guided) > mean_objective(rand)


def test_inject_round_trip_and_validation(tmp_path, meta_data):
    res = PopularAttack(budget=0.03, targets=[2]).poison(meta_data, rng=0)
    f = tmp_path / "inject_user_popular.json"
    f.write_text(json.dumps(res.to_inject_json()))
    again = InjectedAttack(f).poison(meta_data)
    assert again.fake_sequences == res.fake_sequences and again.targets.tolist() == [2]
    (tmp_path / "list.json").write_text(json.dumps({"fake_users": [[1, 2, 3]], "targets": 3}))
    assert InjectedAttack(tmp_path / "list.json").poison(meta_data).targets.tolist() == [3]
    bad = tmp_path / "bad.json"
    bad.write_text('{"user_data": {"a": [1, 2]},\n "target_item": [1]\n,}')
    with pytest.raises(DataError, match="invalid JSON") as exc:
        InjectedAttack(bad)
    assert exc.value.line == 3
    bad.write_text(json.dumps({"user_data": {"a": [1, 99]}, "target_item": [1]}))
    with pytest.raises(DataError, match="outside 1..40"):
        InjectedAttack(bad).poison(meta_data)
    bad.write_text(json.dumps({"user_data": {"a": [1]}}))
    with pytest.raises(DataError, match="target"):
        InjectedAttack(bad)
    bad.write_text(json.dumps({"users": []}))
    with pytest.raises(DataError, match="user_data"):
        InjectedAttack(bad)
    ext = tmp_path / "ext.json"
    ext.write_text(json.dumps({"user_data": {"x": ["5", "6"]}, "target_item": ["6"]}))
    assert InjectedAttack(ext, id_space="external").poison(meta_data).fake_sequences == [[5, 6]]
