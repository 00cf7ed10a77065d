"""Scoped forward hooks: always removed, even when the forward pass raises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class Captured:
    """Holds the outputs a :func:`capture` context saw (most recent last)."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []
        self.inputs: list[tuple] = []

    @property
    def last(self) -> torch.Tensor:
        if not self.outputs:
            raise RuntimeError("the hooked layer was not called")
        return self.outputs[-1]


@contextlib.contextmanager
def capture(layer: nn.Module, *, retain_grad: bool = False) -> Iterator[Captured]:
    """Record ``layer``'s outputs during the block; the hook is removed on exit, exceptions included."""
    box = Captured()

    def hook(_module, _inputs, output):
        if retain_grad and isinstance(output, torch.Tensor) and output.requires_grad:
            output.retain_grad()
        box.inputs.append(_inputs)
        box.outputs.append(output)

    handle = layer.register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()
