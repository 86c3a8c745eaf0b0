"""Dropout masks drawn as torch's CPU dropout draws them, in half the time.

A single run's dropout on the CPU fills a tensor like its input with `bernoulli_(keep)`: for
each element in order, the generator's next 64 bits (two 32-bit draws), the low 53 of them
read as a double u in [0, 1), and the unit kept where u < keep, one element at a time.
`random_` on int64 draws the same 64 bits per element (the top one cleared, which u never
reads) without that per-element work, and the comparison u < keep, as the integer one
bits < ceil(keep * 2**53), runs vectorised: the same mask, and the generator left where
bernoulli_ leaves it. A torch whose bernoulli_ draws otherwise is found on the first mask,
and its masks are then drawn with bernoulli_ itself.
"""

from __future__ import annotations

import math
from functools import cache

import torch

LOW_53_BITS = (1 << 53) - 1


def kept_units(shape: torch.Size, keep: float, generator: torch.Generator) -> torch.Tensor:
    """Where a CPU tensor of `shape` keeps its units, as `bernoulli_(keep, generator)` on it
    would draw them (bool)."""
    if not same_draws_as_bernoulli():
        return torch.empty(shape).bernoulli_(keep, generator=generator).bool()
    return drawn_as_bernoulli(shape, keep, generator)


def drawn_as_bernoulli(shape: torch.Size, keep: float, generator: torch.Generator) -> torch.Tensor:
    bits = torch.empty(shape, dtype=torch.int64).random_(generator=generator)
    return bits.bitwise_and_(LOW_53_BITS) < math.ceil(keep * 2**53)


@cache
def same_draws_as_bernoulli() -> bool:
    """Whether this torch's bernoulli_ draws what drawn_as_bernoulli draws, and leaves its
    generator in the same state."""
    shape, keep = torch.Size([4, 1000]), 0.7
    reference, ours = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    expected = torch.empty(shape).bernoulli_(keep, generator=reference).bool()
    drawn = drawn_as_bernoulli(shape, keep, ours)
    return torch.equal(drawn, expected) and torch.equal(ours.get_state(), reference.get_state())
