import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from mlplab.run import train

TIMINGS = ("train_seconds", "test_seconds")


def read_metrics(output_dir) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


def hparams_experiment(log_dir) -> plugin_data_pb2.HParamsPluginData:
    """The HPARAMS tab's experiment summary (hyperparameters and metric tags) in `log_dir`."""
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    if data.HasField("experiment"):
                        return data.experiment
    raise AssertionError(f"no hparams summary in {log_dir}")


def test_run_writes_metrics_checkpoints_and_returns_best_val_acc(small_run_config, tmp_path):
    objective = train(small_run_config())
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "completed"
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/acc", "train/loss"):
        assert isinstance(metrics[key], float), key
    assert metrics["epochs"] == 1 and metrics["train_seconds"] > 0
    assert objective == metrics["val/acc"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "run" / metrics["best_checkpoint"]).exists()


def test_tiny_digits_are_learned_to_high_test_accuracy(small_run_config, tmp_path):
    train(small_run_config("trainer.max_epochs=3"))
    assert read_metrics(tmp_path / "run")["test/acc"] > 0.9


def test_tensorboard_gets_curves_and_hparams_with_final_metrics_but_no_hp_metric(
    small_run_config, tmp_path
):
    train(small_run_config("trainer.max_epochs=2", "trainer.log_every_n_steps=2"))
    log_dir = tmp_path / "run" / "tensorboard"
    events = EventAccumulator(str(log_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/loss", "train/acc", "val/loss", "val/acc"} <= scalars
    assert {"test/acc", "test/loss", "lr-Adam"} <= scalars
    assert "hp_metric" not in scalars
    assert len(events.Scalars("val/acc")) == 2
    metrics = read_metrics(tmp_path / "run")
    assert events.Scalars("results/test_acc")[-1].value == pytest.approx(metrics["test/acc"])
    experiment = hparams_experiment(log_dir)
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert metric_tags == {"results/test_acc", "results/test_loss", "results/val_acc"}
    assert {"optimizer/lr", "activation/_target_", "model/hidden_sizes"} <= {
        info.name for info in experiment.hparam_infos
    }


def test_same_seed_gives_the_same_metrics_twice(small_run_config, tmp_path):
    train(small_run_config("seed=5", name="first"))
    train(small_run_config("seed=5", name="second"))
    train(small_run_config("seed=6", name="other"))
    first, second, other = (
        {k: v for k, v in read_metrics(tmp_path / name).items() if k not in TIMINGS}
        for name in ("first", "second", "other")
    )
    assert first == second
    assert first["train/loss"] != other["train/loss"]


def test_config_mistake_exits_with_status_2_and_records_the_failure(small_run_config, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train(small_run_config("data.batch_size=0"))
    assert exit_info.value.code == 2
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed"
    assert "data.batch_size=0" in metrics["error"]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_runs_with_every_logger(small_run_config, tmp_path, logger):
    train(small_run_config(f"logger={logger}"))
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists() == (logger == "csv")


def test_scheduler_changes_the_learning_rate_per_epoch(small_run_config, tmp_path):
    train(small_run_config("scheduler=step", "scheduler.step_size=1", "trainer.max_epochs=2"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert [point.value for point in events.Scalars("lr-Adam")] == pytest.approx([1e-3, 5e-4])


def test_compile_compiles_the_network_in_place_and_keeps_parameter_names(small_run_config):
    from mlplab.run import build_classifier

    plain = build_classifier(small_run_config())
    compiled = build_classifier(small_run_config("compile=true"))
    assert compiled.network._compiled_call_impl is not None
    assert plain.network._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_compiled_network_trains_to_the_same_accuracy_as_eager(small_run_config, tmp_path):
    train(small_run_config("trainer.max_epochs=2", name="eager"))
    train(small_run_config("trainer.max_epochs=2", "compile=true", name="compiled"))
    eager, compiled = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "compiled")
    assert compiled["status"] == "completed"
    assert compiled["test/acc"] == pytest.approx(eager["test/acc"], abs=0.02)
