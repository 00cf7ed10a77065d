"""External attacks: fake users produced by any other tool, read from JSON.

Accepted layouts (item ids in the dataset's internal space 1..N, or its external ids
with ``id_space="external"``):

- recguard / LoRec: ``{"user_data": {"fake_1": [items...], ...}, "target_item": [t1, ...]}``
- a list form: ``{"fake_users": [[items...], ...], "targets": [t1, ...]}``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...data import SequenceData
from ...errors import DataError
from ._base import PoisonResult


class InjectedAttack:
    """Replays fake users from a file; ``poison(data)`` appends them (the file is validated on load)."""

    name = "inject"

    def __init__(self, path: str | Path, *, id_space: str = "internal"):
        if id_space not in ("internal", "external"):
            raise DataError(f"id_space must be 'internal' or 'external', got {id_space!r}")
        self.path = Path(path)
        self.id_space = id_space
        self.fake_sequences, self.target_items, self.fake_ids = _read(self.path)
        self.name = f"inject:{self.path.stem}"

    def get_params(self) -> dict:
        return {"path": str(self.path), "id_space": self.id_space, "num_fake_users": len(self.fake_sequences)}

    def poison(self, data: SequenceData, *, rng=None) -> PoisonResult:
        seqs = [self._map(data, s, f"fake user {u!r}") for u, s in zip(self.fake_ids, self.fake_sequences)]
        targets = self._map(data, self.target_items, "target_item")
        ids = [f"inject_{u}" for u in self.fake_ids]
        poisoned = data.append_users(seqs, user_ids=ids)
        fake = np.arange(data.num_users, poisoned.num_users, dtype=np.int64)
        meta = {"attack": self.name, "params": self.get_params(), "num_fake_users": len(seqs)}
        return PoisonResult(poisoned, fake, np.unique(targets), meta)

    def _map(self, data: SequenceData, items, what: str) -> np.ndarray:
        if self.id_space == "external":
            index = {iid: i for i, iid in enumerate(data.item_ids) if i}
            missing = [x for x in items if str(x) not in index]
            if missing:
                raise DataError(f"{what}: item {missing[0]!r} is not in the dataset's catalogue", path=self.path)
            return np.array([index[str(x)] for x in items], dtype=np.int64)
        arr = np.asarray(items, dtype=np.int64)
        bad = arr[(arr < 1) | (arr > data.num_items)]
        if len(bad):
            raise DataError(
                f"{what}: item id {int(bad[0])} is outside 1..{data.num_items}; ids must be the dataset's internal "
                "ids (or pass id_space='external' for its original ids)", path=self.path,
            )
        return arr


def _read(path: Path) -> tuple[list[list[int]], list[int], list[str]]:
    if not path.exists():
        raise DataError("file not found", path=path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object with 'user_data' and 'target_item'", path=path)
    if "user_data" in obj:
        ud = obj["user_data"]
        if not isinstance(ud, dict):
            raise DataError("'user_data' must map user ids to item lists", path=path)
        ids, seqs = [str(k) for k in ud], list(ud.values())
        targets = obj.get("target_item")
    elif "fake_users" in obj:
        seqs = obj["fake_users"]
        if not isinstance(seqs, list):
            raise DataError("'fake_users' must be a list of item lists", path=path)
        ids = [str(i) for i in range(len(seqs))]
        targets = obj.get("targets")
    else:
        raise DataError("expected keys 'user_data' + 'target_item' (LoRec layout) or 'fake_users' + 'targets'", path=path)
    if targets is None:
        raise DataError("missing the target items ('target_item' or 'targets')", path=path)
    if isinstance(targets, (int, str)):
        targets = [targets]
    if not seqs:
        raise DataError("no fake users in the file", path=path)
    for u, s in zip(ids, seqs):
        if not isinstance(s, list) or not s:
            raise DataError(f"fake user {u!r}: expected a non-empty list of items", path=path)
        if any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in s):
            raise DataError(f"fake user {u!r}: items must be integers (or strings with id_space='external')", path=path)
    return seqs, list(targets), ids
