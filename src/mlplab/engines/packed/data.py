"""MNIST for K packed jobs: one copy of the images, each job's own split and batch order.

A job's seed fixes its train/validation split and the order of its training batches, as in
MNISTDataModule. Here each job keeps only indices into the one preloaded split, and a
TensorBatches over those indices serves them in the order a job alone would see its
examples, so copy k's batch k holds the very examples of job k's solo batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch

from mlplab.data.mnist import (
    MNISTDataModule,
    TensorBatches,
    load_split,
    rows,
    to_features,
    validation_split,
)

Batch = tuple[torch.Tensor, torch.Tensor]


class PackedBatches:
    """Per step, every copy's batch stacked: features (K, N, 784), labels (K, N).

    `splits` (K, n) holds each copy's examples (indices into features and labels), and
    `orders` each copy's batches of positions in its row, so a step costs one gather for
    all the copies. Copies of one split and one order (jobs of one data seed, such as a
    search's trials) share each batch: it is gathered once and stacked as a view.
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        splits: torch.Tensor,
        orders: list[TensorBatches],
    ) -> None:
        self.features = features
        self.labels = labels
        self.splits = splits
        self.orders = orders
        self.one_split = all(torch.equal(split, splits[0]) for split in splits[1:])

    def __len__(self) -> int:
        return len(self.orders[0])

    def __iter__(self) -> Iterator[Batch]:
        copies, first = len(self.orders), self.orders[0]
        shared = self.one_split and all(order.serves_like(first) for order in self.orders[1:])
        for positions in zip(*(order.positions() for order in self.orders)):
            if shared:  # every copy's batch holds the same examples
                index = self.splits[:1, positions[0]]
                features, labels = rows(self.features, index), rows(self.labels, index)
                yield features.expand(copies, *features.shape[1:]), labels.expand(copies, -1)
                continue
            if isinstance(positions[0], slice):  # unshuffled: the same slice of every row
                index = self.splits[:, positions[0]]
            else:
                index = self.splits.gather(1, torch.stack(positions))
            yield rows(self.features, index), rows(self.labels, index)

    # Where each copy is in its order, so a checkpoint of one copy continues as a solo run.
    def state_dict(self) -> list[dict]:
        return [order.state_dict() for order in self.orders]

    def load_state_dict(self, states: list[dict]) -> None:
        for order, state in zip(self.orders, states):
            order.load_state_dict(state)


class PackedMNIST(L.LightningDataModule):
    """The data of K jobs whose data configs differ only in their seeds."""

    def __init__(self, template: MNISTDataModule, seeds: list[int]) -> None:
        """`template` holds the jobs' shared settings (root, batch sizes, val_size, ...)."""
        super().__init__()
        self.template = template
        self.seeds = seeds
        self.images: Batch | None = None  # the 60,000 training images, one copy
        self.splits: list[tuple[torch.Tensor, torch.Tensor]] = []  # per copy: (val, train) indices
        self.test: Batch | None = None
        self.train_batches: PackedBatches | None = None
        self.train_batches_state: list[dict] = []

    # As MNISTDataModule's: the batch orders continue across checkpoints taken at an epoch's end.
    def state_dict(self) -> list[dict]:
        return self.train_batches.state_dict() if self.train_batches else []

    def load_state_dict(self, state: list[dict]) -> None:
        self.train_batches_state = state

    def prepare_data(self) -> None:
        self.template.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.images is not None:
            return
        template = self.template
        images, labels = self._load(train=True)
        self.images = (self._features(images), labels)
        self.splits = [
            validation_split(len(labels), template.val_size, seed) for seed in self.seeds
        ]
        test_images, test_labels = self._load(train=False)
        self.test = (self._features(test_images), test_labels)

    def training_features(self, copies: list[int]) -> torch.Tensor:
        """The training images of each of `copies` (K, N, 784), as each single run's
        MNISTDataModule holds them."""
        features, _ = self.images
        return rows(features, torch.stack([self.splits[copy][1] for copy in copies]))

    def _load(self, train: bool) -> Batch:
        template = self.template
        return load_split(
            template.root, template.dataset, train, download=False, num_classes=template.num_classes
        )

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        template = self.template
        return to_features(images, template.normalize, template.mean, template.std)

    def _on_device(self, tensors: Batch) -> Batch:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        return tensors[0].to(device), tensors[1].to(device)

    def _batches(self, part: int, batch_size: int, shuffle: bool) -> PackedBatches:
        """Split `part` (0: validation, 1: training) of every copy, batched in its order."""
        self.images = self._on_device(self.images)
        device = self.images[0].device
        splits = torch.stack([split[part] for split in self.splits]).to(device)
        orders = [
            TensorBatches(row, row, batch_size, shuffle, seed)
            for seed, row in zip(self.seeds, splits)
        ]
        return PackedBatches(*self.images, splits, orders)

    def train_dataloader(self) -> PackedBatches:
        self.train_batches = self._batches(1, self.template.batch_size, shuffle=True)
        if self.train_batches_state:
            self.train_batches.load_state_dict(self.train_batches_state)
        return self.train_batches

    def val_dataloader(self) -> PackedBatches:
        return self._batches(0, self.template.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        """The test split is the same for every copy: features (N, 784), labels (N,)."""
        self.test = self._on_device(self.test)
        return TensorBatches(*self.test, self.template.eval_batch_size, shuffle=False)
