import gzip
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mlplab.config.compose import compose_train_config
from mlplab.data.files import DATASETS, load_split
from mlplab.data.mnist import MNISTDataModule, TensorBatches
from mlplab.errors import ConfigError
from tests.conftest import (
    TINY_TEST,
    TINY_TRAIN,
    real_data,
    tiny_digits,
    write_idx,
    write_tiny_mnist,
)


def raw_file(root: Path, name: str) -> Path:
    return root / "MNIST" / "raw" / name


def data_config(root: Path, *overrides: str):
    """The data group's config for `root`, as `python -m train` composes it."""
    return compose_train_config(root.parent / "run", [f"data.root={root}", *overrides]).data


def make_datamodule(root: Path, *overrides: str) -> MNISTDataModule:
    return instantiate(data_config(root, *overrides))


def load_mnist_split(root: Path, train: bool, download: bool = False):
    return load_split(root, "MNIST", train, download, num_classes=10)


def test_load_mnist_split_reads_images_and_labels_from_idx_files(tiny_mnist):
    images, labels = load_mnist_split(tiny_mnist, train=True, download=False)
    expected_images, expected_labels = tiny_digits(TINY_TRAIN, seed=0)
    assert images.shape == (TINY_TRAIN, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images, torch.from_numpy(expected_images).to(torch.uint8))
    assert torch.equal(labels, torch.from_numpy(expected_labels))


def test_setup_splits_train_into_disjoint_train_and_val_and_keeps_test(tiny_mnist):
    datamodule = make_datamodule(tiny_mnist, "data.val_size=100", "data.seed=3")
    datamodule.setup("fit")
    train_features, _ = datamodule.splits["train"]
    val_features, _ = datamodule.splits["val"]
    test_features, _ = datamodule.splits["test"]
    assert (len(train_features), len(val_features), len(test_features)) == (500, 100, TINY_TEST)
    assert train_features.shape[1] == 784 and train_features.dtype == torch.float32
    train_rows = {tuple(row.tolist()) for row in train_features}
    assert not any(tuple(row.tolist()) in train_rows for row in val_features)


def test_split_depends_only_on_seed(tiny_mnist):
    def val_labels(seed: int) -> torch.Tensor:
        datamodule = make_datamodule(tiny_mnist, "data.val_size=100", f"data.seed={seed}")
        datamodule.setup("fit")
        return datamodule.splits["val"][1]

    assert torch.equal(val_labels(1), val_labels(1))
    assert not torch.equal(val_labels(1), val_labels(2))


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "kmnist"])
def test_normalize_standardises_with_the_datasets_mean_and_std_else_scales_to_unit_range(
    tmp_path, dataset
):
    config = data_config(tmp_path / "data", f"data={dataset}")
    root = write_tiny_mnist(tmp_path / "data", config.dataset)
    plain = make_datamodule(root, f"data={dataset}", "data.val_size=100", "data.normalize=false")
    standardised = make_datamodule(root, f"data={dataset}", "data.val_size=100")
    plain.setup()
    standardised.setup()
    x_plain = plain.splits["test"][0]
    assert x_plain.min() >= 0 and x_plain.max() == 1.0
    torch.testing.assert_close(standardised.splits["test"][0], (x_plain - config.mean) / config.std)


def test_shuffled_batches_cover_every_sample_once_in_a_new_order_each_epoch():
    features = torch.arange(250, dtype=torch.float32).unsqueeze(1)
    labels = torch.arange(250)
    batches = TensorBatches(features, labels, batch_size=100, shuffle=True, seed=0)
    epochs = [torch.cat([y for _, y in batches]) for _ in range(2)]
    assert len(batches) == 3
    assert [len(y) for _, y in batches] == [100, 100, 50]
    for order in epochs:
        assert torch.equal(order.sort().values, labels)
    assert not torch.equal(epochs[0], epochs[1])
    for x, y in batches:
        assert torch.equal(x.squeeze(1).long(), y)


def test_shuffled_batch_order_is_reproducible_from_the_seed():
    labels = torch.arange(100)

    def first_epoch(seed: int) -> torch.Tensor:
        batches = TensorBatches(labels.float(), labels, batch_size=10, shuffle=True, seed=seed)
        return torch.cat([y for _, y in batches])

    assert torch.equal(first_epoch(5), first_epoch(5))
    assert not torch.equal(first_epoch(5), first_epoch(6))


def test_unshuffled_batches_keep_the_stored_order():
    labels = torch.arange(25)
    batches = TensorBatches(labels.float(), labels, batch_size=10, shuffle=False)
    assert torch.equal(torch.cat([y for _, y in batches]), labels)


def per_rank_epochs(count: int, shuffle: bool, world_size: int) -> list[list[torch.Tensor]]:
    """Each rank's batches of labels 0..count-1 for one epoch, as the rank would be served them."""
    labels = torch.arange(count)
    return [
        [y for _, y in TensorBatches(labels.float(), labels, 10, shuffle, 3, rank, world_size)]
        for rank in range(world_size)
    ]


def test_ddp_training_shares_are_disjoint_cover_the_split_and_take_equal_steps():
    ranks = per_rank_epochs(count=95, shuffle=True, world_size=2)
    assert [len(batches) for batches in ranks] == [5, 5]
    served = [torch.cat(batches) for batches in ranks]
    assert len(served[0]) == len(served[1]) == 48
    # 96 places for 95 examples: one example is served twice, every other exactly once.
    everything = torch.cat(served)
    assert set(everything.tolist()) == set(range(95))
    assert len(everything) - len(set(everything.tolist())) == 1


def test_ddp_ranks_draw_the_same_permutation_so_their_shares_interleave():
    labels = torch.arange(60)
    alone = torch.cat([y for _, y in TensorBatches(labels.float(), labels, 60, True, seed=3)])
    rank0, rank1 = (torch.cat(batches) for batches in per_rank_epochs(60, True, world_size=2))
    assert torch.equal(rank0, alone[0::2]) and torch.equal(rank1, alone[1::2])


def test_ddp_evaluation_shares_count_every_example_exactly_once():
    ranks = per_rank_epochs(count=25, shuffle=False, world_size=2)
    served = torch.cat([torch.cat(batches) for batches in ranks])
    assert sorted(served.tolist()) == list(range(25))
    assert [
        len(TensorBatches(torch.zeros(25), torch.zeros(25), 10, False, 0, r, 2)) for r in (0, 1)
    ] == [
        2,
        2,
    ]


def test_missing_mnist_without_download_names_the_folder_and_data_root(tmp_path):
    with pytest.raises(ConfigError, match=r"MNIST not found.*MNIST/raw.*data\.root"):
        load_mnist_split(tmp_path, train=True, download=False)


def test_missing_mnist_with_failing_download_says_where_files_were_expected(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setitem(DATASETS, "MNIST", no_network)
    with pytest.raises(ConfigError, match=r"download failed.*data\.root"):
        load_mnist_split(tmp_path, train=True, download=True)


def test_truncated_idx_file_is_reported_with_its_path_and_sizes(tiny_mnist):
    path = raw_file(tiny_mnist, "train-images-idx3-ubyte")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(
        ConfigError, match=r"train-images-idx3-ubyte is corrupt.*600x28x28.*5000 bytes"
    ):
        load_mnist_split(tiny_mnist, train=True, download=False)


def test_file_that_is_not_idx_is_refused(tiny_mnist):
    raw_file(tiny_mnist, "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(ConfigError, match="not an MNIST IDX file"):
        load_mnist_split(tiny_mnist, train=False, download=False)


def test_image_and_label_counts_that_disagree_are_refused(tiny_mnist):
    images, labels = tiny_digits(50, seed=0)
    write_idx(raw_file(tiny_mnist, "t10k-labels-idx1-ubyte"), labels)
    with pytest.raises(ConfigError, match=r"holds 200 images but .* holds 50 labels"):
        load_mnist_split(tiny_mnist, train=False, download=False)


def test_val_size_not_smaller_than_training_set_is_refused(tiny_mnist):
    datamodule = make_datamodule(tiny_mnist, f"data.val_size={TINY_TRAIN}")
    with pytest.raises(ConfigError, match=r"data\.val_size=600 must be between 1 and 599"):
        datamodule.setup("fit")


def test_dataset_is_held_once_as_float_features(tiny_mnist):
    datamodule = make_datamodule(tiny_mnist, "data.val_size=100")
    datamodule.setup("fit")
    held = sum(features.nbytes for features, _ in datamodule.splits.values())
    assert held == (TINY_TRAIN + TINY_TEST) * 784 * 4


def test_label_outside_the_classes_is_refused_when_the_data_loads(tiny_mnist):
    _, labels = tiny_digits(TINY_TRAIN, seed=0)
    labels[17] = 12
    write_idx(raw_file(tiny_mnist, "train-labels-idx1-ubyte"), labels)
    datamodule = make_datamodule(tiny_mnist, "data.val_size=100")
    with pytest.raises(
        ConfigError, match=r"train-labels-idx1-ubyte holds the label 12, but MNIST's classes are"
    ) as error:
        datamodule.setup("fit")
    assert "\n" not in str(error.value)


def test_a_run_decodes_each_split_once(small_run_config, monkeypatch):
    from mlplab.data import files as dataset_files
    from tests.conftest import train

    decoded = []
    read_idx = dataset_files.read_idx

    def counted(path, magic):
        decoded.append(path.name)
        return read_idx(path, magic)

    monkeypatch.setattr(dataset_files, "read_idx", counted)
    train(small_run_config())
    assert sorted(decoded) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]


@pytest.mark.parametrize(
    ("option", "folder"), [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")]
)
def test_each_dataset_is_read_from_its_own_folder(tmp_path, option, folder):
    root = write_tiny_mnist(tmp_path / "data", folder)
    data = make_datamodule(root, f"data={option}", "data.val_size=100", "data.download=false")
    data.prepare_data()
    data.setup()
    expected_images, expected_labels = tiny_digits(TINY_TEST, seed=1)
    features, labels = data.splits["test"]
    assert torch.equal(labels, torch.from_numpy(expected_labels))
    config = data_config(root, f"data={option}")
    torch.testing.assert_close(
        features,
        (torch.from_numpy(expected_images).reshape(TINY_TEST, -1) / 255 - config.mean) / config.std,
    )


def test_a_dataset_missing_from_data_root_names_its_own_folder(tiny_mnist):
    # tiny_mnist holds MNIST only.
    with pytest.raises(
        ConfigError, match=r"KMNIST not found: expected train-images-idx3-ubyte .*/KMNIST/raw"
    ):
        make_datamodule(tiny_mnist, "data=kmnist", "data.download=false").prepare_data()


def test_bad_files_of_any_dataset_get_the_same_one_line_errors(tmp_path):
    root = write_tiny_mnist(tmp_path / "data", "FashionMNIST")
    path = root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ConfigError, match=r"FashionMNIST/raw/t10k-images-idx3-ubyte is corrupt"):
        make_datamodule(root, "data=fashion_mnist").prepare_data()


def test_a_dataset_that_is_not_in_mnist_format_is_refused(tiny_mnist):
    with pytest.raises(
        ConfigError,
        match=r"data\.dataset='CIFAR10' is not valid: one of MNIST, FashionMNIST, KMNIST",
    ):
        make_datamodule(tiny_mnist, "data.dataset=CIFAR10").prepare_data()


@pytest.mark.parametrize("option", ["mnist", "fashion_mnist", "kmnist"])
def test_class_names_are_torchvision_s_in_label_order(tmp_path, option):
    config = data_config(tmp_path / "data", f"data={option}")
    torchvision_names = DATASETS[config.dataset].classes
    if option == "mnist":  # torchvision spells them "0 - zero", ...
        torchvision_names = [name.split(" - ")[0] for name in torchvision_names]
    assert list(config.class_names) == torchvision_names


@pytest.mark.parametrize("option", ["mnist", "fashion_mnist", "kmnist"])
def test_normalisation_statistics_are_those_of_the_training_images(tmp_path, option):
    config = data_config(tmp_path / "data", f"data={option}")
    root = real_data(config.dataset)
    images, _ = load_split(root, config.dataset, train=True, download=False, num_classes=10)
    pixels = images.double() / 255
    assert (round(pixels.mean().item(), 4), round(pixels.std().item(), 4)) == (
        config.mean,
        config.std,
    )


IDX_NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def gzipped(path: Path) -> Path:
    """`path` replaced by its gzipped copy, `<path>.gz`, as the datasets' sites distribute it."""
    target = path.with_name(f"{path.name}.gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return target


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def loaded_splits(root: Path, *overrides: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    data = make_datamodule(root, "data.val_size=100", *overrides)
    data.prepare_data()
    data.setup()
    return data.splits


def assert_same_splits(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for split, (features, labels) in expected.items():
        assert torch.equal(found[split][0], features) and torch.equal(found[split][1], labels)


def test_gzipped_files_alone_train_as_the_uncompressed_ones_and_nothing_is_written(
    tmp_path, monkeypatch
):
    expected = loaded_splits(write_tiny_mnist(tmp_path / "plain"))
    root = write_tiny_mnist(tmp_path / "data")
    for name in IDX_NAMES:
        gzipped(raw_file(root, name))
    before = files_under(tmp_path)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the .gz files were there")

    monkeypatch.setitem(DATASETS, "MNIST", no_download)
    assert_same_splits(loaded_splits(root, "data.download=true"), expected)
    assert files_under(tmp_path) == before  # decompressed in memory: no file written anywhere


def place_files(raw: Path, form: str, root: Path) -> Path:
    """The four files of torchvision's raw/ folder `raw`, moved into `form`; the data.root to
    give for it."""
    forms = {  # where the files go, and what data.root is then
        "in data.root": (root, root),
        "in data.root/MNIST": (root / "MNIST", root),
        "data.root is MNIST/": (root / "MNIST" / "raw", root / "MNIST"),
        "data.root is MNIST/raw/": (root / "MNIST" / "raw", root / "MNIST" / "raw"),
        "as Kaggle spells them": (root / "MNIST" / "raw", root),
    }
    folder, data_root = forms[form]
    folder.mkdir(parents=True, exist_ok=True)
    for name in IDX_NAMES:
        target = name.replace("-idx", ".idx") if form == "as Kaggle spells them" else name
        shutil.move(raw / name, folder / target)
    return data_root


@pytest.mark.parametrize(
    "form",
    [
        "in data.root",
        "in data.root/MNIST",
        "data.root is MNIST/",
        "data.root is MNIST/raw/",
        "as Kaggle spells them",
    ],
)
@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "gzipped"])
def test_each_folder_form_people_have_the_files_in_trains_on_the_same_data(
    tmp_path, form, compressed
):
    expected = loaded_splits(write_tiny_mnist(tmp_path / "torchvision"))
    raw = write_tiny_mnist(tmp_path / "download") / "MNIST" / "raw"
    if compressed:
        for name in IDX_NAMES:
            shutil.move(gzipped(raw / name), raw / name)  # moved under its plain name for now
    root = place_files(raw, form, tmp_path / "data")
    if compressed:
        for path in files_under(tmp_path / "data"):
            path.rename(path.with_name(f"{path.name}.gz"))
    assert_same_splits(loaded_splits(root, "data.download=false"), expected)


def test_a_folder_named_after_another_dataset_is_not_read_as_this_one(tmp_path):
    root = write_tiny_mnist(tmp_path / "data") / "MNIST"  # data.root is MNIST's folder
    with pytest.raises(
        ConfigError, match=r"FashionMNIST not found: .*MNIST is MNIST's folder, not read as"
    ):
        make_datamodule(root, "data=fashion_mnist", "data.download=false").prepare_data()


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("train.csv", "is a CSV file"),
        ("kmnist-train-imgs.npz", "is a NumPy archive"),
        ("training", "holds image files"),
    ],
)
def test_a_form_mlplab_cannot_read_is_refused_naming_the_file_and_what_is_read(
    tmp_path, name, what
):
    root = tmp_path / "data"
    root.mkdir()
    if name == "training":  # a folder of PNGs sorted into class folders
        (root / name / "7").mkdir(parents=True)
        (root / name / "7" / "1.png").write_bytes(b"\x89PNG")
    else:
        (root / name).write_text("label,pixel0\n")
    with pytest.raises(ConfigError) as error:
        make_datamodule(root, "data.download=false").prepare_data()
    message = str(error.value)
    assert message.startswith(f"MNIST not found in a form mlplab reads: {root / name} {what}")
    assert "train-images-idx3-ubyte" in message and str(root / "MNIST" / "raw") in message
    assert "\n" not in message


def test_a_folder_holding_only_some_of_the_files_names_the_one_missing(tmp_path):
    root = write_tiny_mnist(tmp_path / "data")
    raw_file(root, "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        ConfigError, match=r"MNIST/raw holds some of the dataset's files but not t10k-labels"
    ):
        make_datamodule(root, "data.download=false").prepare_data()


@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "gzipped"])
def test_a_header_declaring_billions_of_images_is_refused_before_allocating_for_them(
    tiny_mnist, compressed
):
    path = raw_file(tiny_mnist, "train-images-idx3-ubyte")
    header = b"".join(size.to_bytes(4, "big") for size in (0x803, 2**32 - 1, 28, 28))
    path.write_bytes(header + bytes(784 * 10))  # 3.4 TB declared, 10 images held
    if compressed:
        path = gzipped(path)
    tracemalloc.start()
    try:
        with pytest.raises(
            ConfigError, match=rf"{path.name} is corrupt: its header says 4294967295x28x28"
        ):
            load_mnist_split(tiny_mnist, train=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_a_truncated_gzip_file_is_refused_naming_it(tiny_mnist):
    path = gzipped(raw_file(tiny_mnist, "train-images-idx3-ubyte"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match=rf"{path.name} is corrupt") as error:
        load_mnist_split(tiny_mnist, train=True)
    assert str(path) in str(error.value)


def test_a_file_that_is_not_gzip_but_named_gz_is_refused_naming_it(tiny_mnist):
    path = raw_file(tiny_mnist, "t10k-labels-idx1-ubyte")
    path.unlink()
    fake = path.with_name(f"{path.name}.gz")
    fake.write_bytes(b"<html>not found</html>")
    with pytest.raises(ConfigError, match=rf"{fake.name} cannot be read \(Not a gzipped file"):
        load_mnist_split(tiny_mnist, train=False)


def test_images_that_are_not_28_by_28_are_refused(tiny_mnist):
    write_idx(raw_file(tiny_mnist, "t10k-images-idx3-ubyte"), np.zeros((200, 32, 32)))
    with pytest.raises(ConfigError, match=r"holds images of 32 x 32 pixels, not the 28 x 28"):
        load_mnist_split(tiny_mnist, train=False)
