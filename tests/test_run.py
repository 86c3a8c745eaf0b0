import json
import os
import signal

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from mlplab.errors import ConfigError, RunInterrupted, TrainingDiverged
from mlplab.job.build import build_trainer
from mlplab.record.hparams import compared_hparams
from mlplab.safety.checkpoints import AtomicCheckpointIO
from mlplab.use.checkpoint_test import evaluate_checkpoint
from tests.conftest import train, write_tiny_mnist

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


def test_run_writes_its_metrics_and_checkpoints(small_run_config, tmp_path):
    train(small_run_config())
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "completed"
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/acc", "train/loss"):
        assert isinstance(metrics[key], float), key
    assert metrics["epochs"] == 1 and metrics["train_seconds"] > 0
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
    for key in ("test/acc", "test/loss", "val/acc"):
        result = events.Scalars(f"results/{key.replace('/', '_')}")
        assert [point.value for point in result] == pytest.approx([metrics[key]]), key
    experiment = hparams_experiment(log_dir)
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert metric_tags == {"results/test_acc", "results/test_loss", "results/val_acc"}
    hparams = compared_hparams(small_run_config(), {})
    assert {info.name for info in experiment.hparam_infos} == set(hparams)


def final_weights(output_dir) -> dict[str, torch.Tensor]:
    return torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def results(output_dir) -> dict:
    return {k: v for k, v in read_metrics(output_dir).items() if k not in TIMINGS}


def test_same_seed_gives_the_same_metrics_and_weights_twice(small_run_config, tmp_path):
    train(small_run_config("seed=5", name="first"))
    train(small_run_config("seed=5", name="second"))
    train(small_run_config("seed=6", name="other"))
    first, second, other = (
        {k: v for k, v in read_metrics(tmp_path / name).items() if k not in TIMINGS}
        for name in ("first", "second", "other")
    )
    assert first == second
    assert first["train/loss"] != other["train/loss"]
    assert same_weights(final_weights(tmp_path / "first"), final_weights(tmp_path / "second"))
    assert not same_weights(final_weights(tmp_path / "first"), final_weights(tmp_path / "other"))


def test_config_mistake_exits_with_status_2_and_records_the_failure(small_run_config, tmp_path):
    with pytest.raises(ConfigError) as error:
        train(small_run_config("data.batch_size=0"))
    assert error.value.exit_code == 2
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed"
    assert "data.batch_size=0" in metrics["error"]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_runs_with_every_logger(small_run_config, tmp_path, logger):
    train(small_run_config(f"logger={logger}"))
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists() == (logger == "csv")


def scalar_points(run_dir, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return [(point.step, point.value) for point in events.Scalars(tag)]


def scalar_values(run_dir, tag: str) -> list[float]:
    return [value for _, value in scalar_points(run_dir, tag)]


def test_best_epoch_is_the_one_tested_and_reported_when_a_later_epoch_is_worse(
    small_run_config, tmp_path
):
    # The learning rate jumps 1000-fold after the first epoch and wrecks what it learned.
    wrecked = ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1000"]
    train(small_run_config("trainer.max_epochs=2", *wrecked))
    run_dir = tmp_path / "run"
    metrics = read_metrics(run_dir)
    val_acc = scalar_values(run_dir, "val/acc")
    assert val_acc[0] > val_acc[1]  # the setup works: the best epoch is not the last
    assert metrics["val/acc"] == pytest.approx(val_acc[0])
    assert metrics["best_checkpoint"].startswith("checkpoints/epoch00-")
    best = evaluate_checkpoint(run_dir / metrics["best_checkpoint"], None, "cpu")
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last_checkpoint, weights_only=True)["global_step"] == 20  # the end
    last = evaluate_checkpoint(last_checkpoint, None, "cpu")
    assert metrics["test/acc"] == best["test/acc"] != last["test/acc"]
    assert metrics["test/loss"] == pytest.approx(best["test/loss"], rel=1e-6)
    # val/loss is the tested epoch's, like val/acc; train/loss and train/acc the last epoch's.
    val_loss = scalar_values(run_dir, "val/loss")
    assert val_loss[0] != val_loss[1]
    assert metrics["val/loss"] == pytest.approx(val_loss[0])
    assert metrics["train/loss"] == pytest.approx(scalar_values(run_dir, "train/loss")[-1])
    assert metrics["train/acc"] == pytest.approx(scalar_values(run_dir, "train/acc")[-1])


def test_trainer_writes_checkpoints_through_the_atomic_writer(small_run_config):
    trainer = build_trainer(small_run_config())
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_scheduler_changes_the_learning_rate_per_epoch(small_run_config, tmp_path):
    train(small_run_config("scheduler=step", "scheduler.step_size=1", "trainer.max_epochs=2"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert [point.value for point in events.Scalars("lr-Adam")] == pytest.approx([1e-3, 5e-4])


def test_compile_compiles_the_network_in_place_and_keeps_parameter_names(small_run_config):
    from mlplab.job.build import build_classifier

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


class SendSignalAtStep(L.Callback):
    """Sends `signal_name` to this process when training reaches `step`, as a scheduler would."""

    def __init__(self, step: int, signal_name: str) -> None:
        self.step = step
        self.signal = signal.Signals[signal_name]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)


DIVERGING = ["activation=sigmoid", "init=normal", "optimizer=sgd", "optimizer.lr=1e38"]


def test_nan_loss_stops_the_run_at_once_and_records_diverged(small_run_config, tmp_path):
    with pytest.raises(TrainingDiverged) as error:
        train(small_run_config(*DIVERGING, "trainer.max_epochs=3"))
    assert error.value.exit_code == 3
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "diverged"
    assert "training diverged at epoch 0, step 1: the loss is nan" in metrics["error"]
    assert "last finite loss" in metrics["error"] and "lower optimizer.lr" in metrics["error"]


# Two epochs of 10 batches; dropout draws from the random state that checkpoints carry.
TWO_EPOCHS_WITH_DROPOUT = [
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "model.dropout=0.3",
    "callbacks.last_checkpoint.every_n_train_steps=1000",
]


def send_signal_at(step: int, signal_name: str) -> list[str]:
    return [
        "+callbacks.sender._target_=tests.test_run.SendSignalAtStep",
        f"+callbacks.sender.step={step}",
        f"+callbacks.sender.signal_name={signal_name}",
    ]


def stop_by_signal(cfg, signal_name: str) -> None:
    with pytest.raises(RunInterrupted) as error:
        train(cfg)
    assert error.value.exit_code == 128 + signal.Signals[signal_name].value


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_that_resumes_to_the_same_results_with_dropout(
    small_run_config, tmp_path, signal_name
):
    train(small_run_config(*TWO_EPOCHS_WITH_DROPOUT, name="whole"))
    # Mid-way through the second epoch.
    stop_by_signal(
        small_run_config(
            *TWO_EPOCHS_WITH_DROPOUT, *send_signal_at(13, signal_name), name="stopped"
        ),
        signal_name,
    )
    stopped = tmp_path / "stopped"
    assert read_metrics(stopped)["status"] == "failed"
    assert f"resume={stopped}" in read_metrics(stopped)["error"]
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14

    train(small_run_config(*TWO_EPOCHS_WITH_DROPOUT, f"resume={stopped}", name="stopped"))
    assert results(stopped) == results(tmp_path / "whole")
    assert same_weights(final_weights(stopped), final_weights(tmp_path / "whole"))


def test_run_stopped_twice_in_one_epoch_resumes_to_the_same_results_and_curves(
    small_run_config, tmp_path
):
    train(small_run_config(*TWO_EPOCHS_WITH_DROPOUT, name="whole"))
    resumed = f"resume={tmp_path / 'stopped'}"
    stop_by_signal(
        small_run_config(*TWO_EPOCHS_WITH_DROPOUT, *send_signal_at(12, "SIGTERM"), name="stopped"),
        "SIGTERM",
    )
    stop_by_signal(
        small_run_config(
            *TWO_EPOCHS_WITH_DROPOUT, *send_signal_at(16, "SIGTERM"), resumed, name="stopped"
        ),
        "SIGTERM",
    )
    train(small_run_config(*TWO_EPOCHS_WITH_DROPOUT, resumed, name="stopped"))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert results(stopped) == results(whole)
    assert same_weights(final_weights(stopped), final_weights(whole))
    # The curves continue where each stop left them: every step once, none missing.
    for tag in ("train/loss_step", "val/acc", "grad_norm/layer_1"):
        assert scalar_points(stopped, tag) == scalar_points(whole, tag), tag
    assert [step for step, _ in scalar_points(stopped, "train/loss_step")] == list(range(20))


@pytest.mark.parametrize(("option", "dataset"), [("mnist", "MNIST"), ("kmnist", "KMNIST")])
def test_finished_run_resumed_with_more_epochs_equals_a_longer_run(
    small_run_config, tiny_mnist, tmp_path, option, dataset
):
    if dataset != "MNIST":
        write_tiny_mnist(tiny_mnist, dataset)
    train(small_run_config(f"data={option}", "trainer.max_epochs=2", name="longer"))
    train(small_run_config(f"data={option}", "trainer.max_epochs=1", name="extended"))
    extended = tmp_path / "extended"
    train(
        small_run_config(
            f"data={option}", "trainer.max_epochs=2", f"resume={extended}", name="extended"
        )
    )
    assert results(extended) == results(tmp_path / "longer")
    assert same_weights(final_weights(extended), final_weights(tmp_path / "longer"))
    checkpoint = torch.load(extended / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["data"]["dataset"] == dataset


def test_resume_from_a_damaged_checkpoint_fails_in_one_line(small_run_config, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04cut short")
    with pytest.raises(ConfigError) as error:
        train(small_run_config(f"resume={tmp_path / 'run'}"))
    assert error.value.exit_code == 2
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed" and "is not a readable checkpoint" in metrics["error"]
