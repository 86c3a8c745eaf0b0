import pytest
from omegaconf import OmegaConf

from mlplab.config.checks import check_config
from mlplab.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("model.hidden_sizes=[]", r"model\.hidden_sizes=\[\] is not valid: a non-empty list"),
        ("model.hidden_sizes=[256,0]", r"model\.hidden_sizes=\[256, 0\] is not valid"),
        ("model.hidden_sizes=[-5]", r"model\.hidden_sizes=\[-5\] is not valid"),
        ("model.dropout=1.0", r"model\.dropout=1\.0 is not valid: a number in \[0, 1\)"),
        ("model.dropout=-0.1", r"model\.dropout=-0\.1 is not valid"),
        ("data.batch_size=0", r"data\.batch_size=0 is not valid: a whole number >= 1"),
        ("data.batch_size=abc", r"data\.batch_size='abc' is not valid: a whole number >= 1"),
        ("data.val_size=0", r"data\.val_size=0 is not valid"),
        ("optimizer.lr=0", r"optimizer\.lr=0 is not valid: a number > 0"),
        ("optimizer.lr=-0.01", r"optimizer\.lr=-0\.01 is not valid"),
        ("optimizer=sparse_adam", r"optimizer=sparse_adam cannot train an MLP: .*sparse"),
        ("trainer.max_epochs=0", r"trainer\.max_epochs=0 is not valid: a whole number >= 1"),
        ("trainer.accelerator=tpu", r"trainer\.accelerator='tpu' is not valid: auto, cpu"),
        ("activation=maxout activation.pieces=1", r"activation\.pieces=1 is not valid"),
        ("seed=1.5", r"seed=1\.5 is not valid: a whole number"),
        ("data.std=0", r"data\.std=0 is not valid: a number > 0"),
        ("data.mean=abc", r"data\.mean='abc' is not valid: a number"),
        (
            "data.class_names=[a,b]",
            r"model\.num_classes=10 but data\.class_names lists 2 classes: "
            r"set model\.num_classes=2$",
        ),
    ],
)
def test_bad_values_are_refused_naming_key_value_and_what_is_accepted(
    small_run_config, overrides, message
):
    cfg = small_run_config(*overrides.split())
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


RBM_READY = "init=rbm activation=sigmoid data.normalize=false"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("init.pretraining.k=0", r"init\.pretraining\.k=0 is not valid: a whole number >= 1"),
        ("init.pretraining.epochs=1.5", r"init\.pretraining\.epochs=1\.5 is not valid"),
        ("init.pretraining.batch_size=0", r"init\.pretraining\.batch_size=0 is not valid"),
        ("init.pretraining.lr=0", r"init\.pretraining\.lr=0 is not valid: a number > 0"),
        ("model=linear", r"init=rbm pre-trains hidden layers and this model has none"),
        ("activation=relu", r"activation is torch\.nn\.ReLU: use activation=sigmoid"),
        ("model.batchnorm=true", r"BatchNorm1d between them: use model\.batchnorm=false"),
        ("data.normalize=true", r"pixels in \[0, 1\].*use data\.normalize=false"),
    ],
)
def test_rbm_pretraining_is_refused_for_settings_networks_and_data_it_cannot_train(
    small_run_config, overrides, message
):
    check_config(small_run_config(*RBM_READY.split()))  # the setup it can pre-train
    cfg = small_run_config(*RBM_READY.split(), *overrides.split())
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_gpu_accelerator_without_a_gpu_is_refused_before_training(small_run_config, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = small_run_config("trainer=gpu")
    with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu but no CUDA GPU.*trainer=cpu"):
        check_config(cfg)


def test_linear_model_needs_no_hidden_sizes(small_run_config):
    cfg = small_run_config("model=linear")
    assert "hidden_sizes" not in cfg.model
    check_config(cfg)
    assert OmegaConf.select(cfg, "model._target_") == "mlplab.model.nets.SoftmaxRegression"


def test_activation_chosen_for_a_model_without_hidden_layers_is_refused_with_the_reason(
    small_run_config,
):
    cfg = small_run_config("model=linear", "activation=sigmoid")
    reason = r"activation=sigmoid has no effect: the model \(SoftmaxRegression\) has no hidden"
    with pytest.raises(ConfigError, match=reason):
        check_config(cfg, overrides=["model=linear", "activation=sigmoid"])
    check_config(small_run_config("model=linear"), overrides=["model=linear"])
    check_config(small_run_config("activation=sigmoid"), overrides=["activation=sigmoid"])


def test_a_sweep_job_of_an_unused_option_fails_with_the_reason_in_its_metrics(
    small_run_config, tmp_path
):
    import json

    from tests.conftest import train

    with pytest.raises(ConfigError):
        train(small_run_config("model=linear"), overrides=["model=linear", "activation=tanh"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "activation=tanh has no effect" in metrics["error"]
