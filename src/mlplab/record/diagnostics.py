"""What happens inside a network while it trains: gradient norms, dead and saturated units.

The statistics take a copy axis: the K copies of a packed group (mlplab.engines.packed.curves)
or one network (TrainingDiagnostics, a callback of the single engine).
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from mlplab.model.nets import linear_layers
from mlplab.results import (
    ACTIVATION_MEAN,
    DEAD_FRACTION,
    GRAD_NORM,
    GRAD_NORM_RATIO,
    SATURATED_FRACTION,
    layer_tag,
)

# Units of these activations are dead when they output <= 0 for every input: no gradient
# (ReLU) or almost none flows back through them.
RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU)
# Outputs beyond these bounds sit on the flat tails, where the derivative is below 0.01.
SATURATION_BOUNDS = {nn.Sigmoid: (0.01, 0.99), nn.Tanh: (-0.99, 0.99)}


def dead_fraction(outputs: torch.Tensor) -> float:
    """Fraction of units (columns of `outputs`, shape (N, units)) that are <= 0 for every row."""
    return (outputs <= 0).all(dim=0).float().mean().item()


def saturated_fraction(outputs: torch.Tensor, low: float, high: float) -> float:
    """Fraction of outputs (any shape) outside (low, high)."""
    return ((outputs <= low) | (outputs >= high)).float().mean().item()


class TrainingDiagnostics(L.Callback):
    """Logs per-layer gradient norms while training and hidden-layer statistics each epoch.

    - `grad_norm/layer_k` (L2 norm of the k-th Linear weight's gradient) and
      `grad_norm/first_to_last_ratio`, every `log_every_n_steps` steps: a ratio far below 1
      means the gradient vanishes on its way back to the input.
    - `activation/mean/layer_k`, `activation/dead_fraction/layer_k` (ReLU family) and
      `activation/saturated_fraction/layer_k` (sigmoid, tanh) on a fixed validation batch.
    - with TensorBoard and `histograms`, histograms of weights, gradients and activations.
    """

    def __init__(self, histograms: bool = True) -> None:
        self.histograms = histograms

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Gradients are cleared before validation, so the epoch's last batch is the moment
        # to record them.
        last_batch = batch_idx == trainer.num_training_batches - 1
        tensorboard = self.tensorboard(trainer)
        layers = linear_layers(pl_module.network)
        if last_batch and tensorboard:
            weights = [layer.weight for layer in layers]
            gradients = [layer.weight.grad for layer in layers]
            write_parameter_histograms(tensorboard, weights, gradients, trained_step(trainer))
        if pl_module.global_step % trainer.log_every_n_steps != 0:
            return
        norms = gradient_norms([layer.weight.grad.unsqueeze(0) for layer in layers])
        write_to_loggers(trainer, first_copy(norms), trained_step(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        network = pl_module.network
        features, _ = next(iter(trainer.datamodule.val_dataloader()))
        # In the dtype the precision setting trains in (float64 with trainer.precision=64-true).
        captured = hidden_outputs(network, trainer.precision_plugin.convert_input(features))
        activations = [activation for activation, _ in captured]
        outputs = [output for _, output in captured]
        (values,) = hidden_statistics([activations], [output.unsqueeze(0) for output in outputs])
        write_to_loggers(trainer, values, trainer.global_step)
        tensorboard = self.tensorboard(trainer)
        if tensorboard:
            write_activation_histograms(tensorboard, outputs, trainer.global_step)

    def tensorboard(self, trainer: L.Trainer) -> TensorBoardLogger | None:
        """The run's TensorBoard logger when histograms are on and the run has one."""
        loggers = (logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger))
        return next(loggers, None) if self.histograms else None


def gradient_norms(gradients: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per copy, (K,): the L2 norm of each Linear weight's gradient (`gradients`, each with
    the copies first), and the first layer's over the last one's."""
    norms = [gradient.flatten(1).norm(dim=1) for gradient in gradients]
    values = {layer_tag(GRAD_NORM, index): norm for index, norm in enumerate(norms, start=1)}
    values[GRAD_NORM_RATIO] = norms[0] / norms[-1]
    return values


def hidden_statistics(
    activations: list[list[nn.Module]], outputs: list[torch.Tensor]
) -> list[dict[str, float]]:
    """Per copy: the mean, dead and saturated fraction of each hidden layer's `outputs`
    ((K, N, width) each), as that copy's `activations` (one module per layer) make them."""
    statistics = []
    for copy, units in enumerate(activations):
        values = {}
        for layer, (activation, output) in enumerate(zip(units, outputs), start=1):
            output = output[copy]
            values[layer_tag(ACTIVATION_MEAN, layer)] = output.mean().item()
            if isinstance(activation, RELU_FAMILY):
                values[layer_tag(DEAD_FRACTION, layer)] = dead_fraction(output)
            bounds = SATURATION_BOUNDS.get(type(activation))
            if bounds:
                values[layer_tag(SATURATED_FRACTION, layer)] = saturated_fraction(output, *bounds)
        statistics.append(values)
    return statistics


def first_copy(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The values of the one copy of a single network."""
    return {tag: value[0] for tag, value in values.items()}


def trained_step(trainer: L.Trainer) -> int:
    """The index of the training step just taken: the step Lightning logs its values at."""
    return trainer.global_step - 1


def write_to_loggers(
    trainer: L.Trainer, values: dict[str, torch.Tensor | float], step: int
) -> None:
    """Hand values straight to the loggers at `step`.

    These values are only looked at, never monitored, so they skip LightningModule.log and
    its per-call bookkeeping (about a millisecond a call, more than a training step here).
    """
    numbers = {tag: float(value) for tag, value in values.items()}
    for logger in trainer.loggers:
        logger.log_metrics(numbers, step=step)


def hidden_outputs(
    network: nn.Module, features: torch.Tensor
) -> list[tuple[nn.Module, torch.Tensor]]:
    """(activation module, its output) for each hidden layer, in eval mode, without gradients."""
    captured: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(lambda module, _, output: captured.append((module, output)))
        for module in network.hidden_activations()
    ]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(features)
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    return captured


def write_parameter_histograms(
    logger: TensorBoardLogger,
    weights: list[torch.Tensor],
    gradients: list[torch.Tensor],
    step: int,
) -> None:
    """Histograms of one network's Linear weights and of their gradients, input to output."""
    writer = logger.experiment
    for index, (weight, gradient) in enumerate(zip(weights, gradients), start=1):
        writer.add_histogram(layer_tag("weights", index), weight, step)
        writer.add_histogram(layer_tag("gradients", index), gradient, step)


def write_activation_histograms(
    logger: TensorBoardLogger, outputs: list[torch.Tensor], step: int
) -> None:
    """Histograms of one network's hidden-layer outputs, input to output."""
    for index, output in enumerate(outputs, start=1):
        logger.experiment.add_histogram(layer_tag("activations", index), output, step)
