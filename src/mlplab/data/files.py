"""A dataset's IDX files, in the forms people have them, checked and read as tensors.

The four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte) are read as they are, gzipped (`.gz`, as the datasets' sites
distribute them) or with Kaggle's spelling (`train-images.idx3-ubyte`), from the first of
these folders that holds any of them: `<root>/<dataset>/raw` (what torchvision's download
leaves), `<root>/<dataset>`, `<root>/raw` and `<root>` itself (data.root pointing at the
dataset's folder or at its raw/ folder). A folder named after another of the datasets is
never read as this one. Gzipped files are decompressed in memory; nothing is written.
"""

from __future__ import annotations

import gzip
import math
import zlib
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torchvision.datasets import KMNIST, MNIST, FashionMNIST

from mlplab.errors import ConfigError

# torchvision's datasets in MNIST's file format, by class name: the name of their folder
# under data.root too (e.g. FashionMNIST/raw/), where their download puts the files.
DATASETS = {dataset.__name__: dataset for dataset in (MNIST, FashionMNIST, KMNIST)}
IMAGE_FILE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABEL_FILE_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IMAGE_SIDE = 28  # pixels: every dataset in MNIST's format
CHUNK = 1 << 20  # bytes decompressed at a time
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOREIGN_FORMS = {  # what a folder holds instead of IDX files, by suffix
    ".csv": "a CSV file (as Kaggle's digit-recognizer has the digits)",
    ".npz": "a NumPy archive (as KMNIST also distributes it)",
    ".png": "an image file",
    ".jpg": "an image file",
    ".pt": "tensors saved by torch (an old torchvision's processed/ folder)",
}


def dataset_class(name: str) -> type[MNIST]:
    """The torchvision dataset called `name`; ConfigError for one not in MNIST's format."""
    if name not in DATASETS:
        raise ConfigError(
            f"data.dataset={name!r} is not valid: one of {', '.join(DATASETS)} "
            "(torchvision's datasets in MNIST's file format; data=mnist, fashion_mnist or kmnist)"
        )
    return DATASETS[name]


def idx_names(train: bool) -> tuple[str, str]:
    """The (images, labels) file names of one split, as the datasets' sites spell them."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def spellings(name: str) -> list[str]:
    """The names a file goes by: as distributed uncompressed or gzipped, or Kaggle's."""
    kaggle = name.replace("-idx", ".idx")
    return [name, f"{name}.gz", kaggle, f"{kaggle}.gz"]


def find_file(folder: Path, name: str) -> Path | None:
    return next((folder / s for s in spellings(name) if (folder / s).is_file()), None)


def named_after(folder: Path) -> str | None:
    """The dataset a folder (or the folder above its raw/) is named after, if any."""
    named = (folder.parent.name if folder.name == "raw" else folder.name).lower()
    return next((dataset for dataset in DATASETS if dataset.lower() == named), None)


def candidate_folders(root: Path, dataset: str) -> list[Path]:
    """Where `dataset`'s files are sought, in order; none named after another dataset."""
    folders = []
    for folder in (root / dataset / "raw", root / dataset, root / "raw", root):
        if named_after(folder) in (None, dataset) and folder not in folders:
            folders.append(folder)
    return folders


def dataset_folder(root: Path, dataset: str) -> Path | None:
    """The first candidate folder that holds any of `dataset`'s four files."""
    names = [*idx_names(True), *idx_names(False)]
    for folder in candidate_folders(root, dataset):
        if any(find_file(folder, name) for name in names):
            return folder
    return None


def foreign_form(root: Path, dataset: str) -> str | None:
    """`<path> is <what>` for the first file of a form mlplab does not read where `dataset`'s
    IDX files were sought (a folder of images, sorted into class folders, among them)."""
    for folder in candidate_folders(root, dataset):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in FOREIGN_FORMS:
                return f"{path} is {FOREIGN_FORMS[path.suffix.lower()]}"
            if path.is_dir():
                # A look at the first thousand entries is enough to tell a folder of images.
                inside = islice(path.rglob("*"), 1000)
                if any(file.suffix.lower() in IMAGE_SUFFIXES for file in inside):
                    return f"{path} holds image files"
    return None


def refetch_hint(path: Path) -> str:
    if path.parent.name == "raw" and path.parent.parent.name in DATASETS:
        return (
            f"delete it and let data.download=true fetch it again, or copy a good one to "
            f"{path.parent}"
        )
    return "replace it with a good copy from the dataset's site"


def open_idx(path: Path) -> BinaryIO:
    """The file's IDX bytes: decompressed as they are read when it is gzipped."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def stored_size(path: Path) -> int:
    """Bytes the file holds, decompressed: a gzip file's trailer says it (modulo 2**32)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with path.open("rb") as file:
        file.seek(-4, 2)
        return int.from_bytes(file.read(4), "little")


def read_header(path: Path, magic: int) -> tuple[int, ...]:
    """The sizes an IDX file's header declares, checked against its magic number and length
    before anything else is read: a header that declares more than the file holds is refused
    without allocating for it."""
    dimensions = magic & 0xFF
    header_size = 4 * (dimensions + 1)
    try:
        with open_idx(path) as file:
            header = file.read(header_size)
        size = stored_size(path)
    except (OSError, EOFError, zlib.error) as error:
        raise ConfigError(f"{path} cannot be read ({error}): {refetch_hint(path)}") from None
    if len(header) < header_size:
        raise ConfigError(
            f"{path} is truncated ({len(header)} bytes, no complete header): {refetch_hint(path)}"
        )
    found_magic = int.from_bytes(header[:4], "big")
    if found_magic != magic:
        raise ConfigError(
            f"{path} is not an MNIST IDX file (magic number {found_magic:#010x}, "
            f"expected {magic:#010x}): {refetch_hint(path)}"
        )
    shape = tuple(
        int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(1, dimensions + 1)
    )
    if dimensions == 3 and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ConfigError(
            f"{path} holds images of {shape[1]} x {shape[2]} pixels, not the {IMAGE_SIDE} x "
            f"{IMAGE_SIDE} of MNIST's format: pass the dataset's own files"
        )
    expected_size = header_size + math.prod(shape)
    declared = f"its header says {'x'.join(map(str, shape))} ({expected_size} bytes)"
    if path.suffix == ".gz" and expected_size >= 2**32:
        # A gzip trailer holds the size modulo 4 GiB; no dataset in MNIST's format comes near.
        raise ConfigError(f"{path} is corrupt: {declared}, over 4 GiB: {refetch_hint(path)}")
    if size != expected_size:
        holds = (
            f"its gzip trailer records {size} bytes (a truncated or damaged file)"
            if path.suffix == ".gz"
            else f"the file has {size} bytes"
        )
        raise ConfigError(f"{path} is corrupt: {declared} but {holds}: {refetch_hint(path)}")
    return shape


def read_idx(path: Path, magic: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (plain or gzipped) as a uint8 tensor of its shape."""
    shape = read_header(path, magic)
    header_size = 4 * (len(shape) + 1)
    data = np.empty(math.prod(shape), dtype=np.uint8)
    try:
        with open_idx(path) as file:
            file.seek(header_size)
            filled = 0
            while filled < len(data) and (count := file.readinto(data[filled : filled + CHUNK])):
                filled += count
            extra = file.read(1)
    except (OSError, EOFError, zlib.error) as error:
        raise ConfigError(f"{path} cannot be read ({error}): {refetch_hint(path)}") from None
    if filled < len(data) or extra:
        raise ConfigError(
            f"{path} is corrupt: its header says {'x'.join(map(str, shape))} but it holds "
            f"{'more' if extra else f'{filled} bytes of'} pixel data: {refetch_hint(path)}"
        )
    return torch.from_numpy(data.reshape(shape))


def missing(root: Path, dataset: str) -> ConfigError:
    """What to do when no folder holds the dataset's files: said of the foreign file found
    instead, or of where they were sought."""
    images, labels = idx_names(True)
    folders = ", ".join(map(str, candidate_folders(root, dataset)))
    root_hint = f"data.root to the folder that holds {dataset}/raw/ (or DATA_DIR)"
    found = foreign_form(root, dataset)
    if found:
        return ConfigError(
            f"{dataset} not found in a form mlplab reads: {found}. mlplab reads the four IDX "
            f"files ({images}, ... or their .gz) the dataset's site distributes: put them in "
            f"{root / dataset / 'raw'}, or set data.download=true to fetch them"
        )
    other = named_after(root)
    if other not in (None, dataset):
        folders += f" ({root} is {other}'s folder, not read as {dataset}'s)"
    return ConfigError(
        f"{dataset} not found: expected {images} and {labels} (or .gz) in {folders}. "
        f"Set {root_hint}, or data.download=true to fetch it"
    )


def split_files(folder: Path, train: bool) -> tuple[Path, Path]:
    """The (images, labels) files of one split in `folder`; ConfigError naming one missing."""
    files = []
    for name in idx_names(train):
        found = find_file(folder, name)
        if found is None:
            raise ConfigError(
                f"{folder} holds some of the dataset's files but not {name} (or {name}.gz): "
                "put all four files there"
            )
        files.append(found)
    return files[0], files[1]


def ensure_files(root: Path, dataset: str, train: bool, download: bool) -> tuple[Path, Path]:
    """The (images, labels) IDX files of one split, downloaded when missing and allowed.

    torchvision's download puts them in `root/<dataset>/raw/`. Their headers are checked
    against their sizes and each other; nothing is decoded.
    """
    torchvision_dataset = dataset_class(dataset)  # an unknown name fails before any file is sought
    folder = dataset_folder(root, dataset)
    has_split = folder is not None and all(find_file(folder, n) for n in idx_names(train))
    if not has_split and download:
        try:
            torchvision_dataset(root, train=train, download=True)
        except (RuntimeError, OSError) as error:
            raise ConfigError(
                f"{dataset} not found in {root / dataset / 'raw'} and the download failed "
                f"({error}). Put the four IDX files there, or set data.root to the folder that "
                f"holds {dataset}/raw/ (or DATA_DIR)"
            ) from error
        folder = root / dataset / "raw"
    if folder is None:
        raise missing(root, dataset)
    image_file, label_file = split_files(folder, train)
    image_count = read_header(image_file, IMAGE_FILE_MAGIC)[0]
    label_count = read_header(label_file, LABEL_FILE_MAGIC)[0]
    if image_count != label_count:
        raise ConfigError(
            f"{image_file.parent} is inconsistent: {image_file.name} holds {image_count} images "
            f"but {label_file.name} holds {label_count} labels; replace both files of the split"
        )
    return image_file, label_file


def load_split(
    root: Path, dataset: str, train: bool, download: bool, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split, downloading when allowed."""
    image_file, label_file = ensure_files(root, dataset, train, download)
    images = read_idx(image_file, IMAGE_FILE_MAGIC)
    labels = read_idx(label_file, LABEL_FILE_MAGIC).long()
    if len(labels) and labels.max() >= num_classes:
        raise ConfigError(
            f"{label_file} holds the label {int(labels.max())}, but {dataset}'s classes "
            f"are 0 to {num_classes - 1}: the file is damaged; {refetch_hint(label_file)}"
        )
    return images, labels
