"""Dataset registry: ``recguard.data.load("ml-100k")`` and friends.

``ml-100k`` is the embedded default: it is read offline from the MovieLens-100k
atomic files that RecBole's wheel carries (``recbole==1.2.1``, installed without its
dependencies by ``make``; recguard never imports RecBole, it only reads the files).
Both MovieLens sets can also be downloaded from GroupLens (MD5-verified, cached
under the user cache directory) on machines with internet access, or read from a
local path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .._io import atomic_write_bytes
from ..errors import DataError
from ._core import SequenceData
from ._loaders import check_filters, read_item_table, read_movielens_raw, read_recbole, read_user_item

__all__ = ["DatasetInfo", "list_datasets", "dataset_info", "load", "cache_dir", "DEFAULT_DATASET"]

DEFAULT_DATASET = "ml-100k"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    url: str
    md5: str
    embedded: bool
    license: str

    def to_dict(self) -> dict:
        return asdict(self)


_REGISTRY = {
    "ml-100k": DatasetInfo(
        name="ml-100k",
        description="MovieLens-100k: 943 users, 1,682 movies, 100,000 ratings with titles, genres, years "
        "(all ratings used as implicit feedback, ordered by timestamp).",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        embedded=True,
        license="GroupLens research licence: research use, no redistribution.",
    ),
    "ml-1m": DatasetInfo(
        name="ml-1m",
        description="MovieLens-1M: 6,040 users, ~3,400-3,700 movies, ~1M ratings. With path=DIR holding "
        "ml-1m.txt.gz (SASRec format) and ml-1m.sas_items.tsv, the standard sequential-recommendation file.",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        embedded=False,
        license="GroupLens research licence: research use, no redistribution.",
    ),
    "amazon-office": DatasetInfo(
        name="amazon-office",
        description="Amazon Office Products (2014, 5-core): 4,905 users, 2,420 items, 53,258 interactions, titles, brands "
        "and category paths; sparse e-commerce. With path=DIR holding amazon-office.inter and .item (RecBole atomic files).",
        url="", md5="", embedded=False,
        license="Amazon review data (McAuley lab, UCSD): research use, no redistribution.",
    ),
    "amazon-beauty": DatasetInfo(
        name="amazon-beauty",
        description="Amazon Beauty (2014, 5-core): 22,363 users, 12,101 items, 198,502 interactions, no titles; a larger "
        "catalogue. With path=DIR holding amazon-beauty.inter (RecBole atomic file).",
        url="", md5="", embedded=False,
        license="Amazon review data (McAuley lab, UCSD): research use, no redistribution.",
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset (name, description, how it is obtained)."""
    return list(_REGISTRY.values())


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; unknown names raise a ``DataError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)} (or pass a file path)") from None


def cache_dir() -> Path:
    """Where downloads and extracted files go: ``$RECGUARD_CACHE`` or the user cache directory."""
    env = os.environ.get("RECGUARD_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("recguard"))


def load(
    name: str = DEFAULT_DATASET,
    path: str | Path | None = None,
    *,
    min_rating: float | None = None,
    k_core: int | tuple[int, int] | None = None,
    download: bool | None = None,
) -> SequenceData:
    """Load a registered dataset by name, or a data file by path.

    Args:
        name: ``"ml-100k"`` (embedded default), ``"ml-1m"``, or a path to a file
            (``.inter`` → RecBole atomic, otherwise ``user item`` lines).
        path: local copy of a registered dataset (file or directory).
        min_rating, k_core: optional filters (see :func:`recguard.data.build_dataset`).
        download: allow downloading from GroupLens when no local copy is found
            (default: yes unless ``RECGUARD_OFFLINE=1``).
    """
    if download is None:
        download = os.environ.get("RECGUARD_OFFLINE", "") not in ("1", "true", "yes")
    if not isinstance(name, (str, os.PathLike)):
        from ..errors import ConfigError

        raise ConfigError(f"must be a dataset name or a path, got {type(name).__name__}", param="dataset")
    name = os.fspath(name)
    min_rating, k_core = check_filters(min_rating, k_core)  # before any file is read
    filters = dict(min_rating=min_rating, k_core=k_core)
    if name not in _REGISTRY:
        p = Path(name)
        if p.exists():
            return _load_path(p, **filters)
        dataset_info(name)  # raises the "unknown dataset" error
    if path is not None:
        return _load_path(Path(path), registered=name, **filters)
    if name == "ml-100k":
        found = _recbole_ml100k()
        if found is not None:
            return read_recbole(found[0], found[1], name="ml-100k", **filters)
    if not _REGISTRY[name].url:  # cannot be downloaded: only a local copy will do
        raise DataError(_offline_hint(name))
    cached = cache_dir() / name
    if (cached / ("u.data" if name == "ml-100k" else "ratings.dat")).exists():
        return read_movielens_raw(cached, **filters)
    if not download:
        raise DataError(_offline_hint(name))
    _download_movielens(name, cached)
    return read_movielens_raw(cached, **filters)


def _offline_hint(name: str) -> str:
    if not _REGISTRY[name].url:
        files = f"{name}.inter" + (f" and {name}.item" if name == "amazon-office" else "")
        return (f"{name} is read from a local copy only: pass path=DIR (CLI: --path DIR), the folder holding {files} "
                f"(RecBole atomic files), e.g. --path ../shared/data/{name}")
    if name == "ml-100k":
        return (
            "ml-100k not found: install RecBole's data files with `pip install --no-deps recbole==1.2.1` "
            "(what `make` does), pass path=DIR (RecBole atomic files or an unpacked GroupLens ml-100k/), "
            f"or allow the download from {_REGISTRY[name].url}"
        )
    return (
        f"{name} not found offline: pass path=DIR holding ml-1m.txt.gz (+ ml-1m.sas_items.tsv) or an unpacked "
        f"GroupLens ml-1m/ (ratings.dat, movies.dat), e.g. --path ../shared/data/ml-1m; with internet access "
        f"it is downloaded from {_REGISTRY[name].url}"
    )


def _recbole_ml100k() -> tuple[Path, Path] | None:
    """Locate RecBole's bundled ML-100k without importing RecBole (its imports need numpy<2)."""
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "dataset_example" / "ml-100k"
        if (d / "ml-100k.inter").exists():
            return d / "ml-100k.inter", d / "ml-100k.item"
    return None


def _load_path(p: Path, *, registered: str | None = None, **filters) -> SequenceData:
    if not p.exists():
        raise DataError("path not found" + (f"; {_offline_hint(registered)}" if registered else ""), path=p)
    if p.is_dir():
        for inter in sorted(p.glob("*.inter")):
            item = inter.with_suffix(".item")
            return read_recbole(inter, item if item.exists() else None, name=registered or inter.stem, **filters)
        if (p / "u.data").exists() or (p / "ratings.dat").exists():
            return read_movielens_raw(p, **filters)
        for cand in ("ml-1m.txt.gz", "ml-1m.txt"):
            if (p / cand).exists():
                return _read_sas_ml1m(p / cand, p / "ml-1m.sas_items.tsv", name=registered or "ml-1m", **filters)
        txts = sorted(p.glob("*.txt")) + sorted(p.glob("*.txt.gz"))
        if len(txts) == 1:
            return _load_path(txts[0], registered=registered, **filters)
        raise DataError(
            "no recognised data in this directory: expected *.inter (RecBole), u.data / ratings.dat "
            "(GroupLens) or a single `user item` .txt[.gz] file", path=p,
        )
    if p.suffix == ".whl":
        return _read_recbole_wheel(p, **filters)
    if p.suffix == ".inter":
        item = p.with_suffix(".item")
        return read_recbole(p, item if item.exists() else None, name=registered or p.stem, **filters)
    if p.suffix in (".csv", ".tsv"):
        raise DataError("CSV/TSV needs column names: use recguard.data.read_csv(path, user_col=..., item_col=...)", path=p)
    if filters.get("min_rating") is not None:
        raise DataError("min_rating needs ratings; `user item` files have none", path=p)
    sas_items = p.parent / (p.name.split(".")[0] + ".sas_items.tsv")
    if sas_items.exists():
        return _read_sas_ml1m(p, sas_items, name=registered or p.name.split(".")[0], **filters)
    return read_user_item(p, k_core=filters.get("k_core"), name=registered)


def _read_sas_ml1m(txt: Path, items_tsv: Path, *, name: str, min_rating=None, k_core=None) -> SequenceData:
    if min_rating is not None:
        raise DataError("min_rating needs ratings; the SASRec `user item` file has none", path=txt)
    meta = None
    if items_tsv.exists():
        meta = {int(k): v for k, v in read_item_table(items_tsv, id_col="sas_item_id", title_col="title",
                                                      genre_col="genres", genre_sep="|").items()}
    return read_user_item(txt, item_meta=meta, k_core=k_core, name=name)


def _read_recbole_wheel(whl: Path, **filters) -> SequenceData:
    out = cache_dir() / "recbole-ml-100k"
    try:
        with zipfile.ZipFile(whl) as zf:
            for member in ("ml-100k.inter", "ml-100k.item"):
                target = out / member
                if not target.exists():
                    atomic_write_bytes(target, zf.read(f"recbole/dataset_example/ml-100k/{member}"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"not a RecBole wheel with dataset_example/ml-100k ({exc})", path=whl) from None
    return read_recbole(out / "ml-100k.inter", out / "ml-100k.item", name="ml-100k", **filters)


def fetch_verified(url: str, digest: str, *, algorithm: str = "md5", what: str = "", hint: str = "") -> bytes:
    """Download ``url`` and return its bytes only if their ``algorithm`` hex digest is ``digest``."""
    import sys
    import urllib.error
    import urllib.request

    try:
        print(f"recguard: downloading {url} ...", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=60) as resp:
            payload = resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(f"could not download {what or url} ({exc}); {hint}") from None
    got = hashlib.new(algorithm, payload).hexdigest()
    if got != digest:
        raise DataError(f"checksum mismatch for {url}: {algorithm} {got}, expected {digest}; not using it")
    return payload


def _download_movielens(name: str, target: Path) -> None:
    info = _REGISTRY[name]
    payload = fetch_verified(info.url, info.md5, what=name, hint=_offline_hint(name))
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for member in zf.namelist():
            fname = Path(member).name
            if member.endswith("/") or not fname:
                continue
            atomic_write_bytes(target / fname, zf.read(member))
