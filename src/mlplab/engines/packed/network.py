"""K networks of one shape trained as one: each Linear layer's weights stacked to [K, in, out].

A batch holds one slice per network, (K, N, 784) -> (K, N, classes); the batched matrix
products (torch.baddbmm) keep the slices apart, so each network's gradient is the one it
would get alone and element-wise optimisers give each slice its solo update.
"""

from __future__ import annotations

import torch
from torch import nn

from mlplab.model.nets import linear_layers


def dropout_rate(network: nn.Module) -> float:
    """The rate of the network's Dropout layers (0 without any)."""
    rates = {module.p for module in network.modules() if isinstance(module, nn.Dropout)}
    return rates.pop() if rates else 0.0


class PackedNetworks(nn.Module):
    """The networks' Linear layers stacked; activation and dropout applied per slice.

    `networks` are MLPs (or softmax regressions) of the same layer sizes, each with its own
    initial weights, activation and dropout rate. Parameters are registered weight, bias,
    weight, ... input to output, the order of a single network's parameters, so slice k of
    the optimiser's state lines up with a single network's. Weights are stored transposed,
    [K, in, out]: the batched product reads them contiguously (on the CPU, 4x faster than
    through a transposed view).
    """

    def __init__(self, networks: list[nn.Module], dropout_generators: list[torch.Generator]):
        super().__init__()
        layers = [linear_layers(network) for network in networks]
        self.stacked = nn.ParameterList()
        for depth in range(len(layers[0])):
            for name in ("weight", "bias"):
                slices = [getattr(copy[depth], name).detach() for copy in layers]
                if name == "weight":
                    slices = [weight.t() for weight in slices]
                self.stacked.append(nn.Parameter(torch.stack(slices).contiguous()))
        # Modules of the copies, not registered: they hold no parameters (mlplab.sweeps.packing).
        self.activations = [network.hidden_activations() for network in networks]
        # Per hidden layer, whether every copy applies the same activation: one call then.
        self.same_activation = [
            len({repr(unit) for unit in units}) == 1 for units in zip(*self.activations)
        ]
        self.dropout_rates = [dropout_rate(network) for network in networks]
        self.dropout_generators = dropout_generators

    @property
    def copies(self) -> int:
        return len(self.activations)

    def weights(self) -> list[nn.Parameter]:
        """The stacked weights [K, in, out] of each Linear layer, input to output."""
        return list(self.stacked)[0::2]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(K, N, 784) or (K, N, 1, 28, 28) -> logits (K, N, num_classes)."""
        return self.hidden_and_logits(features)[1]

    def hidden_and_logits(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each hidden layer's activation output (K, N, width), then the logits."""
        x = features.flatten(2)
        hidden = []
        parameters = list(self.stacked)
        for depth in range(len(parameters) // 2):
            weight, bias = parameters[2 * depth], parameters[2 * depth + 1]
            x = torch.baddbmm(bias.unsqueeze(1), x, weight)
            if depth == len(parameters) // 2 - 1:
                return hidden, x
            x = self.activate(depth, x)
            hidden.append(x)
            x = self.drop(x)
        raise AssertionError("unreachable: the last layer returns")

    def hidden_outputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's output (K, N, width) on `features`, in eval mode, no gradients."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            outputs, _ = self.hidden_and_logits(features)
        self.train(was_training)
        return outputs

    def activate(self, depth: int, x: torch.Tensor) -> torch.Tensor:
        if self.same_activation[depth]:
            return self.activations[0][depth](x)  # one call for every slice: a seed sweep
        units = [copy[depth] for copy in self.activations]
        return torch.stack([unit(slice_) for unit, slice_ in zip(units, x)])

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout per slice, each mask drawn from the copy's own generator.

        The mask is drawn as torch's CPU dropout draws it (bernoulli_ of 1 - p into a tensor
        like the input), so on the CPU a copy gets the masks it would get alone.
        """
        if not self.training or not any(self.dropout_rates):
            return x
        slices = []
        for copy, (slice_, rate) in enumerate(zip(x, self.dropout_rates)):
            if rate == 0:
                slices.append(slice_)
                continue
            generator = self.dropout_generators[copy]
            if generator.device != slice_.device:
                # On an accelerator the solo run's fused dropout kernel draws its own way: the
                # masks there are equal in distribution only.
                generator = torch.Generator(slice_.device).manual_seed(generator.initial_seed())
                self.dropout_generators[copy] = generator
            noise = torch.empty_like(slice_).bernoulli_(1 - rate, generator=generator)
            slices.append(slice_ * noise.div_(1 - rate))
        return torch.stack(slices)

    @staticmethod
    def swap_layout(index: int, value: torch.Tensor) -> torch.Tensor:
        """One copy's slice of parameter `index` (or of a tensor of its shape, such as Adam's
        moments) laid out as a single network's parameter, and back: weights transposed."""
        return value.t() if index % 2 == 0 else value

    def copy_parameters(self, copy: int) -> list[torch.Tensor]:
        """Slice `copy` of each parameter: a single network's parameters (views), in its order."""
        return [self.swap_layout(i, parameter[copy]) for i, parameter in enumerate(self.stacked)]

    @torch.no_grad()
    def set_copy(self, copy: int, parameters: list[torch.Tensor]) -> None:
        """Write a single network's parameters (in its order) into slice `copy`."""
        for index, (stacked, parameter) in enumerate(zip(self.stacked, parameters)):
            stacked[copy] = self.swap_layout(index, parameter)
