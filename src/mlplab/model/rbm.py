"""Greedy layer-wise pre-training of an MLP's hidden layers as restricted Boltzmann machines.

Hinton, Osindero and Teh (2006): before any label is seen, the first hidden layer learns to
reconstruct the images as an RBM, the next one learns to reconstruct the first layer's
outputs, and so on up; supervised training then starts from those weights. Choices follow
Hinton's "A Practical Guide to Training RBMs" (2010): binary units, CD-k with the hidden
probabilities (not samples) in the statistics and the reconstructions, small random weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.nn.functional import linear

from mlplab.model.compute import FLOPS_PER_MULTIPLY_ADD
from mlplab.model.nets import linear_layers
from mlplab.results import RECONSTRUCTION_ERROR, layer_tag

INITIAL_WEIGHT_STD = 0.01  # the guide's N(0, 0.01^2): small enough not to saturate any unit
# The guide starts each visible bias at log(p / (1 - p)) of the unit's mean p over the data;
# pixels that are 0 in every image would make that -infinity.
SMALLEST_MEAN = 1e-3


class RBM(nn.Module):
    """Binary visible and hidden units joined by `weight` (hidden, visible), with their biases."""

    def __init__(self, visible_data: torch.Tensor, hidden: int, generator: torch.Generator):
        super().__init__()
        device = visible_data.device
        weight = torch.randn(hidden, visible_data.shape[1], generator=generator, device=device)
        self.weight = nn.Parameter(weight * INITIAL_WEIGHT_STD)
        mean = visible_data.mean(dim=0).clamp(SMALLEST_MEAN, 1 - SMALLEST_MEAN)
        self.visible_bias = nn.Parameter(torch.log(mean / (1 - mean)))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden, device=device))

    def hidden_probabilities(self, visible: torch.Tensor) -> torch.Tensor:
        """P(h = 1 | v): (N, visible) -> (N, hidden); a Linear layer followed by a sigmoid."""
        return torch.sigmoid(linear(visible, self.weight, self.hidden_bias))

    def visible_probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(v = 1 | h): (N, hidden) -> (N, visible)."""
        return torch.sigmoid(linear(hidden, self.weight.t(), self.visible_bias))

    @torch.no_grad()
    def contrastive_divergence(
        self, visible: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Set each parameter's .grad to minus the CD-k estimate of the log-likelihood's gradient.

        Returns the batch's summed squared reconstruction error after the first Gibbs step.
        Multiply-adds per weight and example: 1 (data to hidden) + 2 per Gibbs step + 2 (the
        two outer products), as `RBMPretraining.flops` counts them.
        """
        data_hidden = self.hidden_probabilities(visible)
        model_hidden = data_hidden
        for step in range(k):
            sampled = torch.bernoulli(model_hidden, generator=generator)
            reconstruction = self.visible_probabilities(sampled)
            if step == 0:
                squared_error = (visible - reconstruction).square().sum()
            model_hidden = self.hidden_probabilities(reconstruction)
        rows = len(visible)
        self.weight.grad = (model_hidden.t() @ reconstruction - data_hidden.t() @ visible) / rows
        self.visible_bias.grad = (reconstruction - visible).mean(dim=0)
        self.hidden_bias.grad = (model_hidden - data_hidden).mean(dim=0)
        return squared_error


class RBMPretraining:
    """Pre-trains each hidden Linear layer, input to output, as an RBM with CD-k.

    Each RBM trains for `epochs` passes over the data in shuffled batches of `batch_size`,
    by SGD with learning rate `lr` on the CD-k gradient; its weights and hidden biases then
    replace the layer's, and the layer's sigmoid outputs are the next RBM's data. The output
    layer is left as it is.
    """

    def __init__(self, k: int = 1, epochs: int = 10, lr: float = 0.1, batch_size: int = 100):
        self.k = k
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def __call__(
        self, network: nn.Module, features: torch.Tensor, loggers: Sequence[Logger], seed: int
    ) -> None:
        """Pre-train `network`'s hidden layers on `features` (N, in_features), values in [0, 1].

        Logs each layer's reconstruction error per epoch to `loggers`, at the steps before the
        supervised training's first step, 0: the epochs of all layers in the order they ran,
        the last at step -1. (A resumed run drops its curves' points from the step it resumes
        at on, so pre-training must not log at training's steps.) The batch order and the
        Gibbs samples come from a generator of their own, seeded with `seed`.
        """
        generator = torch.Generator(device=features.device).manual_seed(seed)
        hidden_layers = linear_layers(network)[:-1]
        step = -len(hidden_layers) * self.epochs
        data = features
        for number, layer in enumerate(hidden_layers, start=1):
            rbm = RBM(data, layer.out_features, generator)
            optimizer = torch.optim.SGD(rbm.parameters(), lr=self.lr)
            tag = layer_tag(RECONSTRUCTION_ERROR, number)
            for _ in range(self.epochs):
                error = self.train_epoch(rbm, optimizer, data, generator)
                for logger in loggers:
                    logger.log_metrics({tag: error}, step=step)
                step += 1
            with torch.no_grad():
                layer.weight.copy_(rbm.weight)
                layer.bias.copy_(rbm.hidden_bias)
                if number < len(hidden_layers):
                    data = rbm.hidden_probabilities(data)
        for logger in loggers:
            logger.save()

    def train_epoch(
        self,
        rbm: RBM,
        optimizer: torch.optim.Optimizer,
        data: torch.Tensor,
        generator: torch.Generator,
    ) -> float:
        """One pass over `data`; returns the mean squared reconstruction error per visible unit."""
        order = torch.randperm(len(data), generator=generator, device=data.device)
        squared_error = torch.zeros((), device=data.device)
        for start in range(0, len(data), self.batch_size):
            squared_error += rbm.contrastive_divergence(
                data[order[start : start + self.batch_size]], self.k, generator
            )
            optimizer.step()
        return squared_error.item() / data.numel()

    def flops(self, network: nn.Module, examples: int) -> int:
        """Floating-point operations of pre-training `network` on `examples` examples.

        Per RBM: (3 + 2k) multiply-adds per weight, example and epoch (see
        `RBM.contrastive_divergence`), and one more per weight and example to turn the
        training set into the next RBM's data.
        """
        hidden_layers = linear_layers(network)[:-1]
        multiply_adds = 0
        for number, layer in enumerate(hidden_layers, start=1):
            passes = self.epochs * (3 + 2 * self.k) + (number < len(hidden_layers))
            multiply_adds += layer.in_features * layer.out_features * examples * passes
        return FLOPS_PER_MULTIPLY_ADD * multiply_adds
