"""Training-data influence (recguard.probes.influence): TracIn over the scoring head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recguard
from recguard.data import SequenceData
from recguard.errors import CapabilityError, ConfigError
from recguard.probes import influence
from conftest import cyclic_data
from test_audit import atomic  # noqa: F401 - the fixture

TARGET = 41  # the planted item: held by the campaign's users only


@pytest.fixture(scope="module")
def planted():
    """Cyclic histories over items 1..40, plus 6 users who alone hold item 41 (the planted answer)."""
    base = cyclic_data(num_users=100, num_items=40, length=12, seed=4)
    seqs = [base[u].tolist() for u in range(base.num_users)]
    rng = np.random.default_rng(0)
    seqs += [[int(x) for x in np.ravel(list(zip(rng.integers(1, 41, 6), [TARGET] * 6, strict=True)))] for _ in range(6)]
    data = SequenceData.from_sequences(seqs, num_items=41)
    split = data.split()
    victim = recguard.SASRec(epochs=12, max_len=12, hidden=16).fit(split, rng=0, keep_checkpoints=3)
    return split, victim, np.arange(100, 106)


def test_the_users_who_alone_hold_the_item_are_its_top_proponents(planted):
    split, victim, campaign = planted
    result = influence(victim, split, TARGET, query_users=np.arange(100))
    assert set(result.top(6).tolist()) == set(campaign.tolist())
    assert (result.scores[campaign] > 0).all() and result.checkpoints == [e for e, _ in victim.checkpoints_]
    assert 1 <= len(result.checkpoints) <= 3 and result.checkpoints[-1] == victim.fit_info_["best_epoch"]
    out = result.to_dict(split.train, k=3)
    assert out["items"] == [TARGET] and len(out["top"]) == 3 and out["top"][0]["user"] in campaign


def test_checkpoints_add_up(planted):
    split, victim, _ = planted
    queries = np.arange(0, 100, 7)
    whole = influence(victim, split, TARGET, query_users=queries).scores
    kept = victim.checkpoints_
    parts = []
    try:
        for checkpoint in kept:
            victim.checkpoints_ = [checkpoint]
            parts.append(influence(victim, split, TARGET, query_users=queries).scores)
    finally:
        victim.checkpoints_ = kept
    np.testing.assert_allclose(whole, np.sum(parts, axis=0), rtol=1e-9, atol=1e-9)
    # each checkpoint's share is kept, and the labelled summary reads them one by one
    traced = influence(victim, split, TARGET, query_users=queries)
    np.testing.assert_allclose(traced.per_checkpoint, np.stack(parts), rtol=1e-9, atol=1e-9)
    found = traced.finds(np.arange(100, 106))
    assert len(found["roc_auc_by_checkpoint"]) == len(kept) and 0.0 <= found["roc_auc_abs"] <= 1.0
    # the victim's own weights come back after tracing
    assert all(torch.equal(kept[-1][1][k], v.cpu()) for k, v in victim.module.state_dict().items())


class _Head(torch.nn.Module):
    """The victim's scoring head as a module of its own: hidden states in, item logits out (padding masked)."""

    def __init__(self, victim):
        super().__init__()
        self.body = victim.module
        self.victim = [victim]

    def forward(self, h):
        logits = self.victim[0].score_representation(h)
        return torch.cat([torch.full_like(logits[:, :1], -1e9), logits[:, 1:]], dim=1)


def test_matches_captum_tracincp_position_by_position(planted, tmp_path):
    """captum's TracInCP on the same examples (one per next-item position, the head's item table as
    its layer) gives the same per-user influence once the positions are added up per user."""
    from captum.influence import TracInCP
    from safetensors.torch import load_file, save_file

    split, victim, _ = planted
    train = split.train
    epoch, state = victim.checkpoints_[-1]
    path = tmp_path / "checkpoint.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    queries = np.arange(0, 100, 9)
    users = np.arange(90, 106)  # some genuine users and the campaign
    kept = victim.checkpoints_
    victim.checkpoints_ = [(epoch, state)]
    try:
        ours = influence(victim, split, TARGET, query_users=queries).scores[users]
    finally:
        victim.checkpoints_ = kept
    lr = float(victim.config.lr)
    width = victim.max_len + 1
    x = torch.from_numpy(recguard.data.pad_from_csr(train.items, train.offsets[users], train.lengths[users], width))
    inp, tgt = x[:, :-1], x[:, 1:]
    keep = (inp > 0) & (tgt > 0)
    with torch.no_grad():
        h_train = victim.hidden_states(inp)[keep]
        h_query = victim.representation([train[u] for u in queries])
    owner = np.broadcast_to(np.arange(len(users))[:, None], keep.shape)[keep.numpy()]
    head = _Head(victim)

    def load(model, p):
        model.body.load_state_dict(load_file(p))
        return lr

    def test_loss(logits, items):  # the traced quantity is the items' score; TracIn's test "loss" is its negative
        return -logits[torch.arange(len(items)), items]

    # per-example losses: captum's per-batch sample-wise gradients only hook Linear and Conv layers, and the head is an Embedding
    tracin = TracInCP(head, torch.utils.data.TensorDataset(h_train, tgt[keep]), [str(path)], checkpoints_load_func=load,
                      layers=["body.item_emb"], loss_fn=lambda logits, y: F.cross_entropy(logits, y, reduction="none"),
                      test_loss_fn=test_loss, batch_size=64)
    per_position = tracin.influence((h_query, torch.full((len(queries),), TARGET)), k=None).sum(0).double().numpy()
    theirs = np.bincount(owner, weights=per_position, minlength=len(users))
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=1e-6 * float(np.abs(theirs).max()))


def test_sign_agreement_says_whether_the_leaders_keep_their_sign_over_training():
    from recguard.probes.influence import sign_agreement

    steady = np.array([[5.0, 1.0, -0.1] + [0.0] * 97, [4.0, 2.0, 0.2] + [0.0] * 97])
    assert sign_agreement(steady, steady.sum(0)) == 1.0  # the top 1 (user 0) is positive at both checkpoints
    flipped = np.array([[5.0] + [0.0] * 99, [-9.0] + [0.0] * 99])  # pushed early, pulled back late: a memorised campaign
    assert sign_agreement(flipped, flipped.sum(0)) == 0.0


def test_bad_requests_are_refused(planted):
    split, victim, _ = planted
    with pytest.raises(ConfigError, match="items"):
        influence(victim, split, 99)
    with pytest.raises(ConfigError, match="query_users"):
        influence(victim, split, TARGET, query_users=[10_000])
    with pytest.raises(ConfigError, match="names no user"):
        influence(victim, split, TARGET, query_users=np.zeros(0, int))
    blackbox = recguard.BlackBoxVictim(victim, k=10)  # top-k lists only
    with pytest.raises(CapabilityError, match="white_box"):
        influence(blackbox, split, TARGET)


def test_the_trainer_keeps_evenly_spaced_checkpoints_ending_with_the_kept_weights():
    from recguard.victims.trainer import CheckpointKeeper

    module = torch.nn.Linear(2, 2)
    keeper = CheckpointKeeper(4)
    for epoch in range(1, 38):
        with torch.no_grad():
            module.weight.fill_(epoch)
        keeper(epoch, module)
    assert len(keeper.kept) <= 8 and keeper.stride == 8  # never more than twice what is asked for
    chosen = keeper.select(30, {"weight": torch.full((2, 2), 30.0), "bias": torch.zeros(2)})
    epochs = [e for e, _ in chosen]
    assert epochs[-1] == 30 and len(epochs) == 4 and epochs == sorted(set(epochs)) and all(e < 30 for e in epochs[:-1])
    assert all(float(state["weight"][0, 0]) == e for e, state in chosen)  # each holds its own epoch's weights
    assert CheckpointKeeper(0).select(5, module.state_dict()) == []
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        recguard.SASRec(epochs=1).fit(cyclic_data(), keep_checkpoints=-1)


def test_the_forensics_command_writes_its_report_and_refuses_unknown_ids(atomic, tmp_path, capsys):  # noqa: F811
    import json

    from recguard.cli import main

    model = tmp_path / "victim"
    assert main(["train", "--dataset", str(atomic), "--out", str(model), "--epochs", "4", "--max-len", "12",
                 "--keep-checkpoints", "2", "--no-progress"]) == 0
    assert (model / "checkpoints.safetensors").exists()
    capsys.readouterr()
    fakes = tmp_path / "injected.txt"
    fakes.write_text("3\n7\n")
    out = tmp_path / "who"
    assert main(["forensics", "--model-dir", str(model), "--item", "5", "--users", "1,2,3,4", "--out", str(out),
                 "--injected", str(fakes), "--show", "10"]) == 0
    report = json.loads((out / "forensics.json").read_text())
    assert report["items"] and report["query_users"] == {str(report["items"][0]): 4} and len(report["checkpoints"]) == 2
    assert len(report["top"]) == 10 and all("injected" in row for row in report["top"])
    page = (out / "forensics.html").read_text()
    assert "Who pushed 5?" in page and "<table>" in page
    assert main(["forensics", "--model-dir", str(model), "--item", "nope", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --item: item 'nope' is not in the training data (ids as written in the data file)"]
    by_size = tmp_path / "by-size"
    assert main(["forensics", "--model-dir", str(model), "--item", "5", "--users", "1,2,3,4", "--out", str(by_size),
                 "--rank", "magnitude", "--show", "10"]) == 0
    sized = json.loads((by_size / "forensics.json").read_text())
    assert sized["ranked_by"] == "magnitude" and report["ranked_by"] == "signed"
    sizes = [abs(row["influence"]) for row in sized["top"]]
    assert sizes == sorted(sizes, reverse=True) and all(len(row["by_checkpoint"]) == 2 for row in sized["top"])
    capsys.readouterr()
    assert main(["forensics", "--model-dir", str(model), "--item", "5", "--out", str(tmp_path / "y"), "--rank", "size"]) == 2
    assert capsys.readouterr().err.strip() == "error: --rank: must be 'signed' or 'magnitude', got 'size'"
    assert not (tmp_path / "y").exists()


def test_an_audit_traces_the_injected_users_of_its_undefended_cells(tmp_path):
    from recguard.audit import AuditSpec, run_audit
    from recguard.audit.cells import cell_key

    spec = AuditSpec(dataset="ml-100k", model="sasrec", model_config={"epochs": 3, "max_len": 12, "hidden": 16},
                     attacks=("random",), budgets=(0.03,), seeds=(0,), defenses=("none", "pca"), forensics=2,
                     targets="popular")  # items the lists show after a short training, so there is something to trace
    res = run_audit(spec, tmp_path / "a", progress=False)
    cells = {c["defense"]: c for c in res["cells"] if c["kind"] == "poisoned"}
    traced = cells["none"]["forensics"]
    assert "forensics" not in cells["pca"] and traced["checkpoints"] and len(traced["checkpoints"]) <= 2
    assert 0 <= traced["recall_top1pct"] <= 1 and traced["traced_items"]
    row = next(r for r in res["summary"] if r["defense"] == "none")
    assert row["forensics"]["cells"] == 1 and row["forensics"]["recall_top1pct"]["mean"] == traced["recall_top1pct"]
    assert "Forensics: who pushed the targets" in (tmp_path / "a" / "report.md").read_text()
    assert "Forensics: who pushed the targets" in (tmp_path / "a" / "report.html").read_text()
    # the option is part of the undefended cells' keys only
    assert "forensics" in cell_key(spec, "poisoned", 0, "random", 0.03, "none")
    assert "forensics" not in cell_key(spec, "poisoned", 0, "random", 0.03, "pca")
    with pytest.raises(ConfigError, match="forensics"):
        AuditSpec(attacks=("random",), forensics=-1)


def test_a_wrapped_model_is_traced_through_the_contract_with_its_final_weights():
    from foreign_models import make_narm

    data = cyclic_data(num_users=80, num_items=30, length=10, seed=2)
    victim = make_narm(num_items=data.num_items, epochs=2, max_len=12).fit(data.split(), rng=0)
    result = influence(victim, data.split(), 5, query_users=np.arange(10))
    assert result.checkpoints == [] and result.scores.shape == (80,) and np.isfinite(result.scores).all()
    assert np.abs(result.scores).max() > 0


def test_saved_checkpoints_that_are_missing_or_diverged_are_refused(planted, tmp_path):
    from safetensors.torch import load_file, save_file

    from recguard.errors import ArtifactError, NonFiniteError

    _, victim, _ = planted
    where = tmp_path / "v"
    victim.save(where)
    assert [e for e, _ in recguard.load(where).checkpoints_] == [e for e, _ in victim.checkpoints_]
    flat = load_file(str(where / "checkpoints.safetensors"))
    name = next(iter(flat))
    flat[name] = torch.full_like(flat[name], float("nan"))
    save_file(flat, str(where / "checkpoints.safetensors"))
    with pytest.raises(NonFiniteError, match="checkpoints.safetensors"):
        recguard.load(where)
    (where / "checkpoints.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing, but config.json lists checkpoints"):
        recguard.load(where)
