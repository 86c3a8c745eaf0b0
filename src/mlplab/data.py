"""MNIST as one preloaded tensor per split, served in shuffled index-slice batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torchvision.datasets import MNIST

from mlplab.errors import ConfigError

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_FILE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABEL_FILE_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def idx_files(raw_folder: Path, train: bool) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of one MNIST split."""
    prefix = "train" if train else "t10k"
    return raw_folder / f"{prefix}-images-idx3-ubyte", raw_folder / f"{prefix}-labels-idx1-ubyte"


def check_idx_file(path: Path, magic: int) -> int:
    """Check an IDX file's header against its size; return the number of items it holds."""
    size = path.stat().st_size
    dimensions = magic & 0xFF
    header_size = 4 * (dimensions + 1)
    fix = (
        f"delete it and let data.download=true fetch it again, or copy a good one to {path.parent}"
    )
    if size < header_size:
        raise ConfigError(f"{path} is truncated ({size} bytes, no complete header): {fix}")
    with path.open("rb") as file:
        header = file.read(header_size)
    found_magic = int.from_bytes(header[:4], "big")
    if found_magic != magic:
        raise ConfigError(
            f"{path} is not an MNIST IDX file (magic number {found_magic:#010x}, "
            f"expected {magic:#010x}): {fix}"
        )
    shape = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(1, dimensions + 1)]
    expected_size = header_size + int(torch.tensor(shape).prod())
    if size != expected_size:
        raise ConfigError(
            f"{path} is corrupt: its header says {'x'.join(map(str, shape))} "
            f"({expected_size} bytes) but the file has {size} bytes: {fix}"
        )
    return shape[0]


def load_mnist_split(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split, downloading when allowed."""
    raw_folder = root / "MNIST" / "raw"
    image_file, label_file = idx_files(raw_folder, train)
    if not (image_file.exists() and label_file.exists()):
        if not download:
            raise ConfigError(
                f"MNIST not found: expected {image_file.name} and {label_file.name} "
                f"in {raw_folder}. "
                "Set data.root to the folder that holds MNIST/raw/ (or DATA_DIR), "
                "or data.download=true to fetch it"
            )
        try:
            MNIST(root, train=train, download=True)
        except (RuntimeError, OSError) as error:
            raise ConfigError(
                f"MNIST not found in {raw_folder} and the download failed ({error}). "
                "Put the four IDX files there, or set data.root to the folder that holds "
                "MNIST/raw/ (or DATA_DIR)"
            ) from error
    image_count = check_idx_file(image_file, IMAGE_FILE_MAGIC)
    label_count = check_idx_file(label_file, LABEL_FILE_MAGIC)
    if image_count != label_count:
        raise ConfigError(
            f"{raw_folder} is inconsistent: {image_file.name} holds {image_count} images but "
            f"{label_file.name} holds {label_count} labels; replace both files of the split"
        )
    dataset = MNIST(root, train=train, download=False)
    return dataset.data, dataset.targets


def to_features(images: torch.Tensor, normalize: bool) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 features (N, 784) in [0, 1], standardised if asked."""
    features = images.reshape(len(images), -1).float().div_(255)
    if normalize:
        features.sub_(MNIST_MEAN).div_(MNIST_STD)
    return features


class TensorBatches:
    """Batches of (features, labels) sliced out of tensors that already hold the whole split.

    Shuffled batches come from one seeded generator, so the order of every epoch is
    reproducible. The tensors stay where they are (on the GPU when moved there).

    `state_dict()` says where in which epoch's order the batches are, so a run resumed from a
    checkpoint taken mid-epoch trains on exactly the batches it had not seen yet.
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start_state = self.generator.get_state()
        self.batches_consumed = 0
        self.batches_to_skip = 0

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {
            "epoch_start_state": self.epoch_start_state,
            "batches_consumed": self.batches_consumed,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Continue the epoch that `state` was taken in, after the batches it had consumed."""
        self.generator.set_state(state["epoch_start_state"])
        self.batches_to_skip = state["batches_consumed"]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        self.epoch_start_state = self.generator.get_state()
        skip, self.batches_to_skip = self.batches_to_skip, 0
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator).to(self.labels.device)
        starts = range(skip * self.batch_size, count, self.batch_size)
        for number, start in enumerate(starts, start=skip + 1):
            # Counted when handed out: Lightning knows the epoch's length, so it asks for a batch
            # only to train on it, and never asks past the last one.
            self.batches_consumed = number
            if number == len(self):
                # The epoch is over once its last batch is out: a checkpoint taken from here on
                # continues with the next epoch's order.
                self.epoch_start_state = self.generator.get_state()
                self.batches_consumed = 0
            if self.shuffle:
                batch = order[start : start + self.batch_size]
                yield self.features[batch], self.labels[batch]
            else:
                yield (
                    self.features[start : start + self.batch_size],
                    self.labels[start : start + self.batch_size],
                )


class MNISTDataModule(L.LightningDataModule):
    """MNIST train / validation (seeded split of the 60k) / test (the 10k), preloaded as tensors."""

    def __init__(
        self,
        root: str,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: bool = True,
        download: bool = True,
        seed: int = 0,
    ) -> None:
        """`seed` fixes the train/validation split and the order of the training batches."""
        super().__init__()
        self.root = Path(os.path.expanduser(root))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.normalize = normalize
        self.download = download
        self.seed = seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.train_batches: TensorBatches | None = None
        self.train_batches_state: dict[str, torch.Tensor | int] = {}

    # Lightning restores a training loader's state only when it resumes inside an epoch; the
    # data module's state is restored on every resume, so the batch order continues across
    # checkpoints taken at the end of an epoch too.
    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return self.train_batches.state_dict() if self.train_batches else {}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        self.train_batches_state = state

    def prepare_data(self) -> None:
        for train in (True, False):
            load_mnist_split(self.root, train, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = load_mnist_split(self.root, train=True, download=False)
        if not 0 < self.val_size < len(labels):
            raise ConfigError(
                f"data.val_size={self.val_size} must be between 1 and {len(labels) - 1} "
                f"(the training set holds {len(labels)} images)"
            )
        features = to_features(images, self.normalize)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        test_images, test_labels = load_mnist_split(self.root, train=False, download=False)
        self.splits = {
            "train": (features[train_index], labels[train_index]),
            "val": (features[val_index], labels[val_index]),
            "test": (to_features(test_images, self.normalize), test_labels),
        }

    def _batches(self, split: str, batch_size: int, shuffle: bool) -> TensorBatches:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        features, labels = self.splits[split]
        self.splits[split] = (features.to(device), labels.to(device))
        return TensorBatches(*self.splits[split], batch_size, shuffle, seed=self.seed)

    def train_dataloader(self) -> TensorBatches:
        self.train_batches = self._batches("train", self.batch_size, shuffle=True)
        if self.train_batches_state:
            self.train_batches.load_state_dict(self.train_batches_state)
        return self.train_batches

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", self.eval_batch_size, shuffle=False)
