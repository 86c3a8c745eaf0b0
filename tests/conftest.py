"""Shared fixtures: tiny IDX files written on the fly, composed configs, the real MNIST folder."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mlplab.config.compose import compose_train_config as compose_run_config
from mlplab.job.facts import JobFacts
from mlplab.job.run import run_job

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN, TINY_TEST = 600, 200


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker takes an equal share of the cores, for itself and the training
    commands it starts: two workers of two threads each on two cores wait on each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0800 | dimensions, big-endian sizes)."""
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit PNG of any size, written row by row: a 20,000 x 20,000 one (a
    decompression bomb: 400 megapixels) is 50 kB, and making it needs no image in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = bytes(1 + -(-width // 8))  # filter type 0, then 8 pixels a byte
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


def tiny_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 28x28 images in which class k is a bright bar in row band k: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    images = rng.integers(0, 60, size=(count, 28, 28))
    for image, label in zip(images, labels):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def write_tiny_mnist(root: Path, dataset: str = "MNIST") -> Path:
    """A data.root holding `dataset`'s four IDX files (torchvision's layout), tiny images."""
    raw = root / dataset / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", TINY_TRAIN, 0), ("t10k", TINY_TEST, 1)):
        images, labels = tiny_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data.root holding 600 training and 200 test images in MNIST's IDX format."""
    return write_tiny_mnist(tmp_path / "data")


# The real datasets that CI's data folder holds; KMNIST cannot be fetched there.
IN_CI_DATA = ("MNIST", "FashionMNIST")


def real_data(dataset: str) -> Path:
    """The data.root holding the real `dataset`: $DATA_DIR, else data/, where `python -m
    train` downloads it. Skips the test where it is missing (fails in CI, for the datasets CI
    has)."""
    root = Path(os.environ.get("DATA_DIR", REPO / "data")).resolve()
    if not (root / dataset / "raw" / "train-images-idx3-ubyte").exists():
        message = (
            f"needs the real {dataset}, which is not under {root}: run `python -m train` once "
            f"with it (it downloads into data/), or set DATA_DIR to a folder holding {dataset}/raw"
        )
        if os.environ.get("CI") and dataset in IN_CI_DATA:
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture
def real_mnist() -> Path:
    """The data.root holding the real MNIST."""
    return real_data("MNIST")


def compose_train_config(
    output_dir: Path, data_root: Path, overrides: list[str] = ()
) -> DictConfig:
    """The config `python -m train` would get on `data_root`, run in `output_dir`."""
    return compose_run_config(output_dir, [f"data.root={data_root}", *overrides])


SMALL_RUN = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "callbacks.progress_bar.refresh_rate=0",
    "data.val_size=100",
    "data.batch_size=50",
]


@pytest.fixture
def small_run_config(tmp_path: Path, tiny_mnist: Path):
    """Compose a one-epoch CPU run on the tiny data, with extra overrides."""

    def make(*overrides: str, name: str = "run") -> DictConfig:
        return compose_train_config(tmp_path / name, tiny_mnist, [*SMALL_RUN, *overrides])

    return make


def composed_choices(overrides: list[str] = ()) -> dict[str, str | None]:
    """The option of each config group that `python -m train <overrides>` would choose."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


def train(cfg: DictConfig, overrides: list[str] = (), choices: dict | None = None) -> dict:
    """Run one job in this process, as `python -m train` would; return its metrics."""
    return run_job(cfg, JobFacts(overrides=tuple(overrides), choices=choices or {}))
