"""External attacks: fake users produced by any other tool, read from JSON.

Accepted layouts (item ids in the dataset's internal space 1..N as JSON integers, or its
external ids with ``id_space="external"``):

- recguard / LoRec: ``{"user_data": {"fake_1": [items...], ...}, "target_item": [t1, ...]}``
- a list form: ``{"fake_users": [[items...], ...], "targets": [t1, ...]}``

An injected attack is identified by the file's content (its SHA-256), not its name, so an
audit never reuses results computed from an earlier version of the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..._io import read_regular_file
from ...data import SequenceData
from ...errors import DataError
from ._base import PoisonResult

__all__ = ["InjectedAttack", "file_digest"]


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes; a missing or unreadable file raises :class:`DataError`."""
    return hashlib.sha256(read_regular_file(path, DataError, what="inject file")).hexdigest()


class InjectedAttack:
    """Replays fake users from a file; ``poison(data)`` appends them (the file is validated on load).

    Attributes:
        sha256: hash of the file's bytes as read (what audits key their cells by).
    """

    name = "inject"
    threat_model = "injected"
    revision = None

    def __init__(self, path: str | Path, *, id_space: str = "internal"):
        if id_space not in ("internal", "external"):
            raise DataError(f"id_space must be 'internal' or 'external', got {id_space!r}")
        self.path = Path(path)
        self.id_space = id_space
        raw = read_regular_file(self.path, DataError, what="inject file")
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.fake_sequences, self.target_items, self.fake_ids = _parse(self.path, raw, id_space)
        self.name = f"inject:{self.path.stem}"

    def get_params(self) -> dict:
        return {"path": str(self.path), "id_space": self.id_space, "num_fake_users": len(self.fake_sequences),
                "sha256": self.sha256}

    def requires(self) -> tuple[str, ...]:
        """An injected file needs no model."""
        return ()

    @staticmethod
    def key_part_of(path: str | Path) -> dict:
        """What determines an injected file's fake users in an audit: its content, not its name
        (an edited file is a new attack)."""
        return {"surrogate": None, "inject_sha256": file_digest(path)}

    def check(self, data: SequenceData, *, max_fake_users: int | None = None) -> None:
        """Raise :class:`DataError` unless every item and target exists in ``data``'s catalogue and
        the file holds at most ``max_fake_users`` fake users."""
        if max_fake_users is not None and len(self.fake_sequences) > max_fake_users:
            raise DataError(f"{len(self.fake_sequences)} fake users against {data.num_users} genuine ones; an injected attack may "
                            f"add at most {max_fake_users} (50% of the genuine users, the largest budget recguard audits)",
                            path=self.path)
        for u, s in zip(self.fake_ids, self.fake_sequences):
            self._map(data, s, f"fake user {u!r}")
        self._map(data, self.target_items, "target_item")

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
        bad = [x for x in items if not 1 <= x <= data.num_items]
        if bad:
            raise DataError(
                f"{what}: item id {bad[0]} is outside 1..{data.num_items}; ids must be the dataset's internal "
                "ids (or pass id_space='external' for its original ids)", path=self.path,
            )
        return np.asarray(items, dtype=np.int64)


def _parse(path: Path, raw: bytes, id_space: str) -> tuple[list[list], list, list[str]]:
    """(fake sequences, targets, fake user ids) of an inject file; every problem is a :class:`DataError`."""
    ids, seqs, targets = _layout(path, _read_json(path, raw))
    want = "integers (internal item ids 1..N)" if id_space == "internal" else "integers or strings (external item ids)"

    def ok(x) -> bool:
        if isinstance(x, bool):
            return False
        return isinstance(x, int) or (id_space == "external" and isinstance(x, str))

    if not targets:
        raise DataError("target items: the list is empty", path=path)
    bad = [t for t in targets if not ok(t)]
    if bad:
        raise DataError(f"target items must be {want}; got {bad[0]!r}", path=path)
    for u, s in zip(ids, seqs):
        if not isinstance(s, list) or not s:
            raise DataError(f"fake user {u!r}: expected a non-empty list of items", path=path)
        bad = [x for x in s if not ok(x)]
        if bad:
            raise DataError(f"fake user {u!r}: items must be {want}; got {bad[0]!r}", path=path)
    return seqs, list(targets), ids


def _read_json(path: Path, raw: bytes) -> dict:
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    except (RecursionError, ValueError) as exc:
        raise DataError("JSON nested too deeply" if isinstance(exc, RecursionError) else f"invalid JSON ({exc})", path=path) from None
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object with 'user_data' and 'target_item'", path=path)
    return obj


def _layout(path: Path, obj: dict) -> tuple[list[str], list, list]:
    """(user ids, sequences, targets) of either accepted layout."""
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
    if not isinstance(targets, list):
        targets = [targets]
    if not seqs:
        raise DataError("no fake users in the file", path=path)
    return ids, seqs, targets
