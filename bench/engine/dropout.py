"""Dropout with cheaper random masks on the CPU, swapped in for the length of a training run.

torch's CPU dropout draws one Bernoulli number per element (``bernoulli_``); in the
cpu-profile T5 that was a fifth of a training step's time (24 masks per step), more than
any matrix multiply. :class:`CheapMaskDropout` draws 64 random bits at a time and cuts
them into four 16-bit numbers, one per element: the same kind of mask (each element kept
independently with probability 1 - p, the kept ones scaled by 1 / (1 - p)), with p rounded
to a multiple of 2^-16 (0.1 becomes 0.1000061), at about a third of the cost. It draws from
torch's default generator, whose state the training checkpoints keep, so a resumed run
draws the same masks. Only ``torch.nn.Dropout`` modules are replaced; dropout inside
fused attention (``scaled_dot_product_attention(dropout_p=...)``) is left to torch.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

LEVELS = 1 << 16


class CheapMaskDropout(torch.nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        # Keep an element when its signed 16-bit draw is at least this (P = 1 - p).
        self.threshold = -(LEVELS // 2) + round(p * LEVELS)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden
        n = hidden.numel()
        draws = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=hidden.device)
        keep = draws.view(torch.int16)[:n].view(hidden.shape) >= self.threshold
        # In place on the product, which backward does not need (it keeps only the mask).
        return (hidden * keep).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


@contextlib.contextmanager
def cheap_mask_dropout(model: torch.nn.Module) -> Iterator[int]:
    """Replace the CPU-placed ``torch.nn.Dropout`` modules of ``model`` inside the block
    (yields how many), and put the originals back after it."""
    replaced = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout and child.p < 1.0:
                replaced.append((parent, name, child))
    devices = {parameter.device.type for parameter in model.parameters()}
    if devices != {"cpu"}:
        replaced = []  # GPU dropout draws its masks with Philox, in bulk: nothing to gain there
    try:
        for parent, name, child in replaced:
            substitute = CheapMaskDropout(child.p)
            substitute.train(child.training)
            setattr(parent, name, substitute)
        yield len(replaced)
    finally:
        for parent, name, child in replaced:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
