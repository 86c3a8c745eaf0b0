"""`python -m train` end to end, as a person runs it, on the real MNIST."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_RUN, tiny_digits, train, write_idx, write_tiny_mnist

FEW_BATCHES = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]

pytestmark = pytest.mark.end_to_end  # every test here runs a command as a process


def run_train(
    args: list[str], data_root: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA_DIR": str(data_root), **(env or {})}
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
        ("trainer=gpu", "trainer.accelerator=gpu but no CUDA GPU"),
    ],
)
def test_config_mistakes_give_one_line_and_exit_status_2_without_traceback(
    tiny_mnist, tmp_path, override, message
):
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}  # the same answer on a machine that has one
    run_dir = tmp_path / "run"
    result = run_train([override, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path, no_gpu)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert message in output
    assert "Traceback" not in output
    assert not run_dir.exists()  # checked before the run's folder is made


def test_a_mistake_found_in_the_data_is_recorded_in_the_runs_folder(tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["data.val_size=600", f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    assert result.returncode == 2
    assert "data.val_size=600 must be between 1 and 599" in result.stdout + result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


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


def test_unknown_group_option_lists_the_choices(tiny_mnist, tmp_path):
    result = run_train(["activation=swish"], tiny_mnist, tmp_path)
    assert result.returncode == 2
    assert "swish is not an option of activation; choose from elu, gelu" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_default_run_reaches_the_course_accuracy(real_mnist, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train([f"hydra.run.dir={run_dir}", "trainer=cpu"], real_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 15
    assert metrics["test/acc"] >= 0.975


def test_two_runs_started_in_the_same_second_get_separate_folders(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "no data")}
    runs = [
        subprocess.Popen(  # each stops right after making its folder: there is no MNIST
            [sys.executable, "-m", "train", "data.download=false"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    assert [run.wait(timeout=600) for run in runs] == [2, 2]
    folders = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(folders) == 2
    assert all((folder / "metrics.json").exists() for folder in folders)


def test_diverged_job_of_a_sweep_is_recorded_and_the_others_complete(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        ["-m", "activation=sigmoid", "init=normal", "optimizer=sgd", "optimizer.lr=0.1,1e38"]
        + [*SMALL_RUN, f"hydra.sweep.dir={sweep}"],
        tiny_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = {
        job.name.startswith("1_"): json.loads((job / "metrics.json").read_text())["status"]
        for job in sweep.iterdir()
        if job.is_dir()
    }
    assert statuses == {False: "completed", True: "diverged"}
    assert "training diverged at epoch 0" in result.stdout + result.stderr


def damage_test_labels(data_root: Path) -> None:
    write_idx(data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", tiny_digits(50, seed=1)[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hydra.run.dir={tmp}/a_file/run"], "cannot write the output folder {tmp}/a_file/run"),
        (["resume={tmp}"], "resume={tmp} is not a run folder"),
        (["resume={tmp}/run", "optimizer.lr=1"], "optimizer.lr=1 cannot be used with resume"),
        (["hydra.run.dir={tmp}/run", "data.root={data}"], "holds 200 images but"),
    ],
    ids=["unwritable-output-folder", "resume-not-a-run", "resume-unsafe-override", "idx-counts"],
)
def test_bad_input_gives_one_line_and_leaves_no_completed_results(
    tiny_mnist, tmp_path, args, message
):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    data = write_tiny_mnist(tmp_path / "tiny")
    damage_test_labels(data)
    fill = {"tmp": tmp_path, "data": data}
    result = run_train([arg.format(**fill) for arg in args], tiny_mnist, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert message.format(**fill) in output and "Traceback" not in output
    for metrics in tmp_path.rglob("metrics.json"):
        assert json.loads(metrics.read_text())["status"] == "failed"


def test_evaluate_reproduces_the_runs_test_accuracy_from_its_path_as_it_is_and_refuses_others(
    small_run_config, tmp_path
):
    train(small_run_config())  # on the tiny data, whose folder the checkpoint remembers
    # A sweep job's folder, in a folder whose name has a space and a quote: passed unquoted.
    run_dir = tmp_path / "it's a sweep" / "0_seed=1,trainer.max_epochs=1"
    run_dir.parent.mkdir()
    (tmp_path / "run").rename(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    env = dict(os.environ)

    def evaluate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mlplab.evaluate", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    scores = f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}"
    for checkpoint in (run_dir / metrics["best_checkpoint"], run_dir):  # a run: its best
        result = evaluate(f"ckpt_path={checkpoint}", "data=mnist")
        assert result.returncode == 0, result.stderr[-2000:]
        assert (result.stdout + result.stderr).strip() == scores  # the scores and nothing else
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    for args, message in [
        ([f"ckpt_path={tmp_path / 'notes.ckpt'}"], "is not a readable checkpoint"),
        (
            [f"ckpt_path={run_dir}", "data=fashion_mnist"],
            "was trained on MNIST, so it cannot be tested on FashionMNIST",
        ),
    ]:
        refused = evaluate(*args)
        refusal = refused.stdout + refused.stderr
        assert refused.returncode == 2 and message in refusal
        assert "Traceback" not in refusal


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("mlplab.evaluate", "python -m mlplab.evaluate ckpt_path="),
        ("mlplab.report", "usage: python -m mlplab.report"),
        ("mlplab.predict", "usage: python -m mlplab.predict"),
    ],
)
def test_each_command_names_itself_in_its_help(tmp_path, command, usage):
    result = subprocess.run(
        [sys.executable, "-m", command, "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith(usage)


def test_diverged_run_exits_with_status_3_and_one_line(tiny_mnist, tmp_path):
    diverging = ["activation=sigmoid", "init=normal", "optimizer=sgd", "optimizer.lr=1e38"]
    run_dir = tmp_path / "run"
    result = run_train([*diverging, *SMALL_RUN, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 3
    assert "error: training diverged at epoch 0, step 1" in output and "Traceback" not in output
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_stops_a_run_with_its_exit_status_and_the_command_that_resumes_it(
    tiny_mnist, tmp_path, signal_name, status
):
    import torch

    run_dir = tmp_path / "run"
    long_run = [
        *SMALL_RUN,
        "trainer.max_epochs=1000",
        "callbacks.last_checkpoint.every_n_train_steps=5",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "train", *long_run, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tiny_mnist)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    while not checkpoint.exists():  # training has started
        assert process.poll() is None, process.stdout.read()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.Signals[signal_name])
    output, _ = process.communicate(timeout=120)
    assert process.returncode == status, output[-2000:]
    assert f"stopped by {signal_name}" in output
    assert f"continue with: python -m train resume={run_dir}" in output
    assert "Traceback" not in output
    steps_done = torch.load(checkpoint, weights_only=True)["global_step"]
    assert 5 <= steps_done < 10_000


def test_sweep_report_needs_no_tracker_files(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    arguments = ["-m", "activation=relu,sigmoid", "logger=none", "trainer.log_every_n_steps=2"]
    result = run_train([*arguments, *SMALL_RUN, f"hydra.sweep.dir={sweep}"], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(sweep.glob("*/tensorboard"))
    with (sweep / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["status"] for row in rows] == ["1 completed", "1 completed"]
    assert all(float(row["grad_norm_ratio"]) > 0 for row in rows)
    assert (sweep / "train_loss.png").exists() and (sweep / "grad_norms.png").exists()
