"""`python -m mlplab.predict` end to end, as a person runs it on their own image files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab.data.images import prepare_image
from tests.conftest import (
    SMALL_RUN,
    compose_train_config,
    train,
    write_blank_png,
    write_tiny_mnist,
)

pytestmark = pytest.mark.end_to_end


def predict_command(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlplab.predict", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def bar(row: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Dark on light, the tiny data's class k: a bar at rows 2 + 2k of 28, drawn large."""
    picture = np.full(size[::-1], 255, dtype=np.uint8)
    picture[row : row + 10, 20:140] = 0
    return Image.fromarray(picture)


@pytest.fixture
def fashion_run(tmp_path: Path) -> Path:
    """A one-epoch run on tiny Fashion-MNIST files: its folder."""
    root = write_tiny_mnist(tmp_path / "data", "FashionMNIST")
    train(compose_train_config(tmp_path / "run", root, [*SMALL_RUN, "data=fashion_mnist"]))
    return tmp_path / "run"


def test_predict_prints_the_top_three_classes_by_name_per_image(fashion_run, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    bar(20).save(images / "a.png")
    bar(60).convert("RGB").save(images / "b.jpg")
    (images / "notes.txt").write_text("not an image: a folder stands for its image files")
    result = predict_command(fashion_run, images, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(images / "a.png"), str(images / "b.jpg")]
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    names += ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    for line in lines:
        ranked = line.split(": ", 1)[1].split(", ")
        assert len(ranked) == 3
        for entry in ranked:
            label, percent = entry.rsplit(" ", 1)
            assert label in names and percent.endswith("%")


def test_predict_json_and_saved_inputs_are_what_the_network_saw(fashion_run, tmp_path):
    image = tmp_path / "shirt.png"
    bar(40).save(image)
    seen = tmp_path / "seen"
    result = predict_command(fashion_run, image, "--json", "--save-inputs", seen, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert set(record) == {"path", "class", "label", "probability", "top"}
    assert record["path"] == str(image)
    assert [label for label, _ in record["top"]][0] == record["label"]
    probabilities = [p for _, p in record["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert record["probability"] == probabilities[0] and sum(probabilities) <= 1 + 1e-6
    saved = np.asarray(Image.open(seen / "shirt.png"))
    assert saved.shape == (28, 28)
    assert np.array_equal(saved, prepare_image(image, "FashionMNIST"))


def test_each_image_that_cannot_be_classified_gets_one_line_the_others_are_classified_exit_2(
    fashion_run, tmp_path
):
    images = tmp_path / "images"
    images.mkdir()
    bar(30).save(images / "good.png")
    bar(50).convert("RGB").save(images / "photo.jpg")
    Image.new("L", (100, 100), 255).save(images / "blank.png")
    (images / "notes.png").write_text("not an image")
    (images / "empty.png").touch()
    whole = (images / "good.png").read_bytes()
    (images / "half.png").write_bytes(whole[: len(whole) // 2])
    write_blank_png(images / "bomb.png", 20_000, 20_000)  # 400 megapixels in 50 kB
    write_blank_png(images / "huge.png", 9_000, 9_000)  # under Pillow's limits, not mlplab's
    result = predict_command(fashion_run, images, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    expected = [  # one line per bad file, in the folder's order
        ("blank.png", "looks blank: its darkest ink"),
        ("bomb.png", "too large: its header declares over "),
        ("empty.png", "the file is empty (0 bytes): copy or save the image again"),
        ("half.png", "cannot be decoded ("),
        ("huge.png", "too large: 9,000 x 9,000 pixels, above the 50 megapixels"),
        ("notes.png", "not a PNG, JPEG, GIF, BMP, TIFF or WebP file: pass PNG or JPEG files"),
    ]
    assert len(errors) == len(expected), result.stderr[-2000:]
    for error, (name, reason) in zip(errors, expected):
        assert error.startswith(f"error: {images / name}: {reason}"), error
    classified = [line.split(": ")[0] for line in result.stdout.splitlines()]
    assert classified == [str(images / "good.png"), str(images / "photo.jpg")]


def test_a_foreign_checkpoint_is_refused_in_one_line(tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a checkpoint")
    good = tmp_path / "good.png"
    bar(30).save(good)
    refused = predict_command(notes, good, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith(f"error: {notes} is not a readable checkpoint")
    assert "Traceback" not in refused.stderr
