import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mlplab.model.compute import training_flops
from mlplab.model.nets import MLP, Maxout, SoftmaxRegression


def measured_training_flops(network: nn.Module, batch: int) -> int:
    """The floating-point operations PyTorch counts for one training step's forward and backward."""
    with FlopCounterMode(display=False) as counter:
        network(torch.rand(batch, 1, 28, 28)).logsumexp(dim=1).sum().backward()
    return counter.get_total_flops()


def test_training_flops_equal_what_pytorch_counts_for_forward_and_backward_passes():
    networks = [
        MLP([32, 16], activation=nn.Sigmoid),
        MLP([64], activation=lambda: Maxout(pieces=3), batchnorm=True, dropout=0.5),
        SoftmaxRegression(),
    ]
    for network in networks:
        assert training_flops(network, examples=7) == measured_training_flops(network, batch=7)


def test_run_reports_training_flops_of_every_step_and_no_pretraining(small_run_config, tmp_path):
    from mlplab.job.build import build_network
    from tests.conftest import TINY_TRAIN, train
    from tests.test_run import read_metrics

    cfg = small_run_config("trainer.max_epochs=2")  # 500 training images, batches of 50
    train(cfg)
    metrics = read_metrics(tmp_path / "run")
    steps = 2 * (TINY_TRAIN - cfg.data.val_size) // cfg.data.batch_size
    per_example = measured_training_flops(build_network(cfg), batch=1)
    assert metrics["train_flops"] == steps * cfg.data.batch_size * per_example
    assert (metrics["pretrain_flops"], metrics["pretrain_seconds"]) == (0, 0.0)
