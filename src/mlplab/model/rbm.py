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

from mlplab.model.compute import FLOPS_PER_MULTIPLY_ADD
from mlplab.model.nets import linear_layers
from mlplab.results import RECONSTRUCTION_ERROR, layer_tag

INITIAL_WEIGHT_STD = 0.01  # the guide's N(0, 0.01^2): small enough not to saturate any unit
# The guide starts each visible bias at log(p / (1 - p)) of the unit's mean p over the data;
# pixels that are 0 in every image would make that -infinity.
SMALLEST_MEAN = 1e-3


class RBMs(nn.Module):
    """K restricted Boltzmann machines of one shape, stacked (one machine: K = 1): binary
    visible and hidden units joined by weight[k] (hidden, visible), with their biases.

    Each machine draws its initial weights and its Gibbs samples from a generator of its own,
    so machine k is the one it would be alone; the products run as one batched product.
    """

    def __init__(
        self, visible_data: torch.Tensor, hidden: int, generators: list[torch.Generator]
    ) -> None:
        """`visible_data` (K, N, visible): each machine's training data."""
        super().__init__()
        copies, _, visible = visible_data.shape
        like = {"device": visible_data.device, "dtype": visible_data.dtype}
        weights = [torch.randn(hidden, visible, generator=g, **like) for g in generators]
        weight = torch.stack(weights)
        self.weight = nn.Parameter(weight * INITIAL_WEIGHT_STD)
        mean = visible_data.mean(dim=1).clamp(SMALLEST_MEAN, 1 - SMALLEST_MEAN)
        self.visible_bias = nn.Parameter(torch.log(mean / (1 - mean)))
        self.hidden_bias = nn.Parameter(torch.zeros(copies, hidden, **like))
        self.generators = generators

    def hidden_probabilities(self, visible: torch.Tensor) -> torch.Tensor:
        """P(h = 1 | v): (K, N, visible) -> (K, N, hidden); a Linear layer and a sigmoid."""
        return torch.sigmoid(
            torch.baddbmm(self.hidden_bias.unsqueeze(1), visible, self.weight.transpose(1, 2))
        )

    def visible_probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(v = 1 | h): (K, N, hidden) -> (K, N, visible)."""
        return torch.sigmoid(torch.baddbmm(self.visible_bias.unsqueeze(1), hidden, self.weight))

    def sample(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Binary units drawn with `probabilities` (K, N, units), each machine's from its own
        generator."""
        return torch.stack(
            [torch.bernoulli(p, generator=g) for p, g in zip(probabilities, self.generators)]
        )

    @torch.no_grad()
    def contrastive_divergence(self, visible: torch.Tensor, k: int) -> torch.Tensor:
        """Set each parameter's .grad to minus the CD-k estimate of the log-likelihood's gradient
        on each machine's batch `visible` (K, N, visible).

        Returns each machine's summed squared reconstruction error after the first Gibbs step
        (K,). Multiply-adds per weight and example: 1 (data to hidden) + 2 per Gibbs step + 2
        (the two outer products), as `RBMPretraining.flops` counts them.
        """
        data_hidden = self.hidden_probabilities(visible)
        model_hidden = data_hidden
        for step in range(k):
            reconstruction = self.visible_probabilities(self.sample(model_hidden))
            if step == 0:
                squared_error = (visible - reconstruction).square().sum(dim=(1, 2))
            model_hidden = self.hidden_probabilities(reconstruction)
        rows = visible.shape[1]
        model_statistics = model_hidden.transpose(1, 2) @ reconstruction
        self.weight.grad = (model_statistics - data_hidden.transpose(1, 2) @ visible) / rows
        self.visible_bias.grad = (reconstruction - visible).mean(dim=1)
        self.hidden_bias.grad = (model_hidden - data_hidden).mean(dim=1)
        return squared_error


class RBMPretraining:
    """Pre-trains each hidden Linear layer, input to output, as an RBM with CD-k.

    Each RBM trains for `epochs` passes over the data in shuffled batches of `batch_size`,
    by SGD with learning rate `lr` on the CD-k gradient; its weights and hidden biases then
    replace the layer's, and the layer's sigmoid outputs are the next RBM's data. The output
    layer is left as it is. Several networks of one shape pre-train together, their RBMs
    stacked: each gets the RBMs it gets alone.
    """

    def __init__(self, k: int = 1, epochs: int = 10, lr: float = 0.1, batch_size: int = 100):
        self.k = k
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def __call__(
        self,
        networks: list[nn.Module],
        features: torch.Tensor,
        loggers: list[Sequence[Logger]],
        seeds: list[int],
    ) -> None:
        """Pre-train each of `networks` (MLPs of one shape) on its slice of `features`
        (K, N, in_features), values in [0, 1].

        Logs each layer's reconstruction error per epoch to the network's `loggers`, at the
        steps before the supervised training's first step, 0: the epochs of all layers in the
        order they ran, the last at step -1. (A resumed run drops its curves' points from the
        step it resumes at on, so pre-training must not log at training's steps.) A network's
        batch order and Gibbs samples come from a generator of its own, seeded with its seed.
        """
        generators = [torch.Generator(device=features.device).manual_seed(s) for s in seeds]
        hidden_layers = [linear_layers(network)[:-1] for network in networks]
        depth = len(hidden_layers[0])
        step = -depth * self.epochs
        data = features
        for number, layers in enumerate(zip(*hidden_layers), start=1):
            rbms = RBMs(data, layers[0].out_features, generators)
            optimizer = torch.optim.SGD(rbms.parameters(), lr=self.lr)
            tag = layer_tag(RECONSTRUCTION_ERROR, number)
            for _ in range(self.epochs):
                errors = self.train_epoch(rbms, optimizer, data)
                for error, network_loggers in zip(errors, loggers):
                    for logger in network_loggers:
                        logger.log_metrics({tag: error}, step=step)
                step += 1
            with torch.no_grad():
                for copy, layer in enumerate(layers):
                    layer.weight.copy_(rbms.weight[copy])
                    layer.bias.copy_(rbms.hidden_bias[copy])
                if number < depth:
                    data = rbms.hidden_probabilities(data)
        for logger in (logger for network_loggers in loggers for logger in network_loggers):
            logger.save()

    def train_epoch(
        self, rbms: RBMs, optimizer: torch.optim.Optimizer, data: torch.Tensor
    ) -> list[float]:
        """One pass over each machine's `data` (K, N, visible), in its own shuffled order;
        returns each machine's mean squared reconstruction error per visible unit."""
        copies, examples, visible = data.shape
        orders = torch.stack(
            [torch.randperm(examples, generator=g, device=data.device) for g in rbms.generators]
        )
        # Machine k's examples are rows k * examples, ... of the copies' data end to end.
        orders += torch.arange(copies, device=data.device).unsqueeze(1) * examples
        end_to_end = data.flatten(0, 1)
        squared_error = torch.zeros(copies, device=data.device)
        for start in range(0, examples, self.batch_size):
            index = orders[:, start : start + self.batch_size]
            batch = end_to_end.index_select(0, index.reshape(-1)).view(copies, -1, visible)
            squared_error += rbms.contrastive_divergence(batch, self.k)
            optimizer.step()
        return [error / (examples * visible) for error in squared_error.tolist()]

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
