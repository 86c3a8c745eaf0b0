"""`python -m mlplab.predict <checkpoint or run folder> <image or folder>...`: classify image
files with a trained network.

Each image is prepared the way the images of the network's dataset were made (greyscale;
inverted when its background is light; cropped to the ink; for MNIST the longer side scaled
into a 20 x 20 box and placed in 28 x 28 by its centre of mass), then standardised as in
training. Prints each image's three most probable classes. A file that cannot be classified
(not an image, damaged, too large to decode, blank) gets one `error:` line instead; the others
are still classified, and the exit status is then 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlplab.use.trained_network import Prediction

PROGRAM = "python -m mlplab.predict"


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, with a folder standing for the image files directly inside it."""
    from PIL import Image

    from mlplab.data.image_decoding import FORMATS
    from mlplab.errors import ConfigError

    extensions = {name for name, kind in Image.registered_extensions().items() if kind in FORMATS}
    files = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(file for file in path.iterdir() if file.suffix.lower() in extensions)
        if not found:
            raise ConfigError(f"{path} holds no image files (PNG, JPEG, ...): pass images")
        files += found
    return files


def input_name(path: Path, taken: set[str]) -> str:
    """A file name for the prepared image of `path` that no other image of this run has."""
    name, number = f"{path.stem}.png", 1
    while name in taken:
        number += 1
        name = f"{path.stem}-{number}.png"
    taken.add(name)
    return name


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file, or a run folder (its best)")
    parser.add_argument("images", type=Path, nargs="+", help="image files (PNG, JPEG) or folders")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per image and line instead"
    )
    parser.add_argument(
        "--save-inputs",
        type=Path,
        metavar="DIR",
        help="write the 28 x 28 images the network saw into DIR, as PNG",
    )
    return parser.parse_args()


def line(prediction: Prediction, as_json: bool) -> str:
    """What is printed for one image: its top classes, as text or as one JSON object."""
    if not as_json:
        ranked = ", ".join(f"{label} {p:.1%}" for label, p in prediction.top)
        return f"{prediction.path}: {ranked}"
    record = {
        "path": str(prediction.path),
        "class": prediction.class_index,
        "label": prediction.label,
        "probability": prediction.probability,
        "top": [list(pair) for pair in prediction.top],
    }
    return json.dumps(record)


def main() -> None:
    arguments = parse_arguments()

    from PIL import Image  # imported here so that `--help` answers fast

    from mlplab.errors import one_line_errors
    from mlplab.use.trained_network import load_checkpoint, predict

    with one_line_errors():
        network = load_checkpoint(arguments.checkpoint)
        files = image_files(arguments.images)
    if arguments.save_inputs:
        arguments.save_inputs.mkdir(parents=True, exist_ok=True)
    saved: set[str] = set()
    failed = False
    for path in files:
        predictions = []
        with one_line_errors(stop=False):  # a bad file is reported; the others are classified
            predictions = predict(network, [path])
        failed = failed or not predictions
        for prediction in predictions:
            if arguments.save_inputs:
                name = input_name(path, saved)
                Image.fromarray(prediction.image).save(arguments.save_inputs / name)
            print(line(prediction, arguments.json), flush=True)
    raise SystemExit(2 if failed else 0)


if __name__ == "__main__":
    main()
