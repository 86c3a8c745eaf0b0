"""The packed engine's dropout masks are the masks torch's CPU dropout draws."""

from __future__ import annotations

import pytest
import torch

from mlplab.engines.packed import dropout_masks
from mlplab.engines.packed.dropout_masks import drawn_as_bernoulli, kept_units


def bernoulli_mask(shape, keep: float, seed: int, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.empty(shape, dtype=dtype).bernoulli_(keep, generator=generator)
    return mask.bool(), generator.get_state()


@pytest.mark.parametrize("keep", [0.5, 0.7, 0.9, 1 - 0.123456789, 0.999])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(100, 256), (7, 3, 5)])
def test_drawn_masks_and_generator_states_equal_bernoullis(keep, dtype, shape):
    expected, expected_state = bernoulli_mask(shape, keep, seed=11, dtype=dtype)
    generator = torch.Generator().manual_seed(11)
    drawn = drawn_as_bernoulli(torch.Size(shape), keep, generator)
    assert torch.equal(drawn, expected)
    assert torch.equal(generator.get_state(), expected_state)  # the next mask follows on too


def test_kept_units_falls_back_to_bernoulli_where_torch_draws_otherwise(monkeypatch):
    monkeypatch.setattr(dropout_masks, "same_draws_as_bernoulli", lambda: False)
    monkeypatch.setattr(dropout_masks, "drawn_as_bernoulli", None)  # must not be called
    expected, expected_state = bernoulli_mask((50, 40), 0.6, seed=3)
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(kept_units(torch.Size((50, 40)), 0.6, generator), expected)
    assert torch.equal(generator.get_state(), expected_state)
