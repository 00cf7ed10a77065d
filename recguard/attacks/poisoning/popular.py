"""Popular / bandwagon attack: a share of fillers from the most popular items."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ._base import FillerAttack, draw_without_replacement, non_targets


class PopularAttack(FillerAttack):
    """Bandwagon fake users (Burke et al. 2005): ``popular_share`` of the fillers (default 0.5)
    come from the top ``top_fraction`` (10%) most popular non-target items, the rest uniform.

    Popularity is counted on the data the attack is applied to (the training data).
    """

    name = "popular"

    def __init__(self, *, popular_share: float = 0.5, top_fraction: float = 0.1, **kw):
        super().__init__(**kw)
        if not 0.0 <= popular_share <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {popular_share!r}", param="popular_share")
        if not 0.0 < top_fraction <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {top_fraction!r}", param="top_fraction")
        self.popular_share = float(popular_share)
        self.top_fraction = float(top_fraction)

    def _draw_fillers(self, data, targets, slots, holes, rng):
        pool = non_targets(data, targets)
        counts = data.item_counts()[pool]
        top = pool[np.argsort(-counts, kind="stable")[: max(1, int(np.ceil(self.top_fraction * len(pool))))]]
        n_pop = int(round(self.popular_share * len(holes)))
        popular = draw_without_replacement(top, n_pop, rng)
        rest_pool = pool[~np.isin(pool, popular)]
        rest = draw_without_replacement(rest_pool, len(holes) - n_pop, rng)
        fill = np.concatenate([popular, rest])
        return rng.permutation(fill)
