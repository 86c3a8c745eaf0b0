"""A person's image file becomes a 28 x 28 image made the way the dataset's images were."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from mlplab.data.image_decoding import FORMAT_NAMES, WORKING_SIDE, ImageRefused, decode_image
from mlplab.data.images import CENTRE, LAYOUTS, SIZE, prepare_image
from mlplab.data.mnist import load_split
from mlplab.errors import ConfigError
from tests.conftest import real_data, write_blank_png


def seven(ink: int | tuple = 0, paper: int | tuple = 255, mode: str = "L") -> Image.Image:
    """A hand-drawn-looking 7 in a 240 x 200 picture, off centre."""
    image = Image.new(mode, (240, 200), paper)
    ImageDraw.Draw(image).line([(30, 30), (120, 30), (70, 170)], fill=ink, width=14)
    return image


def saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def rows_and_columns(prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(prepared.any(axis=1))[0], np.nonzero(prepared.any(axis=0))[0]


def test_a_bar_is_cropped_scaled_into_a_20_pixel_box_and_placed_by_its_centre_of_mass(tmp_path):
    picture = Image.new("L", (300, 260), 255)
    ImageDraw.Draw(picture).rectangle([20, 30, 69, 129], fill=0)  # 50 wide, 100 high
    prepared = prepare_image(saved(picture, tmp_path / "bar.png"))
    assert prepared.shape == (SIZE, SIZE) and prepared.dtype == np.uint8
    rows, columns = rows_and_columns(prepared)
    assert (len(rows), len(columns)) == (20, 10)
    mass = prepared.astype(float)
    centre = [(mass.sum(axis=1 - axis) @ np.arange(SIZE)) / mass.sum() for axis in (0, 1)]
    assert np.allclose(centre, CENTRE, atol=0.5)
    assert prepared.max() == 255


def test_fashion_images_fill_all_28_pixels_and_are_centred(tmp_path):
    picture = Image.new("L", (300, 260), 255)
    ImageDraw.Draw(picture).rectangle([20, 30, 69, 129], fill=0)
    prepared = prepare_image(saved(picture, tmp_path / "bar.png"), "FashionMNIST")
    rows, columns = rows_and_columns(prepared)
    assert (rows[0], rows[-1], columns[0], columns[-1]) == (0, 27, 7, 20)


def test_dark_ink_on_light_paper_and_light_ink_on_dark_give_the_same_image(tmp_path):
    dark_on_light = prepare_image(saved(seven(ink=0, paper=255), tmp_path / "a.png"))
    light_on_dark = prepare_image(saved(seven(ink=255, paper=0), tmp_path / "b.png"))
    assert np.array_equal(dark_on_light, light_on_dark)
    assert dark_on_light[0, 0] == 0  # the paper is MNIST's black


def test_colour_grey_paper_and_transparent_canvases_give_the_grey_drawings_image(tmp_path):
    grey = prepare_image(saved(seven(), tmp_path / "grey.png"))
    blue_on_yellow = seven(ink=(20, 40, 200), paper=(250, 230, 120), mode="RGB")
    for name, picture in [
        ("colour.png", blue_on_yellow),
        ("pencil.png", seven(ink=90, paper=180)),
        ("transparent.png", seven(ink=(0, 0, 0, 255), paper=(255, 255, 255, 0), mode="RGBA")),
    ]:
        assert np.array_equal(prepare_image(saved(picture, tmp_path / name)), grey), name
    # JPEG's ripples around the strokes move some pixels by a few grey levels.
    photo = prepare_image(saved(blue_on_yellow, tmp_path / "colour.jpg")).astype(int)
    assert np.abs(photo - grey).mean() < 4


def refusal(path: Path) -> str:
    """The one line prepare_image refuses `path` with."""
    with pytest.raises(ImageRefused) as error:
        prepare_image(path)
    assert isinstance(error.value, ConfigError) and error.value.path == path
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_blank_image_is_refused_naming_the_file(tmp_path):
    path = saved(Image.new("RGB", (64, 48), (200, 200, 200)), tmp_path / "blank.png")
    assert refusal(path).startswith(f"{path}: looks blank: its darkest ink")


def test_a_file_that_is_not_an_image_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    assert refusal(path) == f"{path}: not a {FORMAT_NAMES} file: pass PNG or JPEG files"


def test_an_empty_file_is_refused_as_empty(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    assert refusal(path).startswith(f"{path}: the file is empty (0 bytes): copy or save")


def test_a_truncated_png_is_refused_as_damaged(tmp_path):
    whole = saved(seven(), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(whole[: len(whole) // 2])
    message = refusal(path)
    assert message.startswith(f"{path}: cannot be decoded (")
    assert message.endswith("the file is damaged or incomplete; copy or save the image again")


@pytest.fixture
def decoding_forbidden(monkeypatch):
    """Any attempt to decode pixels fails the test: a refusal must come from the header."""

    def load(image):
        pytest.fail(f"decoded {image.size[0]} x {image.size[1]} pixels before refusing them")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_a_decompression_bomb_is_refused_before_a_pixel_is_decoded(tmp_path, decoding_forbidden):
    bomb = write_blank_png(tmp_path / "bomb.png", 20_000, 20_000)  # 400 megapixels, 50 kB
    assert bomb.stat().st_size < 100_000
    assert refusal(bomb).startswith(
        f"{bomb}: too large: its header declares over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
        "above the 50 megapixels mlplab decodes"
    )


def test_an_image_of_huge_dimensions_is_refused_before_a_pixel_is_decoded(
    tmp_path, decoding_forbidden
):
    # 81 megapixels: under Pillow's own limits, so only mlplab's refuses it.
    huge = write_blank_png(tmp_path / "huge.png", 9_000, 9_000)
    assert Image.open(huge).size == (9_000, 9_000)
    assert refusal(huge).startswith(
        f"{huge}: too large: 9,000 x 9,000 pixels, above the 50 megapixels"
    )
    assert refusal(huge).endswith(
        f"scale it down to at most {WORKING_SIDE} pixels on its longer side"
    )


def test_refusing_hostile_images_keeps_peak_memory_at_what_importing_takes(tmp_path):
    # Measured in a fresh process: the peak of this one is whatever other tests left behind.
    bomb = write_blank_png(tmp_path / "bomb.png", 20_000, 20_000)
    huge = write_blank_png(tmp_path / "huge.png", 9_000, 9_000)
    script = f"""
import resource, sys
from pathlib import Path
from mlplab.data.image_decoding import ImageRefused
from mlplab.data.images import prepare_image
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in ({str(bomb)!r}, {str(huge)!r}):
    try:
        prepare_image(Path(path))
    except ImageRefused:
        pass
    else:
        sys.exit(f"{{path}} was not refused")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - imported) * (1 if sys.platform == "darwin" else 1024))
"""
    # The process imports mlplab from where this one does (a mutation run's copy included).
    search_path = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=search_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Decoding the 81 megapixels took 1.1 GB before they were found blank.
    assert int(result.stdout) < 20 * 2**20


def test_a_jpeg_photo_above_the_pixel_limit_is_decoded_reduced_and_prepared(tmp_path):
    photo = Image.new("L", (10_000, 6_000), 235)  # 60 megapixels; JPEG decodes it at 1/4
    ImageDraw.Draw(photo).line([(4000, 1500), (6000, 1500), (5000, 4500)], fill=30, width=300)
    path = saved(photo, tmp_path / "photo.jpg")
    assert max(decode_image(path).size) <= WORKING_SIDE
    small = saved(photo.resize((500, 300), Image.Resampling.BOX), tmp_path / "small.png")
    assert np.abs(prepare_image(path).astype(int) - prepare_image(small)).mean() < 4


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_each_layout_is_how_the_real_datasets_images_were_made(dataset):
    images, _ = load_split(real_data(dataset), dataset, train=True, download=False, num_classes=10)
    layout = LAYOUTS[dataset]
    ink = images.numpy()[:10_000].astype(float)
    rows, columns = ink.any(axis=2), ink.any(axis=1)
    first = lambda mask: mask.argmax(axis=1)  # noqa: E731
    last = lambda mask: mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)  # noqa: E731
    heights, widths = last(rows) - first(rows) + 1, last(columns) - first(columns) + 1
    assert np.mean(np.maximum(heights, widths) == layout.box) > 0.95
    if layout.by_centre_of_mass:
        mass = ink.sum(axis=(1, 2))
        centre_row = (ink.sum(axis=2) @ np.arange(SIZE)) / mass
        centre_column = (ink.sum(axis=1) @ np.arange(SIZE)) / mass
        assert (
            np.mean((abs(centre_row - CENTRE) <= 0.5) & (abs(centre_column - CENTRE) <= 0.5)) > 0.99
        )
    else:
        box_centre_row = (first(rows) + last(rows) + 1) / 2
        box_centre_column = (first(columns) + last(columns) + 1) / 2
        assert (
            np.mean(
                (abs(box_centre_row - SIZE / 2) <= 1) & (abs(box_centre_column - SIZE / 2) <= 1)
            )
            > 0.95
        )
