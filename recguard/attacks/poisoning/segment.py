"""Segment attack: fillers share a genre/category with the target."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ._base import FillerAttack, draw_without_replacement, non_targets


class SegmentAttack(FillerAttack):
    """Segment fake users (Mobasher et al. 2005): each filler is drawn from the non-target items
    that share a category/genre with the target it follows in the profile (the nearest target
    slot before it, or the first target). Needs item metadata with genres.
    """

    name = "segment"

    def _check(self, data) -> None:
        if data.meta is None or not data.meta.has_genres:
            raise ConfigError(
                "the segment attack needs item genres/categories; load a dataset with item metadata "
                "(e.g. ml-100k, or ml-1m with ml-1m.sas_items.tsv) or choose another attack",
                param="attack",
            )

    def _fill(self, data, slots, targets, rng):
        genres = data.meta.genres
        candidates = non_targets(data, targets)
        segments: dict[int, np.ndarray] = {}
        for t in targets.tolist():
            g = set(genres[t])
            seg = np.array([i for i in candidates.tolist() if g & set(genres[i])], dtype=np.int64)
            segments[t] = seg if len(seg) else candidates  # a target without genres falls back to all items
        out = []
        for s in slots:
            s = s.copy()
            holes = np.flatnonzero(s == 0)
            # the target each hole belongs to: the last target slot before it (else the first target)
            tpos = np.flatnonzero(s != 0)
            owner_idx = np.searchsorted(tpos, holes) - 1
            owners = np.where(owner_idx >= 0, s[tpos[np.maximum(owner_idx, 0)]], s[tpos[0]] if len(tpos) else targets[0])
            for t in np.unique(owners):
                where = holes[owners == t]
                s[where] = draw_without_replacement(segments[int(t)], len(where), rng)
            out.append(s)
        return out
