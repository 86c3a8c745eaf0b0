"""Training cost counted from a network's shape: floating-point operations of its Linear layers.

Only the weights' multiply-adds are counted, 2 operations each (a multiply and an add), as
PyTorch's FlopCounterMode counts matrix products; biases, activations, the loss, the
optimiser's update and the evaluation passes are left out: they grow with the number of
units, the products with units squared.
"""

from __future__ import annotations

from torch import nn

from mlplab.model.nets import linear_layers

FLOPS_PER_MULTIPLY_ADD = 2


def training_multiply_adds_per_example(network: nn.Module) -> int:
    """Multiply-adds of one example's forward and backward pass through the Linear layers.

    Per weight: one forward, one for its gradient and one for the gradient of the layer's
    input, which the first layer skips (the image needs no gradient).
    """
    weights = [layer.in_features * layer.out_features for layer in linear_layers(network)]
    return 2 * sum(weights) + sum(weights[1:])


def training_flops(network: nn.Module, examples: int) -> int:
    """Floating-point operations of training on `examples` examples (steps x batch size)."""
    return FLOPS_PER_MULTIPLY_ADD * training_multiply_adds_per_example(network) * examples
