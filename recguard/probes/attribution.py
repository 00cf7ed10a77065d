"""Per-history-item attributions of one recommendation (captum LayerIntegratedGradients)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import CapabilityError, ConfigError
from ..victims import eval_mode
from ..victims import require
from ..victims import capture

__all__ = ["attribute"]


def attribute(victim, sequence: Sequence[int], item: int | None = None, *, n_steps: int = 50,
              internal_batch_size: int | None = None) -> dict:
    """How much each history item contributed to ``item``'s score for ``sequence``.

    Integrated gradients on the output of the victim's input embedding layer
    (``victim.input_embedding_layer()``), from a padding
    baseline (every history position embedded as the padding item, the attention mask of the
    real sequence kept) to the real embeddings; a position's contribution is the sum over
    the hidden dimension. ``item`` defaults to the top recommendation (seen items excluded).

    Returns ``{"item", "score", "baseline_score", "items", "contributions", "delta"}``:
    ``items``/``contributions`` are in chronological order (the most recent ``max_len``
    items), and ``delta`` is captum's completeness gap
    (sum of contributions - (score - baseline_score)), which shrinks with ``n_steps``.
    """
    from captum.attr import LayerIntegratedGradients

    require(victim, ["gradients"], who="captum attribution")
    seq = [int(i) for i in sequence]
    if not seq:
        raise ConfigError("the sequence is empty", param="sequence")
    bad = [i for i in seq if not 1 <= i <= victim.num_items]
    if bad:
        raise ConfigError(f"item ids must be in 1..{victim.num_items}; got {bad[:5]}", param="sequence")
    if n_steps < 2:
        raise ConfigError(f"must be >= 2, got {n_steps}", param="n_steps")
    seq = seq[-victim.max_len :]
    x = torch.tensor([seq], dtype=torch.long, device=victim.device)
    layer = victim.input_embedding_layer()
    with eval_mode(victim):
        with torch.no_grad(), capture(layer) as box:
            full = victim.differentiable_score(x)[0]
        if box.inputs[-1][0].dim() != 2:
            raise CapabilityError(f"the input embedding layer saw ids of shape {tuple(box.inputs[-1][0].shape)}: attributions "
                                  "need it applied to the [B, L] id sequence (embed x first, then reshape)")
        ids = box.inputs[-1][0][0].clone()  # the ids the embedding layer saw, in its own layout
        if item is None:
            unseen = full.clone()
            unseen[0] = float("-inf")
            unseen[x[0]] = float("-inf")
            item = int(unseen.argmax())
        if not 1 <= int(item) <= victim.num_items:
            raise ConfigError(f"item must be in 1..{victim.num_items}, got {item}", param="item")
        baseline = torch.zeros_like(x)  # all padding: only the layer's output at the baseline is used

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return victim.differentiable_score(inp)[:, int(item)]

        lig = LayerIntegratedGradients(forward, layer)
        attr = lig.attribute(x, baselines=baseline, n_steps=n_steps, internal_batch_size=internal_batch_size)
        # the score at the baseline: the real ids and mask, with the layer's output as it is for
        # the all-padding ids (zeros, plus BERT4Rec's [MASK] slot), which is what the path starts from
        with torch.no_grad(), capture(layer) as box_b:
            victim.differentiable_score(baseline)
        base_out = box_b.last.detach()
        handle = layer.register_forward_hook(lambda _m, _i, out: base_out.expand_as(out))
        try:
            with torch.no_grad():
                base_score = float(forward(x)[0])
        finally:
            handle.remove()
    per_pos = attr[0].sum(-1).detach().cpu().numpy()  # [L'] in the layer's layout
    ids = ids.cpu().numpy()
    keep = (ids > 0) & (ids <= victim.num_items)
    items = ids[keep].tolist()
    contrib = per_pos[keep].astype(float).tolist()
    if not items or items != seq[-len(items):]:  # the layer may only drop padding, [MASK] and the oldest items
        raise CapabilityError(f"the input embedding layer saw the items {items[:5]}... for the history {seq[:5]}...: it must "
                              "embed the history ids themselves, in order (name that layer with TorchVictim(item_embedding=...))")
    return {"item": int(item), "score": float(full[int(item)]), "baseline_score": base_score,
            "items": items, "contributions": contrib, "sum_contributions": float(np.sum(contrib)),
            # completeness gap against the baseline used here (captum's own delta would run the
            # baseline *ids*, i.e. an all-padding attention mask, which is not this baseline)
            "delta": float(np.sum(contrib) - (float(full[int(item)]) - base_score))}
