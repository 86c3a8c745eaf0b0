"""Each tracker gets the run for real: MLflow read back with its own client, W&B offline."""

import struct
from pathlib import Path

import pytest

from mlplab.record.hparams import compared_hparams
from mlplab.record.trackers import RUN_FOLDER_TAG
from mlplab.results import read_metrics
from tests.conftest import SMALL_RUN, compose_train_config, composed_choices, train
from tests.test_cli import run_train

TWO_EPOCHS = ["trainer.max_epochs=2", "trainer.log_every_n_steps=2"]


def mlflow_runs(tracking_uri: str, run_dir: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("mlplab")
    return client, client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{RUN_FOLDER_TAG}` = '{run_dir}'"
    )


def test_mlflow_run_has_the_hyperparameters_results_and_val_acc_curve(small_run_config, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", *TWO_EPOCHS]
    cfg = small_run_config(*overrides)
    choices = composed_choices(overrides)
    train(cfg, overrides, choices)

    client, (run,) = mlflow_runs(uri, tmp_path / "run")
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == {k: str(v) for k, v in compared_hparams(cfg, choices).items()}
    metrics = read_metrics(tmp_path / "run")
    for key in ("test/acc", "test/loss", "val/acc"):
        assert run.data.metrics[f"results/{key.replace('/', '_')}"] == pytest.approx(metrics[key])
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2 and max(point.value for point in history) == pytest.approx(
        metrics["val/acc"]
    )


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(small_run_config, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]
    train(small_run_config(*overrides))
    resumed = small_run_config(*overrides, "trainer.max_epochs=2", f"resume={tmp_path / 'run'}")
    train(resumed)

    client, runs = mlflow_runs(uri, tmp_path / "run")
    assert len(runs) == 1
    steps = [point.step for point in client.get_metric_history(runs[0].info.run_id, "val/acc")]
    assert len(steps) == 2 and steps[0] < steps[1]


def wandb_records(path: Path):
    """The records of a W&B run file: a log of 32 KiB blocks of chunks, each with a 7-byte
    header (checksum, length, kind: 1 whole, 2 first, 3 middle, 4 last), after a 7-byte
    file header."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.end_to_end
def test_wandb_offline_run_folder_holds_the_config_and_history(tiny_mnist, tmp_path):
    # A process of its own, as a person runs it: W&B writes its run file from a service
    # process and completes it when the run ends.
    overrides = ["logger=wandb", *SMALL_RUN, *TWO_EPOCHS]
    run_dir = tmp_path / "run"
    result = run_train([*overrides, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]

    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    config, history = {}, {}
    for record in wandb_records(run_file):
        for update in (record.config.update, record.run.config.update):
            config |= {item.key: item.value_json for item in update}
        if record.HasField("history"):
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(float(item.value_json))
    cfg = compose_train_config(run_dir, tiny_mnist, [*SMALL_RUN, *overrides])
    assert set(compared_hparams(cfg, composed_choices(overrides))) <= set(config)
    assert config["activation"] == '"relu"'
    metrics = read_metrics(run_dir)
    assert len(history["val/acc"]) == 2
    assert history["results/test_acc"] == [pytest.approx(metrics["test/acc"])]


def test_a_resumed_run_keeps_the_csv_rows_before_its_checkpoint_once(small_run_config, tmp_path):
    import csv

    train(small_run_config("logger=csv"))
    train(small_run_config("logger=csv", "trainer.max_epochs=2", f"resume={tmp_path / 'run'}"))
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row["val/acc"]]
    steps = [int(row["step"]) for row in rows]
    assert len(steps) == 2 and steps[0] < steps[1]
