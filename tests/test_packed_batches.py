"""Each copy of a packed group gets the batches its job gets alone; copies of one split and
one order share each batch."""

from __future__ import annotations

import pytest
import torch

from mlplab.data.mnist import TensorBatches
from mlplab.engines.packed.data import PackedBatches

EXAMPLES, BATCH = 60, 8
FEATURES = torch.arange(EXAMPLES * 3, dtype=torch.float32).view(EXAMPLES, 3)
LABELS = torch.arange(EXAMPLES) % 10
SPLIT = torch.arange(5, 45)  # the examples every copy trains on


def packed_batches(seeds: list[int], shuffle: bool) -> PackedBatches:
    splits = torch.stack([SPLIT for _ in seeds])
    orders = [TensorBatches(SPLIT, SPLIT, BATCH, shuffle, seed) for seed in seeds]
    return PackedBatches(FEATURES, LABELS, splits, orders)


def alone_batches(seed: int, shuffle: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(TensorBatches(FEATURES[SPLIT], LABELS[SPLIT], BATCH, shuffle, seed))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("seeds", [[4, 4, 4], [4, 5, 4]])
def test_each_copy_gets_its_solo_batches_and_copies_of_one_order_share_them(seeds, shuffle):
    packed = list(packed_batches(seeds, shuffle))
    alone = {seed: alone_batches(seed, shuffle) for seed in set(seeds)}
    assert len(packed) == len(alone[seeds[0]])
    for step, (features, labels) in enumerate(packed):
        for copy, seed in enumerate(seeds):
            assert torch.equal(features[copy], alone[seed][step][0])
            assert torch.equal(labels[copy], alone[seed][step][1])
        one_order = len(set(seeds)) == 1 or not shuffle
        assert (features.stride(0) == 0) == one_order  # gathered once, seen by every copy


def test_copies_of_one_seed_at_other_places_of_the_epoch_gather_their_own_batches():
    batches = packed_batches([4, 4], shuffle=True)
    batches.orders[1].load_state_dict({**batches.orders[1].state_dict(), "batches_consumed": 2})
    features, _ = next(iter(batches))
    assert features.stride(0) != 0
    assert torch.equal(features[0], alone_batches(4, shuffle=True)[0][0])
    assert torch.equal(features[1], alone_batches(4, shuffle=True)[2][0])
