"""A person's image file decoded with bounded memory, or refused in one line that names it.

Only the formats people keep drawings, scans and photos in are opened (Pillow's plugins for
others, EPS among them, run outside programs or are rarely seen). The size is checked from
the header before any pixel is decoded; a JPEG is decoded at the smallest power-of-two
reduction that keeps its longer side at least WORKING_SIDE; a larger image of another format
is reduced to that right after decoding, before the float arrays of the preparation exist.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from mlplab.errors import ConfigError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF or WebP"
# The longer side the preparation works at. The ink is cropped out of it and scaled to 20 or
# 28 pixels, so a character that fills a tenth of the page still keeps 200 pixels.
WORKING_SIDE = 2048
# The most pixels decoded: a 600 dpi scan of an A4 or Letter page (35 megapixels) and an
# 8000 x 6000 photo (48) pass. Decoding takes up to 8 bytes a pixel (a colour PNG with
# transparency, decoded and then reduced), so at most about 400 MB (README: measured); the
# 28 x 28 result needs none of it. Pillow's own limit refuses only above 179 megapixels.
MAX_PIXELS = 50_000_000


class ImageRefused(ConfigError):
    """An image file that cannot be classified; the message is `<path>: <why>: <what to do>`."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def too_large(path: Path, pixels: str) -> ImageRefused:
    return ImageRefused(
        path,
        f"too large: {pixels}, above the {MAX_PIXELS // 1_000_000} megapixels mlplab decodes "
        "(a 28 x 28 image needs far fewer; a file this large may be a decompression bomb): "
        f"scale it down to at most {WORKING_SIDE} pixels on its longer side",
    )


def open_checked(path: Path) -> Image.Image:
    """The image file opened (its header read, nothing decoded), refused if too large."""
    if path.is_file() and path.stat().st_size == 0:
        raise ImageRefused(path, "the file is empty (0 bytes): copy or save the image again")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its limit; the check below refuses those and more, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError:
        raise too_large(
            path, f"its header declares over {2 * Image.MAX_IMAGE_PIXELS:,} pixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageRefused(path, f"not a {FORMAT_NAMES} file: pass PNG or JPEG files") from None
    except (OSError, ValueError) as error:  # no such file, a folder, a header Pillow rejects
        reason = getattr(error, "strerror", None) or str(error)
        raise ImageRefused(path, f"cannot be read ({reason}): pass PNG or JPEG files") from None
    if isinstance(image, JpegImagePlugin.JpegImageFile):  # MPO, a phone's JPEG, too
        # Decoded reduced by 1/2, 1/4 or 1/8 already: libjpeg never makes the full image.
        scale = WORKING_SIDE / max(image.size)
        image.draft(None, tuple(max(1, math.ceil(side * scale)) for side in image.size))
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise too_large(path, f"{width:,} x {height:,} pixels")
    return image


def working_size(image: Image.Image) -> Image.Image:
    """A new image: `image` reduced by a whole factor (each pixel the mean of a block) until
    its longer side is at most WORKING_SIDE."""
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    if factor == 1:
        return image.copy()
    # Pillow reduces 8-bit grey and colour only; the preparation goes to these modes anyway.
    mode = "RGBA" if image.has_transparency_data else "L"
    return (image if image.mode == mode else image.convert(mode)).reduce(factor)


def decode_image(path: Path) -> Image.Image:
    """The image of an image file, upright, its longer side at most WORKING_SIDE pixels;
    ImageRefused when it is not an image, damaged or too large."""
    with open_checked(path) as opened:
        try:
            opened.load()
            # Photos taken sideways stand upright; in place, so no copy unless turned.
            ImageOps.exif_transpose(opened, in_place=True)
        except (OSError, ValueError, EOFError) as error:
            raise ImageRefused(
                path,
                f"cannot be decoded ({error}): the file is damaged or incomplete; "
                "copy or save the image again",
            ) from None
        return working_size(opened)  # a new image: `opened` is unusable once closed
