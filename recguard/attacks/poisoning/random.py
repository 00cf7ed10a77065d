"""Random attack: fillers drawn uniformly from the non-target items."""

from __future__ import annotations

from ._base import FillerAttack, draw_without_replacement, non_targets


class RandomAttack(FillerAttack):
    """Fake users whose fillers are uniform random non-target items (Lam & Riedl, WWW'04)."""

    name = "random"

    def _draw_fillers(self, data, targets, slots, holes, rng):
        return draw_without_replacement(non_targets(data, targets), len(holes), rng)
