"""Faults of the machine: a full disk, two writers on one run folder, a pre-empted cluster job."""

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from mlplab import results
from mlplab.errors import ConfigError, RunInterrupted, WriteFailed
from mlplab.job.facts import JobFacts
from mlplab.job.run import run_job
from mlplab.safety.run_folders import lock_run_folder
from tests.conftest import SMALL_RUN, train
from tests.test_run import send_signal_at


def no_space(*args, filename: str | None = None, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", filename)


def fail_checkpoint_write(monkeypatch):
    monkeypatch.setattr("mlplab.safety.checkpoints.os.fsync", no_space)


def fail_logger_write(monkeypatch):
    def events_file_full(self, metrics, step=None):
        no_space(filename=str(Path(self.log_dir) / "events.out.tfevents"))

    monkeypatch.setattr(TensorBoardLogger, "log_metrics", events_file_full)


def fail_metrics_write(monkeypatch):
    real_write = results.write_metrics

    def full_for_the_results(run_dir, metrics):
        if metrics.get("status") == "completed":
            no_space(filename=str(run_dir / results.METRICS_FILE))
        real_write(run_dir, metrics)

    monkeypatch.setattr(results, "write_metrics", full_for_the_results)


@pytest.mark.parametrize(
    ("inject", "written"),
    [
        (fail_checkpoint_write, "checkpoints/"),
        (fail_logger_write, "tensorboard/events.out.tfevents"),
        (fail_metrics_write, "metrics.json"),
    ],
    ids=["checkpoint", "logger", "metrics.json"],
)
def test_a_full_disk_stops_the_run_in_one_line_that_says_how_to_continue(
    small_run_config, tmp_path, monkeypatch, inject, written
):
    inject(monkeypatch)
    with pytest.raises(WriteFailed) as error:
        train(small_run_config())
    monkeypatch.undo()
    run_dir = tmp_path / "run"
    message = str(error.value)
    assert error.value.exit_code == 4 and "\n" not in message
    assert f"cannot write {run_dir}/{written}" in message
    assert "No space left on device" in message and f"MiB free in {run_dir}" in message
    assert message.endswith(f"continue with: python -m train resume={run_dir}")
    assert json.loads((run_dir / "metrics.json").read_text()) == {
        "status": "failed",
        "error": message,
    }
    assert not list(run_dir.rglob("*.partial"))


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 2 MiB tmpfs (root can mount one; elsewhere the test is skipped, saying why)."""
    mount_point = tmp_path / "tiny_fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.end_to_end
def test_a_run_on_a_full_filesystem_exits_4_and_resumes_once_space_is_freed(
    tiny_mnist, tmp_path, tiny_filesystem
):
    from tests.test_cli import run_train

    run_dir = tiny_filesystem / "run"
    # The default network's first checkpoint (3 MiB with Adam's state) does not fit.
    result = run_train([*SMALL_RUN, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output[-2000:]
    assert f"error: cannot write {run_dir}/checkpoints/" in output and "Traceback" not in output
    assert f"continue with: python -m train resume={run_dir}" in output
    assert not list(run_dir.rglob("*.partial"))
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"

    remount = ["mount", "-o", "remount,size=64m", str(tiny_filesystem)]
    subprocess.run(remount, check=True)
    result = run_train([f"resume={run_dir}"], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_a_second_process_is_refused_a_locked_folder_naming_the_holder(tmp_path):
    held = lock_run_folder(tmp_path)
    with pytest.raises(ConfigError, match=rf"is being written by process {os.getpid()} on "):
        lock_run_folder(tmp_path)
    held.close()  # as when the holder ends, however it ends
    lock_run_folder(tmp_path).close()


@pytest.mark.end_to_end
def test_resume_of_a_running_run_is_refused_and_after_kill_9_it_continues(tiny_mnist, tmp_path):
    from tests.test_cli import run_train
    from tests.test_resume import start_train, wait_for_step

    run_dir = tmp_path / "run"
    long_run = [
        *SMALL_RUN,
        "trainer.max_epochs=1000",
        "callbacks.last_checkpoint.every_n_train_steps=5",
    ]
    running = start_train([*long_run, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    wait_for_step(run_dir / "checkpoints" / "last.ckpt", running, step=5)

    second = run_train([f"resume={run_dir}"], tiny_mnist, tmp_path)
    output = second.stdout + second.stderr
    assert second.returncode == 2, output[-2000:]
    assert f"error: {run_dir} is being written by process {running.pid} on " in output
    assert running.poll() is None  # the first run goes on

    running.send_signal(signal.SIGKILL)
    running.wait()
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    epochs_done = step // 10  # 10 steps an epoch
    resumed = run_train(
        [f"resume={run_dir}", f"trainer.max_epochs={epochs_done + 1}"], tiny_mnist, tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == epochs_done + 1


class Requeued(SystemExit):
    """What submitit's handler ends the process with after requeueing the job."""


def test_preempted_sweep_job_saves_is_requeued_and_continues_in_its_folder(
    small_run_config, tmp_path
):
    two_epochs = ["trainer.max_epochs=2", "model.dropout=0.3"]
    whole = run_job(small_run_config(*two_epochs, name="whole"), JobFacts(in_sweep=True))

    requeue_requests = []

    def scheduler(signum, frame):  # a stand-in for submitit's checkpoint_and_try_requeue
        requeue_requests.append(signal.Signals(signum))
        raise Requeued(-1)

    job_cfg = small_run_config(*two_epochs, *send_signal_at(13, "SIGUSR2"), name="job")
    previous = signal.signal(signal.SIGUSR2, scheduler)
    try:
        with pytest.raises(Requeued):
            run_job(job_cfg, JobFacts(in_sweep=True))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert requeue_requests == [signal.SIGUSR2]
    job_dir = tmp_path / "job"
    assert torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14

    # The requeued job starts again with the same config, in the same folder.
    again = run_job(small_run_config(*two_epochs, name="job"), JobFacts(in_sweep=True))
    timings = ("train_seconds", "test_seconds")
    assert {k: v for k, v in again.items() if k not in timings} == {
        k: v for k, v in whole.items() if k not in timings
    }
    final = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    expected = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.equal(final[k], expected["state_dict"][k]) for k in final)


def test_preemption_signal_without_a_scheduler_stops_the_run_like_sigterm(small_run_config):
    with pytest.raises(RunInterrupted) as error:
        train(small_run_config("trainer.max_epochs=2", *send_signal_at(3, "SIGUSR1")))
    assert error.value.exit_code == 128 + signal.SIGUSR1.value
    assert "stopped by SIGUSR1 at epoch 0, step 4" in str(error.value)
