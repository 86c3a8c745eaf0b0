import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from mlplab.model.nets import MLP, linear_layers
from mlplab.record.diagnostics import (
    dead_fraction,
    gradient_norms,
    hidden_outputs,
    saturated_fraction,
)
from tests.conftest import train

DEEP = "model.hidden_sizes=[64,64,64,64,64,64]"


def scalars(run_dir) -> EventAccumulator:
    return EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0}).Reload()


def median_ratio(events: EventAccumulator) -> float:
    values = sorted(p.value for p in events.Scalars("grad_norm/first_to_last_ratio"))
    return values[len(values) // 2]


def test_sigmoid_deep_net_gradients_vanish_at_first_layer(small_run_config, tmp_path):
    for activation in ("relu", "sigmoid"):
        train(
            small_run_config(
                f"activation={activation}",
                DEEP,
                "optimizer=sgd",
                "trainer.log_every_n_steps=1",
                name=activation,
            )
        )
    relu, sigmoid = scalars(tmp_path / "relu"), scalars(tmp_path / "sigmoid")
    assert len(relu.Scalars("grad_norm/layer_1")) == 10  # every step of 500 images / 50
    assert {f"grad_norm/layer_{k}" for k in range(1, 8)} <= set(sigmoid.Tags()["scalars"])
    assert median_ratio(sigmoid) < 0.01 * median_ratio(relu)
    assert median_ratio(sigmoid) < 1e-3


def test_relu_layer_forced_to_negative_preactivations_reports_every_unit_dead():
    network = MLP([16, 8], activation=nn.ReLU)
    with torch.no_grad():
        linear_layers(network)[0].bias.fill_(-1e3)
    (first, first_output), (_, second_output) = hidden_outputs(network, torch.rand(32, 784))
    assert isinstance(first, nn.ReLU)
    assert dead_fraction(first_output) == 1.0
    assert dead_fraction(second_output) < 1.0 or second_output.max() <= 0


def test_dead_fraction_counts_units_silent_for_every_input():
    outputs = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    assert dead_fraction(outputs) == 0.5


def test_sigmoid_with_huge_weights_reports_saturated_units():
    network = MLP([32], activation=nn.Sigmoid)
    with torch.no_grad():
        linear_layers(network)[0].weight.mul_(1e3)
    ((_, output),) = hidden_outputs(network, torch.rand(64, 784))
    assert saturated_fraction(output, 0.01, 0.99) > 0.9
    assert saturated_fraction(torch.full((4, 4), 0.5), 0.01, 0.99) == 0.0


def test_hidden_outputs_leave_the_network_in_training_mode_without_hooks():
    network = MLP([8], activation=nn.Tanh, dropout=0.5)
    network.train()
    hidden_outputs(network, torch.rand(4, 784))
    assert network.training
    assert not network.hidden_activations()[0]._forward_hooks


def test_epoch_statistics_and_histograms_reach_tensorboard(small_run_config, tmp_path):
    train(small_run_config("activation=tanh", "trainer.max_epochs=2"))
    events = scalars(tmp_path / "run")
    tags = set(events.Tags()["scalars"])
    assert {"activation/mean/layer_1", "activation/saturated_fraction/layer_2"} <= tags
    assert not any(tag.startswith("activation/dead_fraction") for tag in tags)
    assert len(events.Scalars("activation/mean/layer_1")) == 2
    assert {"weights/layer_1", "gradients/layer_3", "activations/layer_2"} <= set(
        events.Tags()["histograms"]
    )


def test_diagnostics_none_logs_only_loss_accuracy_and_learning_rate(small_run_config, tmp_path):
    train(small_run_config("diagnostics=none"))
    events = scalars(tmp_path / "run")
    assert not any(tag.startswith(("grad_norm", "activation")) for tag in events.Tags()["scalars"])
    assert events.Tags()["histograms"] == []


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu"])
def test_relu_family_reports_dead_fractions(small_run_config, tmp_path, activation):
    train(small_run_config(f"activation={activation}"))
    assert "activation/dead_fraction/layer_2" in scalars(tmp_path / "run").Tags()["scalars"]


def test_gradient_norms_and_first_to_last_ratio_of_each_copy_equal_norms_computed_by_hand():
    network = MLP([8, 8], activation=nn.ReLU)
    layers = linear_layers(network)
    for k, layer in enumerate(layers, start=1):
        layer.weight.grad = torch.full_like(layer.weight, float(k))
    # A constant gradient c over n entries has the L2 norm c * sqrt(n).
    expected = [1 * math.sqrt(784 * 8), 2 * math.sqrt(8 * 8), 3 * math.sqrt(8 * 10)]
    # Two copies: this network's gradients, and the same halved.
    gradients = [torch.stack([layer.weight.grad, layer.weight.grad / 2]) for layer in layers]
    values = gradient_norms(gradients)
    for copy, scale in ((0, 1.0), (1, 0.5)):
        norms = [values[f"grad_norm/layer_{k}"][copy].item() for k in (1, 2, 3)]
        assert norms == pytest.approx([scale * norm for norm in expected])
        ratio = values["grad_norm/first_to_last_ratio"][copy].item()
        assert ratio == pytest.approx(expected[0] / expected[2])
