import csv

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.nn.functional import softplus
from torch.utils.flop_counter import FlopCounterMode

from mlplab.data.mnist import MNISTDataModule
from mlplab.model.nets import MLP, linear_layers
from mlplab.model.rbm import RBMPretraining, RBMs
from tests.conftest import TINY_TRAIN, train
from tests.test_run import read_metrics, scalar_points

RBM_RUN = ["experiment=rbm_vs_xavier", "trainer.max_epochs=1", "init.pretraining.epochs=2"]


def training_images(datamodule: MNISTDataModule) -> torch.Tensor:
    """The training split's images (N, 784), as a run sees them."""
    datamodule.setup()
    features, _ = datamodule.splits["train"]
    return features


def test_small_rbm_lowers_its_reconstruction_error_on_the_tiny_digits(small_run_config, tmp_path):
    network = MLP([32], activation=nn.Sigmoid)
    logger = CSVLogger(tmp_path, name="csv", version="")
    images = training_images(instantiate(small_run_config("data.normalize=false").data))
    RBMPretraining(epochs=5, batch_size=20)([network], images.unsqueeze(0), [[logger]], [0])

    with open(tmp_path / "csv" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    errors = [float(row["pretrain/reconstruction_error/layer_1"]) for row in rows]
    assert [int(row["step"]) for row in rows] == [-5, -4, -3, -2, -1]
    assert errors == sorted(errors, reverse=True)  # lower after every epoch
    assert errors[-1] < 0.5 * errors[0]


def free_energy(rbms: RBMs, visible: torch.Tensor) -> torch.Tensor:
    """F(v) = -b.v - sum_j softplus(c_j + W_j.v) of the one machine of `rbms`: the energy with
    the hidden units summed out."""
    hidden_input = visible @ rbms.weight[0].t() + rbms.hidden_bias[0]
    return -(visible @ rbms.visible_bias[0]) - softplus(hidden_input).sum(dim=1)


def test_contrastive_divergence_follows_the_free_energy_gap_of_data_and_reconstructions():
    """CD-1's update lowers the free energy of the data and raises that of the reconstructions:
    its gradient is the one of mean F(data) - mean F(reconstruction), the samples held fixed."""
    visible = torch.bernoulli(torch.full((8, 12), 0.3), generator=torch.Generator().manual_seed(1))
    rbms = RBMs(visible.unsqueeze(0), hidden=5, generators=[torch.Generator().manual_seed(2)])
    rbms.generators = [torch.Generator().manual_seed(3)]
    rbms.contrastive_divergence(visible.unsqueeze(0), k=1)
    computed = [parameter.grad[0].clone() for parameter in rbms.parameters()]

    with torch.no_grad():  # the same Gibbs step, from a generator in the same state
        hidden = rbms.hidden_probabilities(visible.unsqueeze(0))[0]
        sampled = torch.bernoulli(hidden, generator=torch.Generator().manual_seed(3))
        reconstruction = rbms.visible_probabilities(sampled.unsqueeze(0))[0]
    gap = free_energy(rbms, visible).mean() - free_energy(rbms, reconstruction).mean()
    expected = torch.autograd.grad(gap, list(rbms.parameters()))
    for got, want in zip(computed, expected):
        torch.testing.assert_close(got, want[0])


class RecordedErrors:
    """A logger that keeps the metrics logged to it."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        (value,) = metrics.values()
        self.steps.append(step)
        self.values.append(value)

    def save(self) -> None:
        pass


def test_networks_pretrained_together_get_the_rbms_each_gets_alone():
    """In float64, where the batched products' other order of sums is far below any test."""
    images = torch.rand(3, 60, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def networks() -> list[nn.Module]:
        torch.manual_seed(5)
        return [MLP([16, 8], activation=nn.Sigmoid).double() for _ in range(3)]

    pretraining = RBMPretraining(k=2, epochs=2, batch_size=20)
    together, recorded = networks(), [RecordedErrors() for _ in range(3)]
    pretraining(together, images, [[recorder] for recorder in recorded], seeds=[1, 2, 3])
    for copy, alone in enumerate(networks()):
        recorded_alone = RecordedErrors()
        pretraining([alone], images[copy : copy + 1], [[recorded_alone]], seeds=[copy + 1])
        for packed_layer, layer in zip(linear_layers(together[copy]), linear_layers(alone)):
            torch.testing.assert_close(packed_layer.weight, layer.weight, rtol=0, atol=1e-12)
            torch.testing.assert_close(packed_layer.bias, layer.bias, rtol=0, atol=1e-12)
        assert recorded[copy].steps == recorded_alone.steps == [-4, -3, -2, -1]
        assert recorded[copy].values == pytest.approx(recorded_alone.values, rel=1e-12)
    first_layers = [linear_layers(network)[0].weight for network in together]
    assert not torch.equal(first_layers[0], first_layers[1])  # each its own seed


def test_pretraining_flops_equal_what_pytorch_counts():
    network = MLP([32, 16, 8], activation=nn.Sigmoid)
    pretraining = RBMPretraining(k=3, epochs=2, batch_size=20)
    with FlopCounterMode(display=False) as counter:
        pretraining([network], torch.rand(1, 50, 784), [[]], [0])
    assert pretraining.flops(network, examples=50) == counter.get_total_flops()


def test_run_starts_its_supervised_training_from_the_pretrained_weights(
    small_run_config, monkeypatch
):
    """The hidden layers hold what the RBMs learned (the same seed gives the same RBMs) and the
    output layer PyTorch's default init."""
    import lightning as L

    from mlplab.engines.single.classifier import Classifier
    from mlplab.job.build import build_network

    cfg = small_run_config(*RBM_RUN)
    at_first_step = []
    training_step = Classifier.training_step

    def record_weights(classifier, batch, batch_idx):
        if not at_first_step:
            at_first_step.extend(layer.weight.clone() for layer in linear_layers(classifier))
        return training_step(classifier, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", record_weights)
    train(cfg)

    L.seed_everything(cfg.seed)  # as the run does before it builds the network
    default_init = linear_layers(build_network(cfg))
    pretrained = build_network(cfg)
    images = training_images(instantiate(cfg.data))
    instantiate(cfg.init.pretraining)([pretrained], images.unsqueeze(0), [[]], [cfg.seed])
    for started, learned in zip(at_first_step[:-1], linear_layers(pretrained)[:-1]):
        assert torch.equal(started, learned.weight)
    assert torch.equal(at_first_step[-1], default_init[-1].weight)
    assert not torch.equal(at_first_step[0], default_init[0].weight)


def test_run_logs_reconstruction_error_per_layer_and_epoch_and_reports_pretraining_apart(
    small_run_config, tmp_path
):
    cfg = small_run_config(*RBM_RUN, "init.pretraining.epochs=3")
    train(cfg)
    run_dir = tmp_path / "run"
    # 7 layers of 3 epochs each, in the order they ran, before the training's step 0.
    for layer in range(1, 8):
        points = scalar_points(run_dir, f"pretrain/reconstruction_error/layer_{layer}")
        assert [step for step, _ in points] == [3 * layer - 24, 3 * layer - 23, 3 * layer - 22]
    metrics = read_metrics(run_dir)
    assert metrics["pretrain_seconds"] > 0
    network = MLP(list(cfg.model.hidden_sizes), activation=nn.Sigmoid)
    examples = TINY_TRAIN - cfg.data.val_size
    assert metrics["pretrain_flops"] == instantiate(cfg.init.pretraining).flops(network, examples)


def test_resumed_run_continues_from_its_checkpoint_without_pretraining_again(
    small_run_config, tmp_path, monkeypatch
):
    train(small_run_config(*RBM_RUN))
    run_dir = tmp_path / "run"
    pretrained_once = scalar_points(run_dir, "pretrain/reconstruction_error/layer_1")

    def refuse(*args, **kwargs):
        raise AssertionError("pre-trained again")

    monkeypatch.setattr(RBMPretraining, "__call__", refuse)
    resumed = small_run_config(*RBM_RUN, f"resume={run_dir}", "trainer.max_epochs=2")
    train(resumed)

    metrics = read_metrics(run_dir)
    assert (metrics["status"], metrics["epochs"], metrics["pretrain_seconds"]) == (
        "completed",
        2,
        0.0,
    )
    assert metrics["pretrain_flops"] > 0  # the run's cost still includes the pre-training
    assert scalar_points(run_dir, "pretrain/reconstruction_error/layer_1") == pretrained_once
