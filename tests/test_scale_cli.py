"""Scaling out end to end on this machine: DDP on CPU processes, joblib, submitit, Optuna."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.functional import cross_entropy

from mlplab.data.mnist import load_split, to_features
from mlplab.job.build import build_classifier
from mlplab.safety.checkpoints import read_checkpoint
from mlplab.use.checkpoint_test import evaluate_checkpoint
from tests.conftest import SMALL_RUN, TINY_TEST
from tests.test_cli import run_train
from tests.test_resume import final_weights, results, start_train, wait_for_step

# A small run on the tiny data, on the trainer each test names.
TINY_RUN = [override for override in SMALL_RUN if not override.startswith("trainer=")]
# Keeps the job folders' names short: only the swept values name them.
SHORT_NAMES = (
    "hydra.job.config.override_dirname.exclude_keys=[trainer,trainer.max_epochs,"
    "trainer.limit_train_batches,trainer.limit_val_batches,trainer.limit_test_batches,"
    "callbacks.progress_bar.refresh_rate,data.val_size,data.batch_size,hydra/launcher,"
    "hydra.launcher.cluster,callbacks.trial.number,"
    "hparams_search]"
)

pytestmark = pytest.mark.end_to_end  # every test here runs a command as a process


def job_folders(sweep: Path) -> list[str]:
    return sorted(path.name for path in sweep.iterdir() if path.is_dir() and path.name[0] != ".")


def completed_metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    return metrics


def test_ddp_metrics_count_both_processes_shares_and_equal_one_process_on_its_checkpoint(
    tiny_mnist, tmp_path
):
    """Two processes, 100 test images each, in batches of 30 (a short last batch on each)."""
    run_dir = tmp_path / "ddp_cpu"
    result = run_train(
        ["trainer=ddp_cpu", *TINY_RUN, "data.eval_batch_size=30", f"hydra.run.dir={run_dir}"],
        tiny_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = completed_metrics(run_dir)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()].count("ddp_cpu") == 1
    assert (run_dir / "rank1.log").exists()  # the second process ran in the same folder
    assert [p.name for p in (run_dir / "tensorboard").iterdir() if p.is_dir()] == []

    checkpoint = read_checkpoint(run_dir / metrics["best_checkpoint"])
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    classifier = build_classifier(run_cfg)
    classifier.load_state_dict(checkpoint["state_dict"])
    images, labels = load_split(tiny_mnist, "MNIST", train=False, download=False, num_classes=10)
    with torch.no_grad():
        logits = classifier(to_features(images, True, run_cfg.data.mean, run_cfg.data.std))
    correct = int((logits.argmax(dim=1) == labels).sum())
    assert metrics["test/acc"] == pytest.approx(correct / TINY_TEST, abs=1e-7)
    assert metrics["test/loss"] == pytest.approx(cross_entropy(logits, labels).item(), rel=1e-6)
    alone = evaluate_checkpoint(run_dir / metrics["best_checkpoint"], None, "cpu")
    assert metrics["test/acc"] == alone["test/acc"]


def test_ddp_multirun_gives_each_job_one_folder_and_runs_each_job_once(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        ["-m", "trainer=ddp_cpu", "activation=relu,tanh", *TINY_RUN, SHORT_NAMES]
        + [f"hydra.sweep.dir={sweep}"],
        tiny_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_folders(sweep) == ["0_activation=relu", "1_activation=tanh"]
    # No stray run folders beside the sweep (and the tiny data).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "sweep"]
    for job in job_folders(sweep):
        completed_metrics(sweep / job)
        assert (sweep / job / "rank1.log").exists()
    # Each job's summary is printed once, by its first process.
    assert len([line for line in result.stdout.splitlines() if "test/acc" in line]) == 2


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=parallel"], ["hydra/launcher=slurm", "hydra.launcher.cluster=local"]],
)
def test_launchers_train_each_packed_group_of_a_sweep_into_the_usual_folders(
    tiny_mnist, tmp_path, launcher
):
    sweep = tmp_path / "sweep"
    # Hydra's callbacks are told each job's end with its return value, in the job's own log.
    job_ends = "+hydra.callbacks.job_end._target_=hydra.experimental.callbacks.LogJobReturnCallback"
    result = run_train(
        ["-m", *launcher, "trainer=cpu", "activation=relu,tanh", "optimizer=adam,sgd"]
        + [*TINY_RUN, SHORT_NAMES, f"hydra.sweep.dir={sweep}", job_ends],
        tiny_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "packed together: #0, #2" in result.stderr + result.stdout
    assert job_folders(sweep) == [
        "0_activation=relu,optimizer=adam",
        "1_activation=relu,optimizer=sgd",
        "2_activation=tanh,optimizer=adam",
        "3_activation=tanh,optimizer=sgd",
    ]
    for job in job_folders(sweep):
        metrics = completed_metrics(sweep / job)
        assert metrics["packed_jobs"] == 2
        log = (sweep / job / "train.log").read_text().splitlines()
        ends = [line for line in log if "Succeeded with return value" in line]
        assert ends[-1].endswith(f"return value: {metrics['val/acc']}")


def trials(study_file: Path) -> list[tuple[int, str, float | None]]:
    """(number, state, value) of each trial of the study in `study_file`."""
    with sqlite3.connect(study_file) as connection:
        return connection.execute(
            "SELECT trials.number, trials.state, trial_values.value FROM trials "
            "LEFT JOIN trial_values ON trials.trial_id = trial_values.trial_id ORDER BY number"
        ).fetchall()


def search(tmp_path: Path, data: Path, sweep: Path, *extra: str, wait: bool = True):
    arguments = ["hparams_search=optuna", "hydra.sweeper.n_jobs=2", "trainer=cpu"]
    arguments += [*TINY_RUN, SHORT_NAMES, f"hydra.sweep.dir={sweep}", *extra]
    if wait:
        return run_train(arguments, data, tmp_path)
    return start_train(arguments, data, tmp_path)


def test_a_search_trains_each_batch_packed_and_the_same_command_continues_its_study(
    tiny_mnist, tmp_path
):
    first = search(tmp_path, tiny_mnist, tmp_path / "first", "hydra.sweeper.n_trials=4")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("packed together:") == 2  # two batches of two trials
    study_file = tmp_path / "outputs" / "optuna" / "mlp_mnist.db"
    assert [state for _, state, _ in trials(study_file)] == ["COMPLETE"] * 4
    folders = job_folders(tmp_path / "first")
    assert [folder.split("_")[0] for folder in folders] == ["0", "1", "2", "3"]
    assert all("optimizer.lr=" in folder and "trial" not in folder for folder in folders)
    metrics = [completed_metrics(tmp_path / "first" / folder) for folder in folders]
    assert {job["packed_jobs"] for job in metrics} == {2}
    # Each trial's value is its job's val/acc in its metrics.json.
    values = sorted(value for _, _, value in trials(study_file))
    assert values == pytest.approx(sorted(job["val/acc"] for job in metrics))
    found = OmegaConf.load(tmp_path / "first" / "optimization_results.yaml")
    assert found.best["values"]["val/acc"] == pytest.approx(max(values))
    assert "## Search: Best trial" in (tmp_path / "first" / "summary.md").read_text()

    done = search(tmp_path, tiny_mnist, tmp_path / "again", "hydra.sweeper.n_trials=4")
    assert done.returncode == 0 and "4 of 4 trials so far" in done.stdout
    more = search(tmp_path, tiny_mnist, tmp_path / "more", "hydra.sweeper.n_trials=6")
    assert more.returncode == 0, more.stderr[-2000:]
    assert [number for number, _, _ in trials(study_file)] == list(range(6))


def test_two_searches_share_a_study_and_the_dashboard_reads_its_trials(tiny_mnist, tmp_path):
    import socket
    import time
    import urllib.request

    extra = ("hydra.sweeper.n_trials=4", "hydra/sweeper/pruner=none")
    searches = [search(tmp_path, tiny_mnist, tmp_path / name, *extra, wait=False) for name in "ab"]
    for process in searches:
        _, errors = process.communicate(timeout=600)
        assert process.returncode == 0, errors[-2000:]
    study_file = tmp_path / "outputs" / "optuna" / "mlp_mnist.db"
    stored = trials(study_file)
    assert len(stored) >= 4 and {state for _, state, _ in stored} == {"COMPLETE"}

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    dashboard = subprocess.Popen(
        [Path(sys.executable).with_name("optuna-dashboard"), f"sqlite:///{study_file}"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/studies"
        for _ in range(100):
            try:
                studies = json.load(urllib.request.urlopen(url, timeout=5))["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        (study,) = studies
        assert study["study_name"] == "mlp_mnist"
        detail = json.load(urllib.request.urlopen(f"{url}/{study['study_id']}", timeout=10))
        served = sorted((trial["number"], trial["values"][0]) for trial in detail["trials"])
        assert [number for number, _ in served] == [number for number, _, _ in stored]
        assert [value for _, value in served] == pytest.approx([value for *_, value in stored])
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_ddp_run_killed_mid_epoch_resumes_to_the_results_of_an_uninterrupted_one(
    tiny_mnist, tmp_path
):
    """20 epochs of 5 steps (250 images per process); last.ckpt every 3 steps."""
    ddp_run = [
        "trainer=ddp_cpu",
        *TINY_RUN,
        "trainer.max_epochs=20",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = start_train([*ddp_run, f"hydra.run.dir={whole}"], tiny_mnist, tmp_path)
    victim = start_train(
        [*ddp_run, f"hydra.run.dir={killed}"], tiny_mnist, tmp_path, start_new_session=True
    )
    wait_for_step(killed / "checkpoints" / "last.ckpt", victim, step=random.randrange(10, 90))
    os.killpg(victim.pid, signal.SIGKILL)  # both processes of the run
    victim.wait()
    assert not (killed / "metrics.json").exists()
    assert uninterrupted.wait() == 0, uninterrupted.stderr.read()[-2000:]

    result = run_train([f"resume={killed}"], tiny_mnist, tmp_path)

    assert result.returncode == 0, result.stderr[-2000:]
    resumed, expected = results(killed), results(whole)
    # Summed in another order across the two processes: equal to float32 rounding.
    assert resumed.pop("train/loss") == pytest.approx(expected.pop("train/loss"), rel=1e-6)
    assert resumed == expected
    whole_weights, resumed_weights = final_weights(whole), final_weights(killed)
    assert all(torch.equal(whole_weights[key], resumed_weights[key]) for key in whole_weights)
