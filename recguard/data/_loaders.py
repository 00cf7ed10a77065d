"""File loaders: SASRec ``user item`` lines, RecBole atomic files, CSV/TSV, MovieLens raw files.

All loaders end in :func:`build_dataset`, which applies the optional rating
threshold and k-core filter, orders each user's interactions chronologically
(timestamp, then file order as a stable tie-break), and re-indexes items to
``1..N``. Bad input raises :class:`recguard.errors.DataError` naming file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from pathlib import Path
from collections.abc import Mapping

import numpy as np

from .._io import read_regular_file
from ..errors import DataError
from ._core import ItemMeta, SequenceData

__all__ = [
    "build_dataset",
    "read_user_item",
    "read_recbole",
    "read_csv",
    "read_item_table",
    "read_movielens_raw",
]

_YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})\)\s*$")


# --------------------------------------------------------------------------- low level
def _read_bytes(path: str | Path) -> bytes:
    """A data file's bytes: a regular file only (a FIFO would hang), gunzipped when compressed,
    a UTF-8 byte-order mark dropped, and CR-only or CRLF line endings turned into LF."""
    path = Path(path)
    raw = read_regular_file(path, DataError, what="data file")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt gzip file ({exc})", path=path) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def _line_of(raw: bytes, pos: int) -> int:
    return raw.count(b"\n", 0, pos) + 1


def _read_table(path: str | Path, sep: str, header: bool, encoding: str = "utf-8") -> tuple[list[str], list[list[str]], list[int]]:
    """Rows of a delimited file (multi-character separators allowed). Returns (header, rows, line numbers)."""
    raw = _read_bytes(path)
    nul = raw.find(b"\x00")
    if nul >= 0:  # csv would pass it through into an id: a binary, UTF-16 or corrupted file
        raise DataError("holds a NUL byte (\\x00); is it a binary, UTF-16 or corrupted file? Save it as UTF-8 text",
                        path=path, line=_line_of(raw, nul))
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if len(sep) > 1:
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    # quotes are honoured in CSV only; other separators take every character literally
    quoting = {"quotechar": '"'} if sep == "," else {"quoting": csv.QUOTE_NONE}
    reader = csv.reader(io.StringIO(text), delimiter=sep, **quoting)
    names: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header and not names:
            names = [c.strip() for c in row]
            continue
        rows.append(row)
        lines.append(reader.line_num)
    if header and not names:
        raise DataError("file is empty (no header line)", path=path)
    width = len(names) if header else (len(rows[0]) if rows else 0)
    for row, ln in zip(rows, lines):
        if len(row) != width:
            raise DataError(f"malformed line: expected {width} fields separated by {sep!r}, found {len(row)}", path=path, line=ln)
    return names, rows, lines


def _column(path, names: list[str], rows: list[list[str]], name: str) -> list[str]:
    if name not in names:
        raise DataError(f"unknown column {name!r}; available columns: {', '.join(names)}", path=path)
    j = names.index(name)
    return [r[j].strip() for r in rows]


def _to_float(path, values: list[str], lines: list[int], what: str) -> np.ndarray:
    """Finite numbers, or :class:`DataError` naming the first bad value and its line."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except ValueError:
        for v, ln in zip(values, lines):
            try:
                float(v)
            except ValueError:
                raise DataError(f"{what} {v!r} is not a number", path=path, line=ln) from None
        raise
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{what} {values[bad[0]]!r} is not a finite number", path=path, line=lines[bad[0]])
    return arr


def _ids_array(values: list[str]) -> np.ndarray:
    """Ids as int64 when every id is an integer that fits (numeric order), else as strings (tokens)."""
    arr = np.asarray(values)
    try:
        return arr.astype(np.int64)
    except (ValueError, OverflowError):
        return arr.astype(str)


# --------------------------------------------------------------------------- builder
def check_filters(min_rating, k_core) -> tuple[float | None, int | tuple[int, int] | None]:
    """``min_rating`` a finite number or None; ``k_core`` a positive int, a pair of them, or None."""
    from .._params import check_value
    from ..errors import ConfigError

    min_rating = check_value("min_rating", min_rating, "float | None")
    if isinstance(k_core, (tuple, list)) and len(k_core) == 2:
        pair = tuple(check_value("k_core", k, "int") for k in k_core)
        if min(pair) < 1:
            raise ConfigError(f"both counts must be positive integers, got {k_core!r}", param="k_core")
        return min_rating, pair
    k_core = check_value("k_core", k_core, "int | None")
    if k_core is not None and k_core < 1:
        raise ConfigError(f"must be a positive integer (keep users and items with >= k interactions), got {k_core}", param="k_core")
    return min_rating, k_core



def build_dataset(
    users: np.ndarray,
    items: np.ndarray,
    *,
    timestamps: np.ndarray | None = None,
    ratings: np.ndarray | None = None,
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    item_meta: Mapping[object, tuple[str, tuple[str, ...], int]] | None = None,
    name: str = "custom",
    source: str | Path | None = None,
) -> SequenceData:
    """Interaction arrays → :class:`SequenceData`.

    Args:
        users, items: raw ids, one per interaction (ints or strings).
        timestamps: optional; order within a user is (timestamp, file order). Without
            timestamps, file order is kept.
        ratings / min_rating: keep interactions with ``rating >= min_rating``.
        k_core: keep users and items with at least k interactions (iterated to a fixed
            point); an int or ``(user_k, item_k)``.
        item_meta: ``raw item id -> (title, genres, year)``.
    """
    min_rating, k_core = check_filters(min_rating, k_core)
    users = np.asarray(users)
    items = np.asarray(items)
    n = len(users)
    order = np.arange(n)
    keep = np.ones(n, dtype=bool)
    if min_rating is not None:
        if ratings is None:
            raise DataError("min_rating was given but the data has no rating column", path=source)
        keep &= np.asarray(ratings, dtype=np.float64) >= float(min_rating)
    users, items, order = users[keep], items[keep], order[keep]
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)[keep]
    uniq_u, ucode = np.unique(users, return_inverse=True)
    uniq_i, icode = np.unique(items, return_inverse=True)
    ucode, icode = ucode.reshape(-1), icode.reshape(-1)
    if k_core:
        uk, ik = (k_core, k_core) if isinstance(k_core, int) else k_core
        mask = np.ones(len(ucode), dtype=bool)
        while True:
            uc = np.bincount(ucode[mask], minlength=len(uniq_u))
            ic = np.bincount(icode[mask], minlength=len(uniq_i))
            new = mask & (uc[ucode] >= uk) & (ic[icode] >= ik)
            if new.sum() == mask.sum():
                break
            mask = new
        ucode, icode, order = ucode[mask], icode[mask], order[mask]
        ts = None if ts is None else ts[mask]
    if len(ucode) == 0:
        what = []
        if min_rating is not None:
            what.append(f"min_rating={min_rating}")
        if k_core:
            what.append(f"k_core={k_core}")
        raise DataError(
            "no interactions left" + (f" after filtering ({', '.join(what)}); relax the filters" if what else " (empty input)"),
            path=source,
        )
    # keep only users / items that survived, re-indexed (items to 1..N)
    used_u = np.unique(ucode)
    used_i = np.unique(icode)
    umap = np.full(len(uniq_u), -1, dtype=np.int64)
    umap[used_u] = np.arange(len(used_u))
    imap = np.zeros(len(uniq_i), dtype=np.int64)
    imap[used_i] = np.arange(1, len(used_i) + 1)
    u = umap[ucode]
    it = imap[icode]
    keys = (order,) if ts is None else (order, ts)
    perm = np.lexsort(keys + (u,))
    u, it = u[perm], it[perm]
    counts = np.bincount(u, minlength=len(used_u))
    offsets = np.zeros(len(used_u) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    raw_item_ids = uniq_i[used_i]
    meta = None
    if item_meta is not None:
        titles = [""]
        genres: list[tuple[str, ...]] = [()]
        years = [0]
        for rid in raw_item_ids.tolist():
            t, g, y = item_meta.get(rid, item_meta.get(str(rid), ("", (), 0)))
            titles.append(t)
            genres.append(tuple(g))
            years.append(int(y))
        meta = ItemMeta(titles=tuple(titles), genres=tuple(genres), years=np.asarray(years))
    return SequenceData(
        it, offsets, len(used_i),
        user_ids=tuple(str(x) for x in uniq_u[used_u].tolist()),
        item_ids=("",) + tuple(str(x) for x in raw_item_ids.tolist()),
        meta=meta,
        name=name,
    )


# --------------------------------------------------------------------------- formats
def read_user_item(
    path: str | Path,
    *,
    item_meta: Mapping[object, tuple[str, tuple[str, ...], int]] | None = None,
    k_core: int | tuple[int, int] | None = None,
    name: str | None = None,
) -> SequenceData:
    """Read the SASRec/BERT4Rec format: one ``user item`` pair of integers per line, each user's
    lines in chronological order (gzip-compressed files are read directly)."""
    raw = _read_bytes(path)
    bad = re.search(rb"[^0-9 \t\r\n]", raw)
    if bad is not None:
        ln = _line_of(raw, bad.start())
        line = raw.splitlines()[ln - 1].decode("utf-8", "replace")
        raise DataError(f"expected two integer ids 'user item', got {line!r}", path=path, line=ln)
    if not raw.strip():
        raise DataError("file has no interactions", path=path)
    for m in re.finditer(rb"\d{19,}", raw):  # some numpy versions parse these through float64, silently wrong
        if int(m.group()) >= 2**63:
            raise DataError(f"id {m.group().decode()} is too large (ids in `user item` files must be below 2**63)",
                            path=path, line=_line_of(raw, m.start()))
    try:
        arr = np.loadtxt(io.BytesIO(raw), dtype=np.int64, ndmin=2)
    except ValueError:
        for ln, line in enumerate(raw.splitlines(), 1):
            if line.split() and len(line.split()) != 2:
                raise DataError(f"malformed line: expected 'user item', got {line.decode('utf-8', 'replace')!r}",
                                path=path, line=ln) from None
        raise
    if arr.shape[1] != 2:
        raise DataError(f"malformed lines: expected 2 columns 'user item', found {arr.shape[1]}", path=path, line=1)
    return build_dataset(arr[:, 0], arr[:, 1], item_meta=item_meta, k_core=k_core, name=name or Path(path).name.split(".")[0], source=path)


def read_item_table(
    path: str | Path,
    *,
    id_col: str,
    title_col: str | None = None,
    genre_col: str | None = None,
    genre_sep: str | None = "|",
    year_col: str | None = None,
    sep: str = "\t",
    header: bool = True,
    header_types: bool = False,
) -> dict[str, tuple[str, tuple[str, ...], int]]:
    """Item metadata table → ``raw id -> (title, genres, year)``.

    When ``year_col`` is absent, a trailing ``(YYYY)`` in the title is used as the year
    (MovieLens titles); the title itself is kept as written.
    ``header_types=True`` strips RecBole's ``name:type`` suffixes.
    """
    names, rows, lines = _read_table(path, sep, header)
    if header_types:
        names = [c.split(":")[0] for c in names]
    ids = _column(path, names, rows, id_col)
    titles = _column(path, names, rows, title_col) if title_col else [""] * len(ids)
    genres_raw = _column(path, names, rows, genre_col) if genre_col else [""] * len(ids)
    years_raw = _column(path, names, rows, year_col) if year_col else None
    out: dict[str, tuple[str, tuple[str, ...], int]] = {}
    for k, (rid, title, g) in enumerate(zip(ids, titles, genres_raw)):
        genre_list = tuple(x for x in (g.split(genre_sep) if genre_sep else g.split()) if x)
        year = 0
        if years_raw is not None:
            y = years_raw[k]
            year = int(y) if y.isdigit() else 0
        else:
            m = _YEAR_IN_TITLE.search(title)
            year = int(m.group(1)) if m else 0
        out[rid] = (title, genre_list, year)
    return out


def read_recbole(
    inter_path: str | Path,
    item_path: str | Path | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    rating_col: str | None = "rating",
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    name: str | None = None,
) -> SequenceData:
    """Read RecBole atomic files: ``.inter`` (tab-separated, typed header such as
    ``user_id:token item_id:token rating:float timestamp:float``) and optional ``.item``
    (``item_id:token movie_title:token_seq release_year:token class:token_seq``)."""
    names, rows, lines = _read_table(inter_path, "\t", True)
    base = [c.split(":")[0] for c in names]
    users = _ids_array(_column(inter_path, base, rows, user_col))
    items = _ids_array(_column(inter_path, base, rows, item_col))
    ts = None
    if time_col and time_col in base:
        ts = _to_float(inter_path, _column(inter_path, base, rows, time_col), lines, "timestamp")
    ratings = None
    if rating_col and rating_col in base:
        ratings = _to_float(inter_path, _column(inter_path, base, rows, rating_col), lines, "rating")
    meta = None
    if item_path is not None:
        inames, _, _ = _read_table(item_path, "\t", True)
        ibase = [c.split(":")[0] for c in inames]
        title_col = next((c for c in ibase if "title" in c or c == "name"), None)
        genre_col = next((c for c in ibase if c in ("class", "genre", "genres", "categories")), None)
        year_col = next((c for c in ibase if "year" in c), None)
        meta = read_item_table(
            item_path, id_col=item_col, title_col=title_col, genre_col=genre_col, genre_sep=None,
            year_col=year_col, header_types=True,
        )
    return build_dataset(
        users, items, timestamps=ts, ratings=ratings, min_rating=min_rating, k_core=k_core,
        item_meta=meta, name=name or Path(inter_path).name.split(".")[0], source=inter_path,
    )


def read_csv(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    rating_col: str | None = None,
    sep: str | None = None,
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    item_meta: Mapping[object, tuple[str, tuple[str, ...], int]] | None = None,
    name: str | None = None,
) -> SequenceData:
    """Read a CSV/TSV interaction log with a header line and named columns.

    ``sep`` defaults to tab for ``.tsv``/``.tsv.gz`` files and comma otherwise. Without
    ``time_col``, file order is the chronological order.
    """
    p = Path(path)
    if sep is None:
        sep = "\t" if ".tsv" in p.name or ".tab" in p.name else ","
    names, rows, lines = _read_table(path, sep, True)
    users = _ids_array(_column(path, names, rows, user_col))
    items = _ids_array(_column(path, names, rows, item_col))
    ts = _to_float(path, _column(path, names, rows, time_col), lines, "timestamp") if time_col else None
    if rating_col:
        ratings = _to_float(path, _column(path, names, rows, rating_col), lines, "rating")
    elif min_rating is not None:
        raise DataError("min_rating needs rating_col=... naming the rating column", path=path)
    else:
        ratings = None
    return build_dataset(
        users, items, timestamps=ts, ratings=ratings, min_rating=min_rating, k_core=k_core,
        item_meta=item_meta, name=name or p.name.split(".")[0], source=path,
    )


def _read_ratings(path: Path, sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GroupLens ``user item rating timestamp`` rows without a header."""
    _, rows, lines = _read_table(path, sep, False)
    if not rows or len(rows[0]) < 4:
        raise DataError("expected 4 fields: user, item, rating, timestamp", path=path, line=lines[0] if lines else None)
    cols = list(zip(*rows))
    return (_ids_array(list(cols[0])), _ids_array(list(cols[1])),
            _to_float(path, list(cols[2]), lines, "rating"), _to_float(path, list(cols[3]), lines, "timestamp"))


def read_movielens_raw(
    directory: str | Path, *, min_rating: float | None = None, k_core: int | tuple[int, int] | None = None
) -> SequenceData:
    """Read an unpacked GroupLens archive: ``ml-100k/`` (``u.data``, ``u.item``) or
    ``ml-1m/`` (``ratings.dat``, ``movies.dat``)."""
    d = Path(directory)
    if (d / "u.data").exists():
        users, items, ratings, ts = _read_ratings(d / "u.data", "\t")
        meta = None
        if (d / "u.item").exists():
            genre_names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                           "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                           "Romance", "Sci-Fi", "Thriller", "War", "Western"]
            _, irows, _ = _read_table(d / "u.item", "|", False, encoding="latin-1")
            meta = {}
            for r in irows:
                m = _YEAR_IN_TITLE.search(r[1])
                flags = r[5:5 + len(genre_names)]
                meta[int(r[0])] = (r[1], tuple(g for g, f in zip(genre_names, flags) if f == "1"),
                                   int(m.group(1)) if m else 0)
        return build_dataset(users, items, timestamps=ts, ratings=ratings, min_rating=min_rating, k_core=k_core,
                             item_meta=meta, name="ml-100k", source=d / "u.data")
    if (d / "ratings.dat").exists():
        users, items, ratings, ts = _read_ratings(d / "ratings.dat", "::")
        meta = None
        if (d / "movies.dat").exists():
            _, mrows, _ = _read_table(d / "movies.dat", "::", False, encoding="latin-1")
            meta = {}
            for r in mrows:
                m = _YEAR_IN_TITLE.search(r[1])
                meta[int(r[0])] = (r[1], tuple(x for x in r[2].split("|") if x), int(m.group(1)) if m else 0)
        return build_dataset(users, items, timestamps=ts, ratings=ratings, min_rating=min_rating, k_core=k_core,
                             item_meta=meta, name="ml-1m", source=d / "ratings.dat")
    raise DataError("not a MovieLens directory: expected u.data (ml-100k) or ratings.dat (ml-1m)", path=d)

