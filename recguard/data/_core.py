"""Core data types: :class:`SequenceData` (immutable user sequences), :class:`ItemMeta`, :class:`Split`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DataError

__all__ = ["ItemMeta", "SequenceData", "Split", "pad_sequences", "as_split"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.copy() if a.base is not None else a
        a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ItemMeta:
    """Optional item metadata, aligned with item ids: entry ``i`` describes item ``i`` (entry 0 = padding).

    Attributes:
        titles: ``num_items + 1`` strings ("" where unknown).
        genres: ``num_items + 1`` tuples of category/genre names.
        years: ``num_items + 1`` release years (0 where unknown).
    """

    titles: tuple[str, ...] | None = None
    genres: tuple[tuple[str, ...], ...] | None = None
    years: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.years is not None:
            object.__setattr__(self, "years", _frozen(np.asarray(self.years, dtype=np.int32)))

    def __len__(self) -> int:
        for part in (self.titles, self.genres, self.years):
            if part is not None:
                return len(part)
        return 0

    @property
    def has_titles(self) -> bool:
        return self.titles is not None and any(self.titles[1:])

    @property
    def has_genres(self) -> bool:
        return self.genres is not None and any(self.genres[1:])

    def take(self, index: np.ndarray) -> ItemMeta:
        """Metadata re-aligned to new item ids: new item ``j`` takes old item ``index[j]``."""
        return ItemMeta(
            titles=None if self.titles is None else tuple(self.titles[i] for i in index),
            genres=None if self.genres is None else tuple(self.genres[i] for i in index),
            years=None if self.years is None else np.asarray(self.years)[index],
        )

    def update_digest(self, h: hashlib._Hash) -> None:
        if self.titles is not None:
            h.update("\x1f".join(self.titles).encode())
        if self.genres is not None:
            h.update("\x1e".join("\x1f".join(g) for g in self.genres).encode())
        if self.years is not None:
            h.update(np.ascontiguousarray(self.years, dtype=np.int32).tobytes())


@dataclass(frozen=True, eq=False)
class SequenceData:
    """Users' chronological item sequences, immutable.

    Items are ``1..num_items``; ``0`` is padding and never appears in a sequence.
    Storage is CSR-like: ``items[offsets[u]:offsets[u+1]]`` is user ``u``'s sequence,
    oldest first. Arrays are read-only; every transformation returns a new object.

    Attributes:
        items: concatenated sequences, int64, values in ``1..num_items``.
        offsets: ``num_users + 1`` int64 boundaries.
        num_items: size of the item catalogue ``N``.
        user_ids: external user ids (strings), one per user.
        item_ids: external id of each item, ``num_items + 1`` strings (entry 0 = "").
        meta: optional :class:`ItemMeta`.
        name: a short dataset name for reports.
    """

    items: np.ndarray
    offsets: np.ndarray
    num_items: int
    user_ids: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    meta: ItemMeta | None = None
    name: str = "custom"
    _fp: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items):
            raise DataError("offsets must start at 0 and end at len(items)")
        if np.any(np.diff(offsets) < 0):
            raise DataError("offsets must be non-decreasing")
        n = int(self.num_items)
        if len(items) and (items.min() < 1 or items.max() > n):
            bad = items[(items < 1) | (items > n)][0]
            raise DataError(f"item id {int(bad)} outside 1..{n} (0 is reserved for padding)")
        object.__setattr__(self, "items", _frozen(items))
        object.__setattr__(self, "offsets", _frozen(offsets))
        object.__setattr__(self, "num_items", n)
        nu = len(offsets) - 1
        uids = tuple(str(u) for u in self.user_ids) if self.user_ids else tuple(str(u) for u in range(1, nu + 1))
        if len(uids) != nu:
            raise DataError(f"user_ids has {len(uids)} entries for {nu} users")
        object.__setattr__(self, "user_ids", uids)
        iids = tuple(str(i) for i in self.item_ids) if self.item_ids else ("",) + tuple(str(i) for i in range(1, n + 1))
        if len(iids) != n + 1:
            raise DataError(f"item_ids has {len(iids)} entries, expected num_items + 1 = {n + 1} (entry 0 is padding)")
        object.__setattr__(self, "item_ids", iids)
        if self.meta is not None and len(self.meta) not in (0, n + 1):
            raise DataError(f"item metadata has {len(self.meta)} rows, expected num_items + 1 = {n + 1}")

    # ------------------------------------------------------------------ basics
    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]] | Mapping[object, Sequence[int]],
        *,
        num_items: int | None = None,
        meta: ItemMeta | None = None,
        item_ids: Sequence[str] | None = None,
        name: str = "custom",
    ) -> SequenceData:
        """Build from in-memory sequences of item ids already in ``1..num_items``.

        ``sequences`` is a list of lists, or a mapping ``user_id -> list``.
        """
        if isinstance(sequences, Mapping):
            user_ids = tuple(str(u) for u in sequences.keys())
            seqs = list(sequences.values())
        else:
            seqs = list(sequences)
            user_ids = ()
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        try:
            items = np.concatenate([_int_ids(s) for s in seqs]) if seqs else np.zeros(0, np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"sequences must contain integer item ids: {exc}") from None
        if num_items is None:
            num_items = int(items.max()) if len(items) else 0
        return cls(items, offsets, int(num_items), user_ids=user_ids, item_ids=tuple(item_ids or ()), meta=meta, name=name)

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.num_users

    def __getitem__(self, u: int) -> np.ndarray:
        if not -self.num_users <= u < self.num_users:
            raise IndexError(f"user index {u} out of range for {self.num_users} users")
        u %= self.num_users
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for u in range(self.num_users):
            yield self.items[self.offsets[u] : self.offsets[u + 1]]

    def __repr__(self) -> str:
        return (
            f"SequenceData(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"interactions={self.num_interactions}, meta={'yes' if self.meta is not None else 'no'})"
        )

    def item_counts(self) -> np.ndarray:
        """Interaction count per item id (length ``num_items + 1``; entry 0 is 0)."""
        return np.bincount(self.items, minlength=self.num_items + 1)

    def holdings(self):
        """The binary user × item matrix (``scipy.sparse`` CSR, float64 ``[num_users, num_items]``;
        column ``i - 1`` is item ``i``): 1 where the user holds the item, however often."""
        from scipy import sparse

        rows = np.repeat(np.arange(self.num_users), self.lengths)
        x = sparse.csr_matrix((np.ones(len(self.items)), (rows, self.items - 1)), shape=(self.num_users, self.num_items))
        x.sum_duplicates()
        x.data[:] = 1.0
        return x

    def fingerprint(self) -> str:
        """SHA-256 content hash (sequences, catalogue, ids, metadata); used to prove nothing was mutated."""
        if self._fp:
            return self._fp[0]
        h = hashlib.sha256()
        h.update(f"recguard-seqdata-v1|{self.num_items}|".encode())
        h.update(self.offsets.tobytes())
        h.update(self.items.tobytes())
        h.update("\x1f".join(self.user_ids).encode())
        h.update("\x1f".join(self.item_ids).encode())
        if self.meta is not None:
            self.meta.update_digest(h)
        digest = h.hexdigest()
        self._fp.append(digest)
        return digest

    def stats(self) -> dict:
        lengths = self.lengths
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / max(1, self.num_users * self.num_items),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "has_titles": bool(self.meta is not None and self.meta.has_titles),
            "has_genres": bool(self.meta is not None and self.meta.has_genres),
            "fingerprint": self.fingerprint(),
        }

    # --------------------------------------------------------- transformations
    def select_users(self, users: Iterable[int] | np.ndarray) -> SequenceData:
        """A new dataset with the given user indices (in the given order); the catalogue is unchanged."""
        idx = np.asarray(list(users) if not isinstance(users, np.ndarray) else users, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_users):
            raise DataError(f"user index out of range 0..{self.num_users - 1}")
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = _ranges(self.offsets[idx], lengths)
        return SequenceData(
            self.items[gather], offsets, self.num_items,
            user_ids=tuple(self.user_ids[i] for i in idx), item_ids=self.item_ids, meta=self.meta, name=self.name,
        )

    def truncate(self, *, drop_last: int = 0) -> SequenceData:
        """Drop the last ``drop_last`` items of every user whose sequence is longer than ``drop_last``."""
        lengths = self.lengths
        new_len = np.where(lengths > drop_last, lengths - drop_last, lengths)
        offsets = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(new_len, out=offsets[1:])
        gather = _ranges(self.offsets[:-1], new_len)
        return SequenceData(
            self.items[gather], offsets, self.num_items,
            user_ids=self.user_ids, item_ids=self.item_ids, meta=self.meta, name=self.name,
        )

    def append_users(self, sequences: Sequence[Sequence[int]], user_ids: Sequence[str] | None = None) -> SequenceData:
        """A new dataset with extra users appended at the end (e.g. injected fake users)."""
        extra = SequenceData.from_sequences(list(sequences), num_items=self.num_items)
        uids = tuple(user_ids) if user_ids is not None else tuple(f"added_{i}" for i in range(extra.num_users))
        offsets = np.concatenate([self.offsets, self.offsets[-1] + extra.offsets[1:]])
        return SequenceData(
            np.concatenate([self.items, extra.items]), offsets, self.num_items,
            user_ids=self.user_ids + uids, item_ids=self.item_ids, meta=self.meta, name=self.name,
        )

    def split(self) -> Split:
        """Leave-one-out split (PROTOCOLS §1): last item = test, second-to-last = validation, rest = train.

        Users with fewer than 3 interactions are kept for training only.
        """
        return Split.leave_one_out(self)

    def padded(self, max_len: int, users: np.ndarray | None = None) -> np.ndarray:
        """Left-padded ``[U, max_len]`` int64 matrix of the most recent ``max_len`` items per user."""
        idx = np.arange(self.num_users) if users is None else np.asarray(users, dtype=np.int64)
        return pad_from_csr(self.items, self.offsets[idx], self.lengths[idx], max_len)


@dataclass(frozen=True, eq=False)
class Split:
    """Leave-one-out views of a :class:`SequenceData`.

    Attributes:
        full: the dataset the split came from.
        train: training sequences (full sequence minus the last two items for users with ≥ 3).
        eval_users: indices of users that have a validation and a test item.
        valid_target / test_target: the held-out items of ``eval_users``.
    """

    full: SequenceData
    train: SequenceData
    eval_users: np.ndarray
    valid_target: np.ndarray
    test_target: np.ndarray

    @classmethod
    def leave_one_out(cls, data: SequenceData) -> Split:
        lengths = data.lengths
        eval_users = np.flatnonzero(lengths >= 3)
        ends = data.offsets[1:]
        train = data.truncate(drop_last=2)  # users with < 3 interactions keep everything
        return cls(
            full=data,
            train=train,
            eval_users=_frozen(eval_users),
            valid_target=_frozen(data.items[ends[eval_users] - 2]),
            test_target=_frozen(data.items[ends[eval_users] - 1]),
        )

    def with_train(self, train: SequenceData) -> Split:
        """The same evaluation (users, targets) with another training set, e.g. the clean
        training data plus injected fake users. Fake users only ever enter training."""
        if train.num_items != self.full.num_items:
            raise DataError(f"the new training data has {train.num_items} items, the split {self.full.num_items}")
        return Split(self.full, train, self.eval_users, self.valid_target, self.test_target)

    def inputs(self, which: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(padded input sequences [E, max_len], targets [E])`` for ``which`` in {"valid", "test"}.

        Validation input = the training part; test input = training part + validation item.
        """
        starts, lengths = self._before_held_out(which, self.eval_users)
        targets = self.valid_target if which == "valid" else self.test_target
        return pad_from_csr(self.full.items, starts, lengths, max_len), np.array(targets)

    def history(self, which: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Left-padded ``[R, W]`` matrix of every item each evaluated user had before the held-out item
        of ``which`` ("valid": the training part; "test": it and the validation item), for the rows
        ``rows`` of :meth:`inputs` (default: all), ``W`` the longest of those histories. Unlike
        :meth:`inputs`, nothing is cut at a model's ``max_len``: these are the items full-ranking
        evaluation masks ("filter seen")."""
        users = self.eval_users if rows is None else self.eval_users[np.asarray(rows, dtype=np.int64)]
        starts, lengths = self._before_held_out(which, users)
        return pad_from_csr(self.full.items, starts, lengths, max(1, int(lengths.max(initial=0))))

    def _before_held_out(self, which: str, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of ``users`` starts in ``full`` and how many items it had before its ``which``
        held-out item (the validation item is second to last, the test item last)."""
        if which not in ("valid", "test"):
            raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
        d = self.full
        return d.offsets[users], d.lengths[users] - (2 if which == "valid" else 1)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each (s, l), vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nz = lengths > 0
    starts, lengths = np.asarray(starts, dtype=np.int64)[nz], lengths[nz]
    out = np.ones(total, dtype=np.int64)
    pos = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=pos[1:])
    out[0] = starts[0]
    out[pos[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out)


def pad_from_csr(items: np.ndarray, starts: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Left-padded matrix of the last ``max_len`` items of each ``items[start:start+length]``."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    take = np.minimum(lengths, max_len)
    out = np.zeros((len(starts), max_len), dtype=np.int64)
    if len(starts) == 0:
        return out
    rows = np.repeat(np.arange(len(starts)), take)
    src = _ranges(starts + lengths - take, take)
    col_start = max_len - take
    cols = _ranges(col_start, take)
    out[rows, cols] = items[src]
    return out


def _int_ids(seq) -> np.ndarray:
    """One sequence as int64 ids; floats, booleans and other objects are refused, not truncated."""
    a = np.asarray(seq)
    if a.ndim > 1:
        raise TypeError("got nested lists")
    if a.size and not (np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
        raise TypeError(f"got {a.dtype} values")
    return a.astype(np.int64).reshape(-1)


def pad_sequences(sequences: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """Left-pad (with 0) and truncate to the most recent ``max_len`` items: ``[B, max_len]`` int64."""
    try:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        items = np.concatenate([_int_ids(s) for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        from ..errors import ConfigError

        raise ConfigError(f"sequences must be lists of integer item ids (0 = padding): {exc}", param="seqs") from None
    starts = np.zeros(len(sequences), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:]) if len(sequences) > 1 else None
    return pad_from_csr(items, starts, lengths, max_len)


def as_split(data: SequenceData | Split) -> Split:
    """``data`` itself when it is a :class:`Split`, else its leave-one-out split."""
    if isinstance(data, Split):
        return data
    if isinstance(data, SequenceData):
        return data.split()
    from ..errors import ConfigError

    raise ConfigError(f"expected a SequenceData or Split, got {type(data).__name__}", param="data")
