import csv
import os
import subprocess
import sys

import pytest

from mlplab.sweeps.summary import configuration_labels, markdown_table, write_report
from tests.conftest import SMALL_RUN


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A real 4-job multirun on tiny data: 2 configurations x 2 seeds, one configuration fails."""
    from tests.conftest import write_tiny_mnist

    root = tmp_path_factory.mktemp("sweep")
    data = write_tiny_mnist(root / "data")
    sweep = root / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "-m",
            "model.hidden_sizes=[32,32]",
            "data.val_size=100,600",  # 600 of the 600 training images: found when loading data
            "seed=1,2",
            *[o for o in SMALL_RUN if o not in ("trainer.max_epochs=1", "data.val_size=100")],
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=2",
            f"data.root={data}",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def read_rows(sweep):
    with (sweep / "summary.csv").open() as file:
        return {row["configuration"]: row for row in csv.DictReader(file)}


@pytest.mark.end_to_end
def test_multirun_writes_the_report_when_it_ends_with_failed_jobs_listed(small_sweep):
    rows = read_rows(small_sweep)
    assert set(rows) == {"data.val_size=100", "data.val_size=600"}
    trained, failed = rows["data.val_size=100"], rows["data.val_size=600"]
    assert (trained["n"], trained["status"]) == ("2", "2 completed")
    assert (failed["n"], failed["status"]) == ("2", "2 failed")
    assert failed["test_acc"] == ""


@pytest.mark.end_to_end
def test_runs_differing_only_by_seed_are_grouped_into_mean_and_std(small_sweep):
    trained = read_rows(small_sweep)["data.val_size=100"]
    assert 0.0 <= float(trained["test_acc"]) <= 1.0
    assert float(trained["test_acc_std"]) >= 0.0
    assert float(trained["epochs"]) == 2.0
    assert float(trained["grad_norm_ratio"]) > 0
    assert 0.0 <= float(trained["dead_fraction"]) <= 1.0
    assert trained["saturated_fraction"] == ""  # ReLU: dead units, not saturated ones


@pytest.mark.end_to_end
def test_report_writes_markdown_and_the_plots_that_say_something_about_the_sweep(small_sweep):
    markdown = (small_sweep / "summary.md").read_text()
    assert "| data.val_size=100 | 2 |" in markdown and " ± " in markdown
    for plot in ("val_acc.png", "train_loss.png", "grad_norms.png"):
        assert (small_sweep / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One configuration completed: a compute plot would be one point.
    assert not (small_sweep / "test_acc_vs_compute.png").exists()
    assert "No test_acc_vs_compute.png: every configuration cost the same" in markdown


@pytest.mark.end_to_end
def test_report_command_rewrites_the_report_and_prints_the_table(small_sweep):
    (small_sweep / "summary.md").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "mlplab.report", str(small_sweep)], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "| configuration |" in result.stdout
    assert (small_sweep / "summary.md").exists()


@pytest.mark.end_to_end
def test_report_command_refuses_a_folder_without_runs_with_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlplab.report", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"error: {tmp_path} holds no runs" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.end_to_end
def test_job_without_metrics_is_reported_as_unfinished(small_sweep, tmp_path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(small_sweep, copy)
    next(copy.glob("0_*/metrics.json")).unlink()
    rows = write_report(copy)
    statuses = {row["configuration"]: row["status"] for row in rows}
    assert statuses["data.val_size=100"] == "1 completed, 1 unfinished"


def test_configuration_labels_name_only_the_overrides_that_vary():
    from mlplab.sweeps.jobs import JobFolder

    jobs = [
        JobFolder(
            None, {"activation": "relu", "optimizer": "sgd", "init": "normal", "seed": "1"}, {}
        ),
        JobFolder(
            None, {"activation": "sigmoid", "optimizer": "sgd", "init": "xavier", "seed": "2"}, {}
        ),
    ]
    assert configuration_labels(jobs) == [
        "activation=relu, init=normal",
        "activation=sigmoid, init=xavier",
    ]


def write_job(folder, overrides: list[str], metrics: dict, scalars: dict[str, list[float]]) -> None:
    """A finished job's folder as `python -m train -m` leaves it, with the given numbers."""
    import json

    import yaml

    from mlplab.record.curves import CurveFile

    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    curves = CurveFile(folder)
    for tag, values in scalars.items():
        for step, value in enumerate(values):
            curves.log_metrics({tag: value}, step)
    curves.finalize("success")


def test_report_statistics_equal_values_computed_by_hand(tmp_path):
    runs = [  # (seed, test/acc, val/acc, train/loss, seconds, gradient ratios, dead per layer)
        (1, 0.90, 0.91, 0.30, 10.0, [1.0, 5.0, 2.0, 9.0], ([0.7, 0.5, 0.1], [0.1, 0.4, 0.3])),
        (2, 0.92, 0.95, 0.20, 12.0, [2.0, 2.0, 8.0], ([0.1, 0.6, 0.2], [0.9, 0.2, 0.1])),
        (3, 0.97, 0.93, 0.10, 14.0, [4.0, 1.0, 3.0], ([0.3, 0.9, 0.0], [0.5, 0.8, 0.6])),
    ]
    # Pre-training: 3 s and 500 FLOPs for seed 1 and 3; seed 2 is a run from before it existed.
    pretraining = {1: (3.0, 500), 2: None, 3: (3.0, 500)}
    for seed, test_acc, val_acc, train_loss, seconds, ratios, dead in runs:
        metrics = {"status": "completed", "test/acc": test_acc, "val/acc": val_acc}
        metrics |= {"train/loss": train_loss, "epochs": 3, "train_seconds": seconds}
        metrics["train_flops"] = 1000 * seed
        if pretraining[seed]:
            metrics["pretrain_seconds"], metrics["pretrain_flops"] = pretraining[seed]
        scalars = {"grad_norm/first_to_last_ratio": ratios}
        scalars |= {f"activation/dead_fraction/layer_{k}": v for k, v in enumerate(dead, 1)}
        write_job(
            tmp_path / f"{seed}_seed={seed}", [f"seed={seed}", "activation=relu"], metrics, scalars
        )
    write_job(tmp_path / "4_seed=4", ["seed=4", "activation=relu"], {"status": "failed"}, {})

    (row,) = write_report(tmp_path)

    assert (row["configuration"], row["n"], row["status"]) == (
        "all runs",
        4,
        "3 completed, 1 failed",
    )
    assert row["test_acc"] == pytest.approx((0.90 + 0.92 + 0.97) / 3)
    # The sample standard deviation (n - 1 in the denominator) of 0.90, 0.92, 0.97.
    assert row["test_acc_std"] == pytest.approx(((0.03**2 + 0.01**2 + 0.04**2) / 2) ** 0.5)
    assert row["best_val_acc"] == pytest.approx((0.91 + 0.95 + 0.93) / 3)
    assert row["best_val_acc_std"] == pytest.approx(((0.02**2 + 0.02**2 + 0**2) / 2) ** 0.5)
    assert row["final_train_loss"] == pytest.approx((0.30 + 0.20 + 0.10) / 3)
    # Per job the median over training (3.5, 2 and 3), then the mean over jobs.
    assert row["grad_norm_ratio"] == pytest.approx((3.5 + 2.0 + 3.0) / 3)
    # Per job the last epoch's value averaged over layers (0.2, 0.15, 0.3), then over jobs.
    assert row["dead_fraction"] == pytest.approx((0.2 + 0.15 + 0.3) / 3)
    assert row["saturated_fraction"] is None
    assert row["epochs"] == 3
    # The cost columns count pre-training in: (10 + 3, 12, 14 + 3) s, (1500, 2000, 3500) FLOPs.
    assert row["pretrain_seconds"] == pytest.approx(3.0)
    assert row["train_seconds"] == pytest.approx(14.0)
    assert row["train_flops"] == pytest.approx(7000 / 3)


def test_one_seed_has_no_spread_two_have_one_and_saturation_is_the_last_epochs_mean(tmp_path):
    metrics = {"status": "completed", "test/acc": 0.8, "val/acc": 0.7, "epochs": 3}
    saturated = {"activation/saturated_fraction/layer_1": [0.9, 0.8, 0.6]}
    saturated["activation/saturated_fraction/layer_2"] = [0.1, 0.3, 0.2]
    write_job(tmp_path / "0_activation=sigmoid", ["activation=sigmoid"], metrics, saturated)
    write_job(tmp_path / "1_activation=relu", ["activation=relu"], {"epochs": 3}, {})
    for seed, test_acc in ((5, 0.5), (6, 0.7)):
        completed = {"status": "completed", "test/acc": test_acc}
        write_job(tmp_path / f"{seed - 3}_seed={seed}", [f"seed={seed}"], completed, {})

    sigmoid, relu, default = write_report(tmp_path)

    assert (sigmoid["configuration"], sigmoid["n"]) == ("activation=sigmoid", 1)
    # One run measures no spread: none is shown, rather than a spread of zero.
    assert (sigmoid["test_acc"], sigmoid["test_acc_std"]) == (0.8, None)
    assert (sigmoid["best_val_acc"], sigmoid["best_val_acc_std"]) == (0.7, None)
    assert sigmoid["saturated_fraction"] == pytest.approx((0.6 + 0.2) / 2)
    assert sigmoid["dead_fraction"] is None
    # A metrics.json without a status (written by hand, or by another tool) is not hidden.
    assert (relu["status"], relu["test_acc"], relu["epochs"]) == ("1 unknown", None, 3)
    # A job that left the swept key at its default says so.
    assert default["configuration"] == "activation=(default)"
    # Two seeds: the sample standard deviation of 0.5 and 0.7.
    assert (default["n"], default["test_acc_std"]) == (2, pytest.approx(0.2 / 2**0.5))


def test_markdown_table_shows_each_statistic_with_its_precision_and_std_beside_its_mean():
    row = {
        "configuration": "activation=relu",
        "n": 3,
        "test_acc": 0.97514,
        "test_acc_std": 0.00123,
        "best_val_acc": 0.98,
        "best_val_acc_std": 0.0,  # measured: equal over seeds
        "final_train_loss": 0.123456,
        "grad_norm_ratio": 0.000123,
        "dead_fraction": 0.125,
        "saturated_fraction": 0.5,
        "epochs": 15.0,
        "pretrain_seconds": 4.06,
        "train_seconds": 20.04,
        "train_flops": 1.2345e12,
        "status": "3 completed",
    }
    assert markdown_table([row]) == (
        "| configuration | n | test_acc | best_val_acc | final_train_loss | grad_norm_ratio | "
        "dead_fraction | saturated_fraction | epochs | pretrain_seconds | train_seconds | "
        "train_flops | status |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| activation=relu | 3 | 0.9751 ± 0.0012 | 0.9800 ± 0.0000 | 0.1235 | 1.23e-04 | "
        "12.5% | 50.0% | 15.0 | 4.1 | 20.0 | 1.23e+12 | 3 completed |\n"
    )
    one_run = {**row, "n": 1, "test_acc_std": None, "best_val_acc_std": None}
    assert "| activation=relu | 1 | 0.9751 | 0.9800 | 0.1235 |" in markdown_table([one_run])
