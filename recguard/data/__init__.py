"""Data: immutable user sequences, loaders, the dataset registry, leave-one-out splits."""

from ._core import ItemMeta, SequenceData, Split, as_split, pad_from_csr, pad_sequences
from ._loaders import build_dataset, read_csv, read_item_table, read_movielens_raw, read_recbole, read_user_item
from ._registry import DEFAULT_DATASET, DatasetInfo, cache_dir, dataset_info, list_datasets, load

__all__ = [
    "ItemMeta", "SequenceData", "Split", "as_split", "pad_sequences", "pad_from_csr",
    "build_dataset", "read_csv", "read_item_table", "read_movielens_raw", "read_recbole", "read_user_item",
    "DEFAULT_DATASET", "DatasetInfo", "cache_dir", "dataset_info", "list_datasets", "load",
]
