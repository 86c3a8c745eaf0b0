"""`python -m train` end to end, as a person runs it, on the real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FEW_BATCHES = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


def run_train(args: list[str], data_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA_DIR": str(data_root)}
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_single_run_writes_its_folder_and_prints_one_summary_line(real_mnist, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train([*FEW_BATCHES, f"hydra.run.dir={run_dir}"], real_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = [line for line in result.stdout.splitlines() if "test/acc" in line]
    assert len(summary) == 1 and str(run_dir) in summary[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_multirun_puts_each_job_in_a_folder_named_after_its_overrides(real_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        [
            "-m",
            "activation=relu,sigmoid",
            "optimizer=sgd",
            *FEW_BATCHES,
            f"hydra.sweep.dir={sweep}",
        ],
        real_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(path.name for path in sweep.iterdir() if path.is_dir())
    assert [job.split(",")[0] for job in jobs] == ["0_activation=relu", "1_activation=sigmoid"]
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert any((sweep / job / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_sizes=[]", "model.hidden_sizes=[] is not valid"),
        ("model.dropout=1.5", "model.dropout=1.5 is not valid"),
        ("data.batch_size=0", "data.batch_size=0 is not valid"),
        ("optimizer.lr=-1", "optimizer.lr=-1 is not valid"),
        ("optimizer=sparse_adam", "optimizer=sparse_adam cannot train an MLP"),
        ("data.val_size=60000", "data.val_size=60000 must be between 1 and 59999"),
        ("trainer=gpu", "trainer.accelerator=gpu but no CUDA GPU"),
    ],
)
def test_config_mistakes_give_one_line_and_exit_status_2_without_traceback(
    real_mnist, tmp_path, override, message
):
    result = run_train([override, f"hydra.run.dir={tmp_path / 'run'}"], real_mnist, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert message in output
    assert "Traceback" not in output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def test_missing_data_without_download_says_where_files_were_expected(tmp_path):
    empty = tmp_path / "empty"
    result = run_train(
        ["data.download=false", f"hydra.run.dir={tmp_path / 'run'}"], empty, tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    assert "MNIST not found: expected train-images-idx3-ubyte" in output
    assert str(empty / "MNIST" / "raw") in output
    assert "Set data.root" in output


def test_unknown_group_option_lists_the_choices(real_mnist, tmp_path):
    result = run_train(["activation=swish"], real_mnist, tmp_path)
    assert result.returncode != 0
    assert "Could not find 'activation/swish'" in result.stderr
    assert "relu" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_default_run_reaches_the_course_accuracy(real_mnist, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train([f"hydra.run.dir={run_dir}", "trainer=cpu"], real_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 15
    assert metrics["test/acc"] >= 0.975
