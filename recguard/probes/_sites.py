"""Where a probe reads a white-box victim: scoped capture, streaming and splicing.

A *site* is ``"representation"`` (the default: the state that is dotted with the item
embeddings) or one of ``victim.layers()`` whose output is a ``[B, L, D]`` tensor aligned
with the left-padded input (SASRec/BERT4Rec blocks, ``final_norm``, ``item_embedding``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .._rng import RNGLike, as_generator
from ..data import SequenceData
from ..errors import ConfigError
from ..victims import as_batch, eval_mode
from ..victims import capabilities, require
from ..victims import capture

__all__ = ["Site", "REPRESENTATION"]

REPRESENTATION = "representation"


def _tensor_out(output):
    return output[0] if isinstance(output, tuple) else output


class Site:
    """An activation site of a fitted white-box ``victim``.

    ``last(x)`` gives the site's state at the last position ``[B, D]``; ``positions(x)``
    gives the state at every valid position ``[n, D]`` (for causal victims each is the
    state of the prefix ending there); ``scores(x, edit)`` re-scores with the site's
    output replaced by ``edit(output)``.
    """

    def __init__(self, victim, layer: str = REPRESENTATION):
        require(victim, ["white_box"] + ([] if layer == REPRESENTATION else ["layers"]), who="an SAE probe")
        self.victim = victim
        self.layer = layer
        self.arch = getattr(victim, "architecture", type(victim).__name__)
        self.causal = bool(getattr(victim, "causal", False)) and "hidden_states" in capabilities(victim)
        if layer != REPRESENTATION:
            names = victim.layers()
            if layer not in names:
                raise ConfigError(f"unknown layer {layer!r}; valid: {', '.join([REPRESENTATION, *names])}", param="layer")
            self.module_layer = names[layer]

    @property
    def device(self) -> torch.device:
        return self.victim.device

    def batch(self, seqs) -> torch.Tensor:
        return as_batch(seqs, self.victim.max_len, self.victim.num_items).to(self.device)

    @torch.no_grad()
    def last(self, x: torch.Tensor) -> torch.Tensor:
        """Site state at the last position (the one that produces the recommendation) ``[B, D]``."""
        v = self.victim
        with eval_mode(v):
            if self.layer == REPRESENTATION:
                return v.differentiable_representation(x).float()
            with capture(self.module_layer) as box:
                v.differentiable_representation(x)
            return _tensor_out(box.last)[:, -1].float()

    @torch.no_grad()
    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """Site states at every valid position ``[n, D]`` (causal victims with hidden states),
        else the last position."""
        v = self.victim
        if not self.causal:
            return self.last(x)
        with eval_mode(v):
            if self.layer == REPRESENTATION:
                h = v.hidden_states(x)
            else:
                with capture(self.module_layer) as box:
                    v.hidden_states(x)
                h = _tensor_out(box.last)
        return h[x > 0].float()

    @torch.no_grad()
    def prefix_states(self, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        """The probed (last-position) state of *every prefix* of each row of ``x`` ``[n, D]``:
        exactly the distribution the probe reads, at ~L times the cost of :meth:`positions`
        (with SASRec's right-anchored positions, a position's in-sequence state is not its
        prefix's state)."""
        b, l = x.shape
        rows, cols = torch.nonzero(x > 0, as_tuple=True)  # one prefix per valid position, ending there
        shift = (l - 1 - cols)[:, None]
        idx = torch.arange(l, device=x.device)[None] - shift  # prefix right-aligned to column L-1
        pref = torch.where(idx >= 0, x[rows[:, None], idx.clamp_min(0)], torch.zeros_like(idx))
        return torch.cat([self.last(pref[s : s + batch]) for s in range(0, len(pref), batch)])

    @torch.no_grad()
    def scores(self, x: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        """Next-item scores ``[B, N + 1]`` with the site's last-position state replaced by
        ``edit(state)`` (``None`` = unchanged); padding column is ``-inf``."""
        v = self.victim
        with eval_mode(v):
            if self.layer == REPRESENTATION:
                rep = v.differentiable_representation(x)
                out = v.score_representation(edit(rep) if edit is not None else rep)
            else:
                def hook(_m, _inp, output):
                    if edit is None:
                        return None
                    t = _tensor_out(output).clone()
                    t[:, -1] = edit(t[:, -1])
                    return t

                handle = self.module_layer.register_forward_hook(hook)
                try:
                    out = v.score_representation(v.differentiable_representation(x))
                finally:
                    handle.remove()
        out = out.clone()
        out[:, 0] = float("-inf")
        return out

    def stream(self, data: SequenceData, *, batch_users: int = 64, rng: RNGLike = 0, prefixes: bool = False) -> ActivationStream:
        return ActivationStream(self, data, batch_users=batch_users, rng=rng, prefixes=prefixes)


class ActivationStream:
    """Re-iterable stream of ``[n, D]`` activation chunks over ``data``'s users (every valid
    position of each user's last ``max_len`` items, as :meth:`Site.positions` or, with
    ``prefixes=True``, :meth:`Site.prefix_states`), computed batch by batch so the whole
    dataset's activations are never held at once. Each pass visits users in a fresh
    order drawn from ``rng``."""

    def __init__(self, site: Site, data: SequenceData, *, batch_users: int = 64, rng: RNGLike = 0, prefixes: bool = False):
        if data.num_users == 0:
            raise ConfigError("no sequences to probe", param="data")
        self.site, self.data, self.batch_users, self.prefixes = site, data, int(batch_users), bool(prefixes)
        self.rng = as_generator(rng)
        self.max_len = site.victim.max_len

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.rng.permutation(self.data.num_users)
        for s in range(0, len(order), self.batch_users):
            users = np.sort(order[s : s + self.batch_users])
            x = torch.from_numpy(self.data.padded(self.max_len, users)).to(self.site.device)
            yield (self.site.prefix_states(x) if self.prefixes else self.site.positions(x)).cpu()
