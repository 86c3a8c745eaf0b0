"""Which jobs of a sweep train together as one packed network."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from hydra_plugins.mlplab_packed_launcher.packed_launcher import ComposedOnce
from mlplab.sweeps.packing import packing_groups, why_not_packed
from tests.conftest import compose_train_config


@pytest.fixture
def config(tmp_path, tiny_mnist):
    def make(*overrides: str):
        return compose_train_config(tmp_path / "run", tiny_mnist, list(overrides))

    return make


def test_jobs_differing_in_seed_init_activation_and_dropout_pack_into_one_group(config):
    configs = [
        config("seed=1"),
        config("seed=2", "init=xavier_uniform"),
        config("seed=3", "activation=tanh", "model.dropout=0.5"),
    ]
    assert packing_groups(configs) == [([0, 1, 2], None)]


def test_jobs_differing_in_a_shared_setting_form_separate_groups_in_sweep_order(config):
    configs = [
        config("seed=1", "optimizer.betas=[0.9,0.999]"),
        config("seed=1", "optimizer.betas=[0.5,0.999]"),
        config("seed=2", "optimizer.betas=[0.9,0.999]"),
        config("seed=2", "data.batch_size=50", "optimizer.betas=[0.5,0.999]"),
    ]
    assert packing_groups(configs) == [([0, 2], None), ([1], None), ([3], None)]


@pytest.mark.parametrize(
    ("shared", "packed"),
    [
        (["optimizer=sgd", "optimizer.momentum=0.9", "scheduler=step"], True),
        (["optimizer=adam", "scheduler=cosine"], True),
        (["optimizer=rmsprop"], True),
        (["optimizer=rprop"], False),  # the rate is Rprop's first step size, not a scale
        (["optimizer=asgd"], False),  # its averaging depends on the rate
        (["scheduler=cosine", "+scheduler.eta_min=0.0001"], False),  # not a scale of the rate
    ],
)
def test_jobs_differing_in_learning_rate_pack_where_their_steps_scale_with_it(
    config, shared, packed
):
    configs = [
        config("seed=1", "optimizer.lr=0.01", *shared),
        config("seed=2", "optimizer.lr=0.003", *shared),
    ]
    assert packing_groups(configs) == ([([0, 1], None)] if packed else [([0], None), ([1], None)])


class ScaledTanh(torch.nn.Module):
    """An activation with a weight of its own that the packed network does not stack."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x)


def test_batch_norm_prelu_maxout_and_rbm_jobs_pack_with_jobs_of_their_own_kind(config):
    configs = [
        config("seed=1"),
        config("seed=2", "activation=prelu"),
        config("seed=3", "activation=maxout"),
        config("seed=4", "activation=sigmoid", "init=rbm"),
        config("seed=5", "activation=prelu", "init=xavier_uniform"),
        config("seed=6", "activation=maxout", "activation.pieces=3"),
        config("seed=7", "model.batchnorm=true"),
        config("seed=8", "model.batchnorm=true", "activation=prelu"),
        config("seed=9", "activation=maxout", "model.dropout=0.2"),
        config("seed=10", "model.batchnorm=true", "activation=tanh"),
    ]
    assert all(why_not_packed(cfg) is None for cfg in configs)
    assert packing_groups(configs) == [
        ([0, 3], None),  # functions: ReLU, and sigmoid pre-trained as RBMs
        ([1, 4], None),  # PReLU, each copy its own slope
        ([2, 8], None),  # maxout of 2 pieces
        ([5], None),  # of 3 pieces: other layer widths
        ([6, 9], None),  # batch norm
        ([7], None),
    ]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["optimizer=lbfgs"], "optimizer torch.optim.LBFGS does not update each weight"),
        (
            [f"activation._target_={__name__}.ScaledTanh"],
            f"activation {__name__}.ScaledTanh has weights that are not packed",
        ),
        (["trainer=ddp_cpu"], "it trains on several devices"),
        (["compile=true"], "compile=true"),
    ],
)
def test_jobs_that_cannot_share_a_stacked_network_train_alone_with_a_reason(
    config, overrides, reason
):
    packable, alone = config("seed=1"), config("seed=2", *overrides)
    assert reason in why_not_packed(alone)
    groups = packing_groups([packable, alone, config("seed=3")])
    assert groups == [([0, 2], None), ([1], why_not_packed(alone))]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["+callbacks.model_checkpoint.every_n_epochs=2"], "model_checkpoint.every_n_epochs=2"),
        (["callbacks.model_checkpoint.save_last=true"], "model_checkpoint.save_last=True"),
        (["callbacks.model_checkpoint.monitor=val/f1"], "model_checkpoint.monitor=val/f1"),
        (["callbacks.learning_rate_monitor.logging_interval=null"], "logging_interval=None"),
        (["+callbacks.learning_rate_monitor.log_weight_decay=true"], "log_weight_decay=True"),
        (["+callbacks.timer._target_=lightning.pytorch.callbacks.Timer"], "callbacks.timer"),
        (  # a callback turned off does not end the check of those after it
            ["callbacks.progress_bar=null", "+callbacks.timer._target_=foo.Timer"],
            "callbacks.timer",
        ),
        (["+diagnostics.every=3"], "diagnostics.every=3"),
    ],
)
def test_a_job_whose_callback_settings_packing_does_not_honour_trains_alone_saying_which(
    config, overrides, reason
):
    assert f"{reason} is not packed" in why_not_packed(config("seed=2", *overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["callbacks.model_checkpoint.save_top_k=3", "callbacks.model_checkpoint.mode=min"],
        ["callbacks.model_checkpoint.monitor=val/loss"],
        ["callbacks.learning_rate_monitor.logging_interval=step"],
        ["diagnostics.histograms=false", "callbacks.last_checkpoint.every_n_train_steps=7"],
        ["callbacks.save_on_signal=null", "callbacks.progress_bar=null", "diagnostics=none"],
    ],
)
def test_callback_settings_a_packed_job_honours_let_it_pack(config, overrides):
    assert why_not_packed(config("seed=2", *overrides)) is None


def test_the_launcher_takes_the_configs_the_sweeper_composed_to_check_its_batch():
    class CountingLoader:
        def __init__(self) -> None:
            self.calls = []

        def load_sweep_config(self, master_config, sweep_overrides):
            self.calls.append(list(sweep_overrides))
            return OmegaConf.create({"overrides": list(sweep_overrides)})

    loader = CountingLoader()
    composed_once = ComposedOnce(loader)
    master = OmegaConf.create({})
    batch = [["seed=1"], ["seed=2"]]
    checked = [composed_once.load_sweep_config(master, overrides) for overrides in batch]
    taken = [composed_once.take_sweep_config(master, overrides) for overrides in batch]
    assert taken == checked and loader.calls == batch  # composed once each
    composed_once.take_sweep_config(master, ["seed=1"])  # kept no longer: composed again
    assert loader.calls == [*batch, ["seed=1"]]
