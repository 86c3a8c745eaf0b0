"""The hyperparameters every tracker gets: option names, their arguments, the swept settings."""

import pytest

from mlplab.config.compose import compose_train_config
from mlplab.record.hparams import compared_hparams
from tests.conftest import composed_choices


def hparams_of(tmp_path, overrides: list[str]) -> dict:
    cfg = compose_train_config(tmp_path, overrides)
    return compared_hparams(cfg, composed_choices(overrides))


def test_hyperparameters_are_the_options_their_arguments_and_the_swept_settings(tmp_path):
    overrides = [
        "activation=tanh",
        "optimizer=sgd",
        "init=xavier_uniform",
        "scheduler=step",
        "model.hidden_sizes=[64,32]",
        "seed=3",
    ]
    assert hparams_of(tmp_path, overrides) == {
        "data": "mnist",
        "model": "mlp",
        "activation": "tanh",
        "init": "xavier_uniform",
        "optimizer": "sgd",
        "scheduler": "step",
        "optimizer.lr": 0.1,
        "optimizer.momentum": 0.0,
        "optimizer.fused": True,
        "scheduler.step_size": 5,
        "scheduler.gamma": 0.5,
        "data.batch_size": 100,
        "data.normalize": True,
        "model.hidden_sizes": "[64, 32]",
        "model.dropout": 0.0,
        "model.batchnorm": False,
        "trainer.max_epochs": 15,
        "trainer.precision": "32-true",
        "seed": 3,
    }


def test_a_preset_is_named_and_an_init_with_arguments_lists_them(tmp_path):
    hparams = hparams_of(tmp_path, ["experiment=lab09_2_relu_normal_init"])
    assert hparams["experiment"] == "lab09_2_relu_normal_init"
    assert hparams["init"] == "normal"
    assert hparams["init.weight.std"] == 1.0


@pytest.mark.parametrize(
    "override",
    ["model=linear", "activation=maxout", "init=orthogonal", "optimizer=lbfgs", "scheduler=cosine"],
)
def test_no_hyperparameter_names_a_class_a_callback_or_a_path(tmp_path, override):
    hparams = hparams_of(tmp_path, [override])
    for key, value in hparams.items():
        assert not key.split(".")[-1].startswith("_"), key
        assert not any(word in key for word in ("callbacks", "logger", "dir", "root")), key
        assert not (isinstance(value, str) and ("/" in value or "torch." in value)), (key, value)
