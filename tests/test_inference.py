"""The Python API: a trained network out of its checkpoint, and predictions for image files."""

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.functional import cross_entropy

from mlplab import ImagesRefused, load_checkpoint, predict
from mlplab.data.mnist import load_split, to_features
from mlplab.errors import ConfigError
from mlplab.use.trained_network import TrainedNetwork
from tests.conftest import (
    REPO,
    SMALL_RUN,
    TINY_TEST,
    compose_train_config,
    real_data,
    train,
    write_blank_png,
    write_tiny_mnist,
)


def tiny_run(tmp_path: Path, option: str = "kmnist", folder: str = "KMNIST") -> Path:
    """A finished one-epoch run on tiny IDX files of `folder`'s dataset; its folder."""
    root = write_tiny_mnist(tmp_path / "data", folder)
    cfg = compose_train_config(tmp_path / "run", root, [*SMALL_RUN, f"data={option}"])
    train(cfg)
    return tmp_path / "run"


def test_load_checkpoint_gives_the_trained_network_with_its_config_and_class_names(tmp_path):
    run_dir = tiny_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    network = load_checkpoint(run_dir)  # a run folder: its best checkpoint
    assert isinstance(network, TrainedNetwork) and not network.training
    assert network.config.data.dataset == "KMNIST"
    assert network.class_names == ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]

    # Raw uint8 images are prepared inside exactly as in training: the run's own test numbers.
    images, labels = load_split(tmp_path / "data", "KMNIST", False, False, num_classes=10)
    assert images.dtype == torch.uint8 and images.shape == (TINY_TEST, 28, 28)
    with torch.no_grad():
        logits = network(images)
        data = network.config.data
        prepared = network(to_features(images, data.normalize, data.mean, data.std))
    assert float((logits.argmax(dim=1) == labels).float().mean()) == pytest.approx(
        metrics["test/acc"], abs=1e-7
    )
    assert cross_entropy(logits, labels).item() == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert torch.equal(prepared, logits)  # float rows are taken as already prepared


def test_load_checkpoint_loads_weights_only(tmp_path, monkeypatch):
    run_dir = tiny_run(tmp_path)
    calls = []
    load = torch.load

    def recorded(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recorded)
    load_checkpoint(run_dir)
    assert calls == [True]


def test_images_of_another_dtype_are_refused_with_what_is_accepted(tmp_path):
    network = load_checkpoint(tiny_run(tmp_path))
    with pytest.raises(TypeError, match=r"torch\.int64: pass uint8 pixels"):
        network(torch.zeros(2, 28, 28, dtype=torch.int64))


def test_predict_classifies_the_readable_images_then_raises_naming_each_refused_one(tmp_path):
    network = load_checkpoint(tiny_run(tmp_path))
    good, other = tmp_path / "good.png", tmp_path / "other.jpg"
    for path, row in ((good, 30), (other, 60)):
        picture = np.full((120, 160), 255, dtype=np.uint8)
        picture[row : row + 10, 30:130] = 0
        Image.fromarray(picture).save(path)
    bomb = write_blank_png(tmp_path / "bomb.png", 20_000, 20_000)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    with pytest.raises(ImagesRefused) as raised:
        predict(network, [good, bomb, other, notes])
    error = raised.value
    assert isinstance(error, ConfigError)  # what the command line reports in one line
    assert [refusal.path for refusal in error.refused] == [bomb, notes]
    assert str(error) == f"{error.refused[0]}; {error.refused[1]}" and "\n" not in str(error)
    assert str(error.refused[0]).startswith(f"{bomb}: too large")
    alone = predict(network, [good, other])
    assert [(p.path, p.class_index, p.top) for p in error.predictions] == [
        (p.path, p.class_index, p.top) for p in alone
    ]


def readme_notebook_example() -> str:
    """The Python block of the "In a notebook" section of docs/using-a-model.md."""
    readme = (REPO / "docs" / "using-a-model.md").read_text()
    section = readme.split("## In a notebook", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_notebook_example_runs_and_prints_the_predicted_class(tmp_path, monkeypatch):
    code = readme_notebook_example()
    assert len(code.strip().splitlines()) <= 6
    run_path = re.search(r'load_checkpoint\("([^"]+)"\)', code).group(1)
    image_path = re.search(r'predict\(network, \["([^"]+)"\]\)', code).group(1)
    # The run and the image the example names, made here: a tiny run and a drawn bar.
    run_dir = tiny_run(tmp_path / "tiny", option="mnist", folder="MNIST")
    os.renames(run_dir, tmp_path / run_path)
    picture = np.full((120, 160), 255, dtype=np.uint8)
    picture[30:40, 30:130] = 0  # the tiny data's class 4 is a bar in rows 10 and 11
    Image.fromarray(picture).save(tmp_path / image_path)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "using-a-model.md", "exec"), {})
    expected = predict(load_checkpoint(run_path), [image_path])[0]
    assert printed.getvalue().splitlines()[-1].startswith(expected.label)


def enlarged_inverted_off_centre(images: np.ndarray, folder: Path) -> list[Path]:
    """Each 28 x 28 image as a person's scan: 200 x 200, dark on light, off centre, PNG."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for number, image in enumerate(images):
        enlarged = Image.fromarray(image).resize((200, 200), Image.Resampling.BILINEAR)
        page = Image.new("L", (320, 280), 255)
        corner = (int(rng.integers(0, 120)), int(rng.integers(0, 80)))
        page.paste(Image.fromarray(255 - np.asarray(enlarged)), corner)
        page.save(folder / f"{number}.png")
        paths.append(folder / f"{number}.png")
    return paths


@pytest.mark.parametrize(
    ("option", "dataset", "agreement", "accuracy_change"),
    # Measured: MNIST 0.9933 agreement, accuracy 0.9833 -> 0.9833; Fashion-MNIST 0.9300,
    # 0.8767 -> 0.8533 (its photos were made in more steps than can be redone from a scan).
    [("mnist", "MNIST", 0.95, 0.03), ("fashion_mnist", "FashionMNIST", 0.9, 0.05)],
)
def test_enlarged_inverted_off_centre_test_images_are_classified_as_the_originals(
    tmp_path, option, dataset, agreement, accuracy_change
):
    root = real_data(dataset)
    two_epochs = ["trainer=cpu", "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0"]
    train(
        compose_train_config(
            tmp_path / "run",
            root,
            [*two_epochs, f"data={option}", "logger=none", "diagnostics=none"],
        )
    )
    network = load_checkpoint(tmp_path / "run")
    images, labels = load_split(root, dataset, train=False, download=False, num_classes=10)
    images, labels = images[:300], labels[:300]
    with torch.no_grad():
        originals = network(images).argmax(dim=1)
    paths = enlarged_inverted_off_centre(images.numpy(), tmp_path / "scans")
    scans = torch.tensor([prediction.class_index for prediction in predict(network, paths)])
    measured = float((scans == originals).float().mean())
    accuracies = [float((guess == labels).float().mean()) for guess in (originals, scans)]
    print(
        f"{option}: agreement {measured:.4f}, accuracy {accuracies[0]:.4f} -> {accuracies[1]:.4f}"
    )
    assert measured >= agreement
    assert abs(accuracies[1] - accuracies[0]) <= accuracy_change
