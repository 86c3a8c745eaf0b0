"""The networks: an MLP built from hidden sizes and an activation, and weight initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Maxout(nn.Module):
    """Maximum over `pieces` consecutive features: (..., units * pieces) -> (..., units)."""

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (-1, self.pieces)).amax(dim=-1)


class MLP(nn.Module):
    """Flatten -> [Linear -> BatchNorm? -> activation -> Dropout?] per hidden size -> Linear."""

    def __init__(
        self,
        hidden_sizes: list[int],
        activation: Callable[[], nn.Module],
        in_features: int = 784,
        num_classes: int = 10,
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        self.activation_positions: list[int] = []
        width_in = in_features
        for width in hidden_sizes:
            unit = activation()
            # A maxout unit takes the maximum of several affine pieces, so its Linear is wider.
            pieces = unit.pieces if isinstance(unit, Maxout) else 1
            layers.append(nn.Linear(width_in, width * pieces))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width * pieces))
            self.activation_positions.append(len(layers))
            layers.append(unit)
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 784) or (N, 1, 28, 28) -> logits (N, num_classes)."""
        return self.layers(x)

    def hidden_activations(self) -> list[nn.Module]:
        """The activation module of each hidden layer, input to output."""
        return [self.layers[position] for position in self.activation_positions]


class SoftmaxRegression(nn.Module):
    """A single Linear layer: logits = W x + b, the course's softmax classifier."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 784) or (N, 1, 28, 28) -> logits (N, num_classes)."""
        return self.layers(x)

    def hidden_activations(self) -> list[nn.Module]:
        """None: there is no hidden layer."""
        return []


def linear_layers(network: nn.Module) -> list[nn.Linear]:
    """The network's Linear layers, input to output."""
    return [module for module in network.modules() if isinstance(module, nn.Linear)]


def init_linear_weights(
    network: nn.Module, weight_init: Callable[[torch.Tensor], torch.Tensor] | None
) -> None:
    """Re-initialise every Linear weight in place; biases keep PyTorch's default.

    `None` keeps PyTorch's own initialisation (uniform in +-1/sqrt(fan_in)) for the weights too.
    """
    if weight_init is None:
        return
    with torch.no_grad():
        for layer in linear_layers(network):
            weight_init(layer.weight)


def layer_sizes(network: nn.Module) -> list[int]:
    """Input size, then each Linear layer's output size: [784, 256, 256, 10]."""
    layers = linear_layers(network)
    return [layers[0].in_features, *(layer.out_features for layer in layers)]
