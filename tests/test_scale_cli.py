"""Scaling out end to end on this machine: DDP on CPU processes, joblib, submitit, Optuna."""

import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import FEW_BATCHES, run_train

QUIET = ["callbacks.progress_bar.refresh_rate=0"]
# 100 steps: 10,000 images in one process, 20,000 in two (the batch size is per process).
EPOCH_OF_100_STEPS = ["trainer.max_epochs=1", "trainer.limit_train_batches=100"]
# Keeps the job folders' names short: only the swept values name them.
SHORT_NAMES = (
    "hydra.job.config.override_dirname.exclude_keys=[trainer,trainer.max_epochs,"
    "trainer.limit_train_batches,trainer.limit_val_batches,trainer.limit_test_batches,"
    "callbacks.progress_bar.refresh_rate,hydra/launcher,hparams_search]"
)


def job_folders(sweep: Path) -> list[str]:
    return sorted(path.name for path in sweep.iterdir() if path.is_dir() and path.name[0] != ".")


def completed_metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    return metrics


def test_ddp_on_two_cpu_processes_writes_one_run_and_matches_one_process(real_mnist, tmp_path):
    runs = {}
    for trainer in ("cpu", "ddp_cpu"):
        run_dir = tmp_path / trainer
        result = run_train(
            [f"trainer={trainer}", *EPOCH_OF_100_STEPS, *QUIET, f"hydra.run.dir={run_dir}"],
            real_mnist,
            tmp_path,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs[trainer] = completed_metrics(run_dir)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()].count("ddp_cpu") == 1
    ddp_dir = tmp_path / "ddp_cpu"
    assert (ddp_dir / "train_rank1.log").exists()  # the second process ran in the same folder
    assert len(list((ddp_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 1
    assert [p.name for p in (ddp_dir / "tensorboard").iterdir() if p.is_dir()] == []
    assert runs["ddp_cpu"]["test/acc"] == pytest.approx(runs["cpu"]["test/acc"], abs=0.02)


def test_ddp_multirun_gives_each_job_one_folder_and_runs_each_job_once(real_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        ["-m", "trainer=ddp_cpu", "activation=relu,tanh", *FEW_BATCHES, *QUIET, SHORT_NAMES]
        + [f"hydra.sweep.dir={sweep}"],
        real_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_folders(sweep) == ["0_activation=relu", "1_activation=tanh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no stray run folders
    for job in job_folders(sweep):
        completed_metrics(sweep / job)
        assert (sweep / job / "train_rank1.log").exists()
    # Each job's summary is printed once, by its first process.
    assert len([line for line in result.stdout.splitlines() if "test/acc" in line]) == 2


@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_launchers_run_every_job_of_a_sweep_into_the_usual_folders(real_mnist, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    result = run_train(
        ["-m", f"hydra/launcher={launcher}", "trainer=cpu", "activation=relu,tanh"]
        + [*FEW_BATCHES, *QUIET, SHORT_NAMES, f"hydra.sweep.dir={sweep}"],
        real_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_folders(sweep) == ["0_activation=relu", "1_activation=tanh"]
    for job in job_folders(sweep):
        assert completed_metrics(sweep / job)["test/acc"] > 0.5


def trials(study_file: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(study_file) as connection:
        return connection.execute(
            "SELECT trials.state, trial_values.value FROM trials "
            "JOIN trial_values ON trials.trial_id = trial_values.trial_id"
        ).fetchall()


def test_optuna_search_stores_its_trials_and_a_second_run_extends_the_study(real_mnist, tmp_path):
    def search(sweep: Path):
        return run_train(
            ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "trainer=cpu"]
            + [*FEW_BATCHES, *QUIET, SHORT_NAMES, f"hydra.sweep.dir={sweep}"],
            real_mnist,
            tmp_path,
        )

    first = search(tmp_path / "first")
    assert first.returncode == 0, first.stderr[-2000:]
    study_file = tmp_path / "outputs" / "optuna" / "mlp_mnist.db"
    assert [state for state, _ in trials(study_file)] == ["COMPLETE"] * 3
    folders = job_folders(tmp_path / "first")
    assert [folder.split("_")[0] for folder in folders] == ["0", "1", "2"]
    assert all("optimizer.lr=" in folder and "model.hidden_sizes=" in folder for folder in folders)
    # Each trial's value is what its job returned: the best val/acc in its metrics.json.
    best_val_accs = sorted(completed_metrics(tmp_path / "first" / f)["val/acc"] for f in folders)
    assert sorted(value for _, value in trials(study_file)) == pytest.approx(best_val_accs)

    second = search(tmp_path / "second")
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(trials(study_file)) == 6
