"""Camouflage attack: fake users that copy genuine histories and carry few target slots."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ._base import FillerAttack


class CamouflageAttack(FillerAttack):
    """Each fake user copies the most recent items of a different genuine user (drawn without
    replacement while users last), in their order, and overwrites a share ``target_share`` of
    its positions, drawn at random, with the targets (cycling through them). Its fillers are
    therefore a real user's items *and transitions*, and its targets are a small part of the
    profile: a stealthier family than the filler-based attacks (an obfuscated-profile attack
    in the spirit of Williams et al., "Defending recommender systems: detection of profile
    injection attacks", SOCA 2007, and of fake users built from real profiles as in
    Huang et al., "Data poisoning attacks to deep learning based recommender systems", NDSS'21).

    recguard uses it as a **held-out** family: no defense setting was chosen by looking at it.

    Args (besides the shared ones):
        target_share: share of each profile's positions given to targets (default 0.2), in (0, 0.5].
    """

    name = "camouflage"

    def __init__(self, *, target_share: float = 0.2, **kw):
        super().__init__(**kw)
        if isinstance(target_share, bool) or not isinstance(target_share, (int, float)) or not 0 < float(target_share) <= 0.5:
            raise ConfigError(f"must be a share of the profile in (0, 0.5], got {target_share!r}", param="target_share")
        self.target_share = float(target_share)

    def layout(self, length: int, targets: np.ndarray, n_fake: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Target slots at ``target_share`` of random positions (at least one), cycling the targets."""
        out = []
        n_slots = max(1, int(round(self.target_share * length)))
        for f in range(n_fake):
            mine = targets if self.target_mode == "all" else targets[[f % len(targets)]]
            slots = np.zeros(length, dtype=np.int64)
            pos = np.sort(rng.choice(length, size=min(n_slots, length), replace=False))
            offset = int(rng.integers(len(mine)))  # each fake starts its cycle at a different target
            slots[pos] = np.roll(np.resize(mine, len(pos) + offset), -offset)[: len(pos)]
            out.append(slots)
        return out

    def _fill(self, data, slots, targets, rng):
        donors_pool = np.flatnonzero(data.lengths >= 2)
        if len(donors_pool) == 0:
            raise ConfigError("the camouflage attack needs genuine users with at least 2 items to copy", param="attack")
        donors = rng.choice(donors_pool, size=len(slots), replace=len(slots) > len(donors_pool))
        target_set = set(int(t) for t in targets)
        out = []
        for s, donor in zip(slots, donors):
            s = s.copy()
            holes = np.flatnonzero(s == 0)
            history = [int(i) for i in data[int(donor)] if int(i) not in target_set]
            if not history:  # a donor that only held targets: fall back to any non-target item
                history = [int(rng.integers(1, data.num_items + 1))]
                while history[0] in target_set and len(target_set) < data.num_items:
                    history = [int(rng.integers(1, data.num_items + 1))]
            recent = np.resize(np.asarray(history[-len(holes):], dtype=np.int64), len(holes))
            s[holes] = recent
            out.append(s)
        return out
