"""A person's image file -> a 28 x 28 image made the way the dataset's images were.

MNIST's digits were scaled, keeping their aspect ratio, so that the longer side of the ink
fills a 20 x 20 box, then placed in 28 x 28 by their centre of mass; the ink is light on a
black background. Fashion-MNIST's photos were scaled so that their longer side fills all 28
pixels, and centred. A person's photo or scan gets the same treatment here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mlplab.data.image_decoding import ImageRefused, decode_image

SIZE = 28  # pixels a side: what the network sees
# The centre of mass of MNIST's training images lies within half a pixel of (14, 14), counting
# rows and columns from 0 (tests/test_images.py measures it): they were shifted by whole pixels.
CENTRE = 14
# Where the ink ends: a quarter of the darkest stroke. Fainter pixels (the edge of the stroke,
# paper texture, shadows, JPEG's ripples) are kept but do not widen the box that is scaled.
INK_EDGE = 0.25


@dataclass(frozen=True)
class Layout:
    """How a dataset's 28 x 28 images were made from their originals."""

    box: int  # the longer side of the ink's bounding box, in pixels
    by_centre_of_mass: bool  # placed by the ink's centre of mass, else by the box's centre


# By torchvision's dataset name; tests/test_images.py measures them on the real files.
LAYOUTS = {
    "MNIST": Layout(box=20, by_centre_of_mass=True),
    "FashionMNIST": Layout(box=SIZE, by_centre_of_mass=False),
    # KMNIST was made "in MNIST's format"; its files are not at hand to measure its layout.
    "KMNIST": Layout(box=20, by_centre_of_mass=True),
}
# Below this much contrast between the darkest ink and the paper there is no digit to see.
FAINTEST_INK = 16  # grey levels out of 255


def read_ink(path: Path) -> np.ndarray:
    """The image as ink on a black background: float32 (height, width), 0 where the paper is.

    A drawing on a transparent canvas is its opacity. Otherwise the image is made greyscale and
    inverted when its background (the median grey level) is light; the background level is
    then taken off, so grey paper becomes black. A large image is first reduced to at most
    WORKING_SIDE pixels a side (`mlplab.data.image_decoding`); ImageRefused for a file it
    cannot read.
    """
    image = decode_image(path)
    if image.has_transparency_data:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32)
        if alpha.min() < 255:
            return alpha
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    background = float(np.median(grey))
    if background > 255 / 2:
        grey, background = 255 - grey, 255 - background
    return np.clip(grey - background, 0, None)


def prepare(ink: np.ndarray, layout: Layout, path: Path) -> np.ndarray:
    """Ink on black (any size) -> uint8 (28, 28): cropped to the ink, its longer side scaled
    to the layout's box, placed by its centre of mass or centred."""
    darkest = float(ink.max())
    if darkest < FAINTEST_INK:
        raise ImageRefused(
            path,
            f"looks blank: its darkest ink differs from the background by {darkest:.0f} "
            f"grey levels (at least {FAINTEST_INK} are needed): pass an image with a "
            "visible character on a plain background",
        )
    ink = ink * (255 / darkest)  # the darkest stroke becomes MNIST's full white
    rows, columns = np.nonzero(ink >= INK_EDGE * 255)
    box = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scale = layout.box / max(box.shape)
    width, height = (max(1, round(side * scale)) for side in (box.shape[1], box.shape[0]))
    small = Image.fromarray(box).resize((width, height), Image.Resampling.LANCZOS)
    small = np.clip(np.asarray(small), 0, 255)
    top, left = centre_of_mass_corner(small) if layout.by_centre_of_mass else centred_corner(small)
    canvas = Image.new("L", (SIZE, SIZE))
    canvas.paste(Image.fromarray(np.rint(small).astype(np.uint8)), (left, top))
    return np.asarray(canvas)


def centre_of_mass_corner(image: np.ndarray) -> tuple[int, int]:
    """Where the top left corner of `image` goes for its centre of mass to be on (14, 14)."""
    mass = image.sum()
    centre_row = (image.sum(axis=1) @ np.arange(image.shape[0])) / mass
    centre_column = (image.sum(axis=0) @ np.arange(image.shape[1])) / mass
    return round(CENTRE - centre_row), round(CENTRE - centre_column)


def centred_corner(image: np.ndarray) -> tuple[int, int]:
    """Where the top left corner of `image` goes for it to be centred."""
    return (SIZE - image.shape[0]) // 2, (SIZE - image.shape[1]) // 2


def prepare_image(path: Path, dataset: str = "MNIST") -> np.ndarray:
    """An image file (PNG, JPEG, ...; any size, colour or grey, dark ink on light paper or
    light on dark) -> uint8 (28, 28) light on black, made as `dataset`'s images were."""
    return prepare(read_ink(path), LAYOUTS[dataset], path)
