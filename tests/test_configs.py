"""Every option of every config group composes and builds the object it describes."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mlplab.config.checks import check_config
from mlplab.data.mnist import MNISTDataModule
from mlplab.errors import ConfigError
from mlplab.job.build import build_trainer
from mlplab.model.nets import init_linear_weights
from mlplab.record.trackers import build_loggers

CONF = Path(__file__).parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def test_defaults_reproduce_the_course_network(small_run_config):
    cfg = small_run_config()
    assert list(cfg.model.hidden_sizes) == [256, 256]
    assert cfg.activation._target_ == "torch.nn.ReLU"
    assert (cfg.optimizer._target_, cfg.optimizer.lr) == ("torch.optim.Adam", 0.001)
    assert cfg.seed == 777


def test_course_defaults_before_test_overrides(tmp_path, tiny_mnist):
    from tests.conftest import compose_train_config

    cfg = compose_train_config(tmp_path, tiny_mnist)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.val_size) == (100, 15, 5000)


def test_a_multirun_packs_by_default_and_basic_trains_one_job_at_a_time():
    from tests.conftest import composed_choices

    assert composed_choices()["hydra/launcher"] == "packed"
    assert composed_choices(["hydra/launcher=basic"])["hydra/launcher"] == "basic"


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("activation", options("activation"))
def test_every_model_and_activation_builds_a_network_that_maps_images_to_logits(
    small_run_config, model, activation
):
    cfg = small_run_config(f"model={model}", f"activation={activation}")
    network = instantiate(cfg.model)
    assert network(torch.rand(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("activation", options("activation"))
def test_every_activation_is_its_named_nonlinearity(small_run_config, activation):
    module = instantiate(small_run_config(f"activation={activation}").activation)()
    x = torch.linspace(-3, 3, 12).reshape(1, 12)
    expected = {
        "relu": torch.relu(x),
        "sigmoid": torch.sigmoid(x),
        "tanh": torch.tanh(x),
        "leaky_relu": nn.functional.leaky_relu(x, 0.01),
        "elu": nn.functional.elu(x),
        "selu": torch.selu(x),
        "gelu": nn.functional.gelu(x),
        "silu": nn.functional.silu(x),
        "softplus": nn.functional.softplus(x),
        "prelu": nn.functional.prelu(x, torch.tensor([0.25])),
        "maxout": x.reshape(1, 6, 2).amax(2),
    }[activation]
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("init", options("init"))
def test_every_init_builds_a_weight_initialiser_or_keeps_the_default(small_run_config, init):
    cfg = small_run_config(f"init={init}")
    weight_init = instantiate(cfg.init.weight)
    network = instantiate(cfg.model)
    init_linear_weights(network, weight_init)
    # rbm keeps PyTorch's default for the output layer and pre-trains the hidden ones.
    assert (weight_init is None) == (init in ("default", "rbm"))
    if init == "rbm":
        assert type(instantiate(cfg.init.pretraining)).__name__ == "RBMPretraining"
    first = network.layers[1].weight
    assert torch.isfinite(first).all()
    if init == "zeros":
        assert first.abs().sum() == 0
    if init == "normal":
        assert first.std().item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_builds_on_the_network_parameters(small_run_config, optimizer):
    cfg = small_run_config(f"optimizer={optimizer}")
    if optimizer == "sparse_adam":
        with pytest.raises(ConfigError, match="SparseAdam only updates sparse gradients"):
            check_config(cfg)
        return
    check_config(cfg)
    built = instantiate(cfg.optimizer)(nn.Linear(3, 2).parameters())
    assert isinstance(built, torch.optim.Optimizer)
    assert built.param_groups[0]["lr"] == cfg.optimizer.lr


def test_learning_rate_is_overridable_for_every_optimizer(small_run_config):
    for optimizer in options("optimizer"):
        assert (
            small_run_config(f"optimizer={optimizer}", "optimizer.lr=0.123").optimizer.lr == 0.123
        )


@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_every_scheduler_builds_on_an_optimizer(small_run_config, scheduler):
    cfg = small_run_config(f"scheduler={scheduler}", "trainer.max_epochs=10")
    if scheduler == "none":
        assert not cfg.scheduler
        return
    optimizer = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=1.0)
    built = instantiate(cfg.scheduler)(optimizer)
    for _ in range(cfg.trainer.max_epochs - 1):
        built.step()
    assert optimizer.param_groups[0]["lr"] < 1.0


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_option_builds_a_trainer_or_is_refused_when_its_device_is_missing(
    small_run_config, trainer
):
    cfg = small_run_config(f"trainer={trainer}", "trainer.max_epochs=7")
    accelerator = cfg.trainer.accelerator
    device_present = {
        "gpu": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }.get(accelerator, True)
    if not device_present:
        with pytest.raises(ConfigError, match=f"trainer.accelerator={accelerator}"):
            check_config(cfg)
        return
    built = build_trainer(cfg, job_command=["python", "-m", "train"])
    assert isinstance(built, L.Trainer) and built.max_epochs == 7


LOGGER_CLASSES = {
    "tensorboard": ["TensorBoardLogger"],
    "csv": ["CSVLogger"],
    "mlflow": ["MLFlowLogger"],
    "wandb": ["WandbLogger"],
    "none": [],
}


@pytest.mark.parametrize("logger", options("logger"))
def test_every_logger_option_builds_its_tracker_then_the_curve_file(small_run_config, logger):
    loggers = build_loggers(small_run_config(f"logger={logger}"), resumed_step=None)
    assert [type(built).__name__ for built in loggers] == [*LOGGER_CLASSES[logger], "CurveFile"]


def test_several_loggers_at_once_are_built_in_the_order_given(small_run_config):
    loggers = build_loggers(small_run_config("logger=[csv,tensorboard]"), resumed_step=None)
    assert [type(built).__name__ for built in loggers] == [
        "CSVLogger",
        "TensorBoardLogger",
        "CurveFile",
    ]


def test_callbacks_checkpoint_last_and_best_by_val_acc_and_monitor_the_learning_rate(
    small_run_config,
):
    callbacks = {name: instantiate(c) for name, c in small_run_config().callbacks.items()}
    checkpoint = callbacks["model_checkpoint"]
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.save_top_k) == ("val/acc", "max", 1)
    assert callbacks["last_checkpoint"].every_n_train_steps == 500
    assert type(callbacks["learning_rate_monitor"]).__name__ == "LearningRateMonitor"
    assert type(callbacks["progress_bar"]).__name__ == "EpochLines"  # pytest's output: no terminal


def test_data_option_builds_the_mnist_datamodule(small_run_config):
    assert isinstance(instantiate(small_run_config().data), MNISTDataModule)


@pytest.mark.parametrize(
    ("launcher", "target", "settings"),
    [
        ("parallel", "ParallelPackedLauncher", {"n_jobs": 2}),
        (
            "slurm",
            "SlurmPackedLauncher",
            {"timeout_min": 60, "gpus_per_node": 1, "cluster": "slurm"},
        ),
        # Requeued when pre-empted or at the time limit, warned early enough to save.
        ("slurm", "SlurmPackedLauncher", {"signal_delay_s": 120, "max_num_timeout": 20}),
    ],
)
def test_launchers_pack_in_front_of_joblib_and_submitit(launcher, target, settings):
    from hydra import compose, initialize

    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert {key: cfg.hydra.launcher[key] for key in settings} == settings


def test_the_search_varies_only_what_a_packed_copy_keeps_for_itself_and_prunes():
    from hydra import compose, initialize

    from mlplab.sweeps.packing import PER_COPY_KEYS

    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("mlplab_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    assert (sweeper.direction, list(sweeper.objectives)) == ("maximize", ["val/acc"])
    assert set(sweeper.params) == {"optimizer.lr", "model.dropout", "activation", "init"}
    assert set(sweeper.params) - {"optimizer.lr"} <= set(PER_COPY_KEYS)  # lr: Adam's scales
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.pruner._target_ == "optuna.pruners.SuccessiveHalvingPruner"
    assert sweeper.params["optimizer.lr"].startswith("tag(log")
    assert sweeper.storage.startswith("sqlite:///")
