"""K networks of one shape trained as one: each parameter and buffer stacked copies first.

A batch holds one slice per network, (K, N, 784) -> (K, N, classes). Linear weights are
stacked to [K, in, out] and applied by batched matrix products (torch.baddbmm), batch norm
normalises each copy's features over its own examples, PReLU applies each copy's slopes:
each network's gradient is the one it would get alone, and element-wise optimisers give
each slice its solo update. Once some copies have stopped (diverged, or pruned by a search),
the stacked tensors hold the others only, so a stopped copy costs no arithmetic at all.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import batch_norm

from mlplab.engines.packed.dropout_masks import kept_units


def dropout_rate(network: nn.Module) -> float:
    """The rate of the network's Dropout layers (0 without any)."""
    rates = {module.p for module in network.modules() if isinstance(module, nn.Dropout)}
    return rates.pop() if rates else 0.0


def stack(tensors: list[torch.Tensor], transposed: bool) -> torch.Tensor:
    slices = [tensor.detach().t() if transposed else tensor.detach() for tensor in tensors]
    return torch.stack(slices).contiguous()


class NarrowLinear(torch.autograd.Function):
    """packed_linear of a layer with fewer outputs than examples, on the CPU.

    The products run with the longer side of each result last: forward (weight^T x^T)^T, the
    weights' gradient (grad^T x)^T, several times faster than the other way round. The input's
    gradient grad weight^T is computed in its own layout, contiguous as the layer below's
    backward reads it fastest (an activation's backward over a transposed gradient took 20
    times as long).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")  # under autocast, the backward's products are too
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        # Contiguous again, as what reads it (argmax over the classes) expects.
        turned = torch.baddbmm(bias.unsqueeze(2), weight.transpose(1, 2), x.transpose(1, 2))
        return turned.transpose(1, 2).contiguous()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        return (
            torch.bmm(grad, weight.transpose(1, 2)) if needs_x else None,
            torch.bmm(grad.transpose(1, 2), x).transpose(1, 2) if needs_weight else None,
            grad.sum(1) if needs_bias else None,
        )


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Each copy's Linear layer: x (R, N, in), weight [R, in, out], bias (R, out) -> (R, N, out).

    On the CPU a layer with fewer outputs than the batch has examples (the output layer's
    classes) is a NarrowLinear.
    """
    if x.device.type == "cpu" and weight.shape[2] < x.shape[1]:
        return NarrowLinear.apply(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


class PackedNetworks(nn.Module):
    """The networks' parameters and buffers stacked; activation and dropout applied per slice.

    `networks` are MLPs (or softmax regressions) of the same layers, each with its own initial
    weights, activation and dropout rate (mlplab.sweeps.packing decides which may pack).
    Parameters are registered in the order of a single network's parameters, so slice k of the
    optimiser's state lines up with a single network's. A copy's names for them are its own
    (a Dropout layer moves the names of the layers after it). Linear weights are stored
    transposed, [K, in, out]: the batched product reads them contiguously (on the CPU, 4x
    faster than through a transposed view).
    """

    def __init__(self, networks: list[nn.Module], dropout_generators: list[torch.Generator]):
        super().__init__()
        first = networks[0]
        # Each copy's names of its parameters and buffers, in a single network's order.
        self.parameter_names = [[name for name, _ in net.named_parameters()] for net in networks]
        self.buffer_names = [[name for name, _ in net.named_buffers()] for net in networks]
        self.transposed = [  # Linear weights
            isinstance(layer, nn.Linear) and name == "weight"
            for layer in first.layers
            for name, _ in layer.named_parameters()
        ]
        parameters = zip(*(network.parameters() for network in networks))
        self.stacked = nn.ParameterList(
            nn.Parameter(stack(list(slices), transposed))
            for slices, transposed in zip(parameters, self.transposed)
        )
        # Batch norm's running statistics: buffer{i} stacks the copies' i-th buffers.
        for index, slices in enumerate(zip(*(network.buffers() for network in networks))):
            self.register_buffer(f"buffer{index}", stack(list(slices), transposed=False))
        self.plan = self.planned(first)
        # Modules of the copies, not registered: their weights are the stacked ones.
        self.activations = [network.hidden_activations() for network in networks]
        # Per hidden layer, whether every copy applies the same activation: one call then.
        self.same_activation = [
            len({repr(unit) for unit in units}) == 1 for units in zip(*self.activations)
        ]
        self.dropout_rates = [dropout_rate(network) for network in networks]
        self.dropout_generators = dropout_generators
        self.rows = list(range(len(networks)))  # the copies whose slices the tensors hold
        self.stopped_states: dict[int, dict[str, torch.Tensor]] = {}  # the others' states

    @property
    def copies(self) -> int:
        return len(self.activations)

    def row(self, copy: int) -> int:
        """Where copy `copy`'s slice is in the stacked tensors."""
        return self.rows.index(copy)

    @torch.no_grad()
    def keep(self, copies: list[int]) -> torch.Tensor:
        """Hold the slices of `copies` only (among the rows held, in their order), in new
        Parameters (an optimiser of the old ones takes these in their place); each other
        copy's state stays as it is in `stopped_states`. The rows kept, for tensors laid out
        as the parameters (an optimiser's state)."""
        for copy in self.rows:
            if copy not in copies:
                state = self.copy_state(copy).items()
                self.stopped_states[copy] = {name: value.clone() for name, value in state}
        kept = torch.tensor([self.row(copy) for copy in copies], dtype=torch.long)
        kept = kept.to(self.stacked[0].device)
        for index, parameter in enumerate(self.stacked):
            held = nn.Parameter(parameter.detach().index_select(0, kept), parameter.requires_grad)
            if parameter.grad is not None:
                held.grad = parameter.grad.index_select(0, kept)
            self.stacked[index] = held
        for name, buffer in list(self.named_buffers()):
            setattr(self, name, buffer.index_select(0, kept))
        self.rows = list(copies)
        return kept

    def weights(self) -> list[nn.Parameter]:
        """The stacked weights [R, in, out] of each Linear layer (the R copies held), input to
        output."""
        return [p for p, transposed in zip(self.stacked, self.transposed) if transposed]

    @staticmethod
    def planned(network: nn.Module) -> list[tuple[nn.Module, range, range]]:
        """Each layer of `network` but dropout (applied per copy after each activation), with
        the indices of its parameters and of its buffers among the stacked ones."""
        plan, parameters, buffers = [], 0, 0
        for layer in network.layers:
            owns = len(list(layer.parameters())), len(list(layer.buffers()))
            if not isinstance(layer, nn.Dropout):
                owned = range(parameters, parameters + owns[0]), range(buffers, buffers + owns[1])
                plan.append((layer, *owned))
            parameters, buffers = parameters + owns[0], buffers + owns[1]
        return plan

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The features of the copies held, (R, N, 784) or (R, N, 1, 28, 28) -> their logits
        (R, N, num_classes)."""
        return self.hidden_and_logits(features)[1]

    def hidden_and_logits(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each hidden layer's activation output (R, N, width), then the logits."""
        x = features.flatten(2)
        hidden = []
        for layer, parameter_indices, buffer_indices in self.plan:
            parameters = [self.stacked[index] for index in parameter_indices]
            if isinstance(layer, nn.Linear):
                x = packed_linear(x, *parameters)
            elif isinstance(layer, nn.BatchNorm1d):
                buffers = [self.get_buffer(f"buffer{index}") for index in buffer_indices]
                x = self.normalise(layer, parameters, buffers, x)
            elif not isinstance(layer, nn.Flatten):  # a hidden layer's activation
                x = self.activate(len(hidden), parameters, x)
                hidden.append(x)
                x = self.drop(x)
        return hidden, x

    def hidden_outputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's output (R, N, width) on the held copies' `features`, in eval
        mode, no gradients."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            outputs, _ = self.hidden_and_logits(features)
        self.train(was_training)
        return outputs

    def normalise(
        self,
        norm: nn.BatchNorm1d,
        parameters: list[torch.Tensor],
        buffers: list[torch.Tensor],
        x: torch.Tensor,
    ) -> torch.Tensor:
        """Batch norm of each copy's features over its own examples, with its own statistics.

        The copies' features side by side, (N, K * width), are K * width channels of one
        batch norm: each channel's mean and variance are over the examples of its copy alone.
        """
        (weight, bias), (running_mean, running_var, batches_tracked) = parameters, buffers
        count, examples, width = x.shape
        if self.training:
            batches_tracked.add_(1)
        side_by_side = batch_norm(
            x.transpose(0, 1).reshape(examples, count * width),
            running_mean.view(-1),  # updated in place, as a single network's are
            running_var.view(-1),
            weight.reshape(-1),
            bias.reshape(-1),
            training=self.training,
            momentum=norm.momentum,
            eps=norm.eps,
        )
        return side_by_side.view(examples, count, width).transpose(0, 1)

    def activate(self, depth: int, parameters: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The activation of hidden layer `depth` of each copy held, whose slices `x` holds."""
        unit = self.activations[0][depth]
        if isinstance(unit, nn.PReLU):  # each copy's slopes: (K, 1) or (K, width)
            (slopes,) = parameters
            return torch.where(x > 0, x, x * slopes.unsqueeze(1))
        if self.same_activation[depth]:
            return unit(x)  # one call for every slice: a seed sweep
        units = [self.activations[copy][depth] for copy in self.rows]
        return torch.stack([unit(slice_) for unit, slice_ in zip(units, x)])

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout per slice of the copies held, each mask drawn from the copy's own generator.

        The mask is the one torch's CPU dropout draws (bernoulli_ of 1 - p into a tensor like
        the input; mlplab.engines.packed.dropout_masks), so on the CPU a copy gets the masks it
        would get alone.
        """
        if not self.training or not any(self.dropout_rates):
            return x
        noise = torch.empty_like(x)  # each copy's mask in its own slice, applied by one product
        for copy, mask in zip(self.rows, noise):
            rate = self.dropout_rates[copy]
            if rate == 0:
                mask.fill_(1)
                continue
            generator = self.dropout_generators[copy]
            if mask.device.type == "cpu":
                mask.copy_(kept_units(mask.shape, 1 - rate, generator))
            else:
                # On an accelerator the solo run's fused dropout kernel draws its own way: the
                # masks there are equal in distribution only.
                if generator.device != mask.device:
                    generator = torch.Generator(mask.device).manual_seed(generator.initial_seed())
                    self.dropout_generators[copy] = generator
                mask.bernoulli_(1 - rate, generator=generator)
            mask.div_(1 - rate)
        return x * noise

    def swap_layout(self, index: int, value: torch.Tensor) -> torch.Tensor:
        """One copy's slice of parameter `index` (or of a tensor of its shape, such as Adam's
        moments) laid out as a single network's parameter, and back: Linear weights
        transposed."""
        return value.t() if self.transposed[index] else value

    def copy_parameters(self, copy: int) -> list[torch.Tensor]:
        """Copy `copy`'s slice of each parameter: a single network's parameters (views), in its
        order."""
        row = self.row(copy)
        return [self.swap_layout(i, parameter[row]) for i, parameter in enumerate(self.stacked)]

    def copy_buffers(self, copy: int) -> list[torch.Tensor]:
        """Copy `copy`'s slice of each buffer (views), in a single network's order."""
        row = self.row(copy)
        return [buffer[row] for name, buffer in self.named_buffers() if name.startswith("buffer")]

    def copy_state(self, copy: int) -> dict[str, torch.Tensor]:
        """Copy `copy`'s single network's state_dict: its slices (views) or, once it stopped,
        its state when it stopped."""
        if copy in self.stopped_states:
            return self.stopped_states[copy]
        return {
            **dict(zip(self.parameter_names[copy], self.copy_parameters(copy))),
            **dict(zip(self.buffer_names[copy], self.copy_buffers(copy))),
        }

    def stacked_state(self, states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """This module's state_dict, stacked from each copy's single network's `states`."""

        def stacked(names: list[list[str]], index: int, transposed: bool) -> torch.Tensor:
            return stack([state[own[index]] for state, own in zip(states, names)], transposed)

        return {
            **{
                f"stacked.{index}": stacked(self.parameter_names, index, transposed)
                for index, transposed in enumerate(self.transposed)
            },
            **{
                f"buffer{index}": stacked(self.buffer_names, index, transposed=False)
                for index in range(len(self.buffer_names[0]))
            },
        }

    @torch.no_grad()
    def set_copy(self, copy: int, state: dict[str, torch.Tensor]) -> None:
        """Write a single network's state_dict (`state`; its buffers optional) into the slice
        of copy `copy`, one the tensors hold."""
        row = self.row(copy)
        for index, (name, stacked) in enumerate(zip(self.parameter_names[copy], self.stacked)):
            stacked[row] = self.swap_layout(index, state[name])
        for name, buffer in zip(self.buffer_names[copy], self.copy_buffers(copy)):
            if name in state:
                buffer.copy_(state[name])
