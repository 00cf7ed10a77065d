"""Victims that fail on purpose, for the audit backends' tests (imported as MODULE:FACTORY)."""

from __future__ import annotations

import os

from recguard import make_victim
from recguard.victims.gru4rec import GRU4Rec


class _Broken(GRU4Rec):
    def fit(self, *args, **kwargs):
        raise RuntimeError("boom in fit")


class _DiesOnce(GRU4Rec):
    """Kills its own process the first time a poisoned training starts (the marker file
    remembers it across processes), as an out-of-memory kill or a lost node would."""

    marker = ""

    def fit(self, split, *args, **kwargs):
        poisoned = split.train.num_users > self.clean_users
        if poisoned and self.marker and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().fit(split, *args, **kwargs)


def _gru(cls, num_items: int, config: dict) -> GRU4Rec:
    v = make_victim("gru4rec", **config)
    v.__class__ = cls
    v.num_items = num_items  # a factory's victim states its catalogue (the built-in ones learn it in fit)
    return v


def broken(num_items: int, **config) -> GRU4Rec:
    return _gru(_Broken, num_items, config)


def dies_once(num_items: int, marker: str = "", clean_users: int = 0, **config) -> GRU4Rec:
    v = _gru(_DiesOnce, num_items, config)
    v.marker, v.clean_users = marker, clean_users
    return v
