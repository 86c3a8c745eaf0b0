"""A trained network out of its checkpoint, and predictions for image files: the Python API
(`from mlplab import load_checkpoint, predict`) and what `python -m mlplab.predict` runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mlplab.data.image_decoding import ImageRefused
from mlplab.data.images import prepare_image
from mlplab.data.mnist import to_features
from mlplab.errors import ConfigError
from mlplab.job.build import load_classifier
from mlplab.safety.checkpoints import checkpoint_file, read_checkpoint_to_rebuild


class TrainedNetwork(nn.Module):
    """A trained network in eval mode, with the config of its run and its dataset's class names.

    Called on a batch of images it returns logits (N, classes):
    - uint8 (N, 28, 28), pixels as the dataset stores them (light ink on black, 0 to 255):
      prepared inside exactly as in training (scaled to [0, 1], standardised if the run was);
    - float (N, 784) or (N, 28, 28): taken as already prepared, the features the run's data
      module trains on; nothing more is done to them.
    """

    def __init__(self, network: nn.Module, config: DictConfig) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.class_names: list[str] = list(config.data.class_names)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            data = self.config.data
            images = to_features(images, data.normalize, data.mean, data.std)
        elif not images.is_floating_point():
            raise TypeError(
                f"images of dtype {images.dtype}: pass uint8 pixels (N, 28, 28) or prepared "
                "float features (N, 784)"
            )
        return self.network(images)


def load_checkpoint(path: str | Path) -> TrainedNetwork:
    """The network of a checkpoint (a .ckpt, or a run folder: its best checkpoint), on the CPU.

    The file is loaded with torch.load(weights_only=True): it holds tensors and plain values
    only, so loading it runs no code from it.
    """
    checkpoint = read_checkpoint_to_rebuild(checkpoint_file(Path(path)))
    config = OmegaConf.create(checkpoint["hyper_parameters"])
    # torch.compile pays off over many training steps; a loaded network answers at once.
    classifier = load_classifier(OmegaConf.merge(config, {"compile": False}), checkpoint)
    return TrainedNetwork(classifier.network, config)


@dataclass(frozen=True)
class Prediction:
    """What the network makes of one image file."""

    path: Path
    class_index: int  # the most probable class
    label: str  # its name
    probability: float
    top: list[tuple[str, float]]  # the most probable classes, most probable first
    image: np.ndarray  # uint8 (28, 28): the prepared image the network saw


class ImagesRefused(ConfigError):
    """Some image files could not be classified: `refused` says which and why, one
    ImageRefused each; `predictions` holds the other files', classified."""

    def __init__(self, refused: list[ImageRefused], predictions: list[Prediction]) -> None:
        super().__init__("; ".join(map(str, refused)))
        self.refused = refused
        self.predictions = predictions


@torch.no_grad()
def predict(network: TrainedNetwork, paths: Iterable[str | Path], top: int = 3) -> list[Prediction]:
    """Classify image files (PNG, JPEG; any size, colour or grey, dark ink on light paper or
    light on dark), each prepared as the images of the network's dataset were made
    (`mlplab.data.images`). One Prediction per file, in order; ImagesRefused when a file is not an
    image, damaged, too large or blank, after the others are classified."""
    prepared, refused = [], []
    for path in map(Path, paths):
        try:
            prepared.append((path, prepare_image(path, network.config.data.dataset)))
        except ImageRefused as error:
            refused.append(error)
    predictions = classify(network, prepared, top)
    if refused:
        raise ImagesRefused(refused, predictions)
    return predictions


def classify(
    network: TrainedNetwork, prepared: list[tuple[Path, np.ndarray]], top: int
) -> list[Prediction]:
    """Predictions for (path, uint8 (28, 28) image) pairs, in one batch."""
    if not prepared:
        return []
    paths, images = zip(*prepared)
    device = next(network.parameters()).device
    batch = torch.from_numpy(np.stack(images)).to(device)
    probabilities = network(batch).softmax(dim=1).cpu()
    best = probabilities.topk(min(top, probabilities.shape[1]), dim=1)
    return [
        Prediction(
            path=path,
            class_index=int(indices[0]),
            label=network.class_names[indices[0]],
            probability=float(values[0]),
            top=[(network.class_names[i], float(p)) for i, p in zip(indices, values)],
            image=image,
        )
        for path, image, values, indices in zip(paths, images, best.values, best.indices)
    ]
