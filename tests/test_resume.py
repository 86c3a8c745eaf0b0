"""Stopped runs continue where they were: `python -m train resume=<run folder>` end to end."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlplab.errors import ConfigError
from mlplab.safety.resume import resume_arguments
from tests.test_cli import run_train

TIMINGS = ("train_seconds", "test_seconds")
# 200 steps of a small network: 2 epochs of 100 batches, a checkpoint every 5 steps.
KILLABLE_RUN = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.val_size=50000",
    "data.batch_size=100",
    "model.hidden_sizes=[32]",
    "trainer.limit_val_batches=2",
    "callbacks.last_checkpoint.every_n_train_steps=5",
    "callbacks.progress_bar.refresh_rate=0",
]


def start_train(
    args: list[str], data_root: Path, cwd: Path, start_new_session: bool = False
) -> subprocess.Popen:
    """`python -m train` in the background; `start_new_session` to kill its DDP processes too."""
    env = {**os.environ, "DATA_DIR": str(data_root)}
    return subprocess.Popen(
        [sys.executable, "-m", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=start_new_session,
    )


def results(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if key not in TIMINGS}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def file_version(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of `path`, None while it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def wait_for_step(checkpoint: Path, process: subprocess.Popen, step: int) -> None:
    """Return once `checkpoint` (written atomically) holds training step `step` or a later one."""
    deadline = time.monotonic() + 120
    read = None  # each version of the file is loaded once, not at every poll
    while True:
        version = file_version(checkpoint)
        if version not in (None, read):
            read = version
            if torch.load(checkpoint, weights_only=True)["global_step"] >= step:
                return
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline, f"{checkpoint} did not reach step {step}"
        time.sleep(0.01)


@pytest.mark.end_to_end
def test_run_killed_at_a_random_step_resumes_to_the_same_results(real_mnist, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = start_train([*KILLABLE_RUN, f"hydra.run.dir={whole}"], real_mnist, tmp_path)
    victim = start_train([*KILLABLE_RUN, f"hydra.run.dir={killed}"], real_mnist, tmp_path)
    # Killed a few steps after a checkpoint of a random step of either epoch: the run must
    # still be training, whatever the speed of the machine.
    wait_for_step(killed / "checkpoints" / "last.ckpt", victim, step=random.randrange(5, 150))
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    assert uninterrupted.wait() == 0, uninterrupted.stderr.read()[-2000:]

    result = run_train([f"resume={killed}"], real_mnist, tmp_path)

    assert result.returncode == 0, result.stderr[-2000:]
    assert results(killed) == results(whole)
    whole_weights, resumed_weights = final_weights(whole), final_weights(killed)
    assert all(torch.equal(whole_weights[key], resumed_weights[key]) for key in whole_weights)


# The overrides README allows with resume=, each with a value a person would give.
README_RESUME_OVERRIDES = [
    "trainer.max_epochs=2",
    "trainer.max_time=00:01:00:00",
    "trainer.accelerator=cpu",
    "data.root=/elsewhere/data",
    "data.download=false",
    "callbacks.progress_bar.refresh_rate=0",
]


@pytest.mark.parametrize("override", README_RESUME_OVERRIDES)
def test_resume_accepts_each_override_readme_allows_and_passes_it_on(tmp_path, override):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 1\n")
    arguments = resume_arguments([f"resume={tmp_path}", override])
    assert arguments[-1] == override
    assert f"--config-path={tmp_path / '.hydra'}" in arguments


@pytest.mark.end_to_end
def test_sweep_job_resumed_with_every_allowed_override_equals_a_longer_run(tiny_mnist, tmp_path):
    """A finished one-epoch job of a multirun, its folder named with `=` and `,`, extended by
    a second epoch from the command line, ends as a two-epoch run does."""
    from tests.conftest import SMALL_RUN

    sweep = tmp_path / "sweep"
    # One job at a time: bit for bit, as a packed job equals its run alone only to float32's
    # reordering of sums (tests/test_packed.py).
    one_at_a_time = "hydra/launcher=basic"
    result = run_train(
        ["-m", one_at_a_time, "seed=3,4", *SMALL_RUN, f"hydra.sweep.dir={sweep}"],
        tiny_mnist,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (job,) = sweep.glob("0_*")
    assert "=" in job.name and "," in job.name
    data_copy = shutil.copytree(tiny_mnist, tmp_path / "moved_data")

    saved_overrides = (job / ".hydra" / "overrides.yaml").read_text()
    overrides = [o.replace("/elsewhere/data", str(data_copy)) for o in README_RESUME_OVERRIDES]
    result = run_train([f"resume={job}", *overrides], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # The job keeps the overrides it was started with: the sweep report labels it by them.
    assert (job / ".hydra" / "overrides.yaml").read_text() == saved_overrides

    longer = tmp_path / "longer"
    two_epochs = [o for o in SMALL_RUN if o != "trainer.max_epochs=1"] + ["trainer.max_epochs=2"]
    result = run_train(["seed=3", *two_epochs, f"hydra.run.dir={longer}"], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert results(job)["epochs"] == 2
    assert results(job) == results(longer)
    whole_weights, resumed_weights = final_weights(longer), final_weights(job)
    assert all(torch.equal(whole_weights[key], resumed_weights[key]) for key in whole_weights)


@pytest.mark.end_to_end
def test_resume_finds_the_checkpoints_where_the_runs_saved_config_put_them(tiny_mnist, tmp_path):
    from tests.conftest import SMALL_RUN

    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    first = run_train(
        [*SMALL_RUN, f"checkpoint_dir={elsewhere}", f"hydra.run.dir={run_dir}"],
        tiny_mnist,
        tmp_path,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert (elsewhere / "last.ckpt").exists() and not (run_dir / "checkpoints").exists()

    resumed = run_train([f"resume={run_dir}", "trainer.max_epochs=2"], tiny_mnist, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"continuing from {elsewhere / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    assert results(run_dir)["epochs"] == 2


def folder_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder`: its modification time and contents."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def finished_run(small_run_config, tmp_path) -> Path:
    """A completed one-epoch run, with the .hydra/config.yaml `python -m train` leaves."""
    from omegaconf import OmegaConf

    from tests.conftest import train

    cfg = small_run_config()
    train(cfg)
    run = Path(cfg.output_dir)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    return run


@pytest.mark.parametrize("epochs", [[], ["trainer.max_epochs=1"]])
def test_resuming_a_finished_run_with_no_epochs_left_is_refused_and_changes_nothing(
    finished_run, epochs
):
    before = folder_state(finished_run)
    with pytest.raises(ConfigError) as error:
        resume_arguments([f"resume={finished_run}", *epochs])
    assert str(error.value) == (
        f"{finished_run} has finished: it trained 1 epochs and trainer.max_epochs=1 asks for no "
        "more, so it is left as it is; add trainer.max_epochs=<more than 1> to train it further"
    )
    assert folder_state(finished_run) == before
    # Asked for more epochs, it goes on.
    assert resume_arguments([f"resume={finished_run}", "trainer.max_epochs=2"])[-1] == (
        "trainer.max_epochs=2"
    )


def test_a_finished_sweep_job_run_again_keeps_its_results(small_run_config, finished_run):
    from mlplab.engines.packed.train import fit_and_test_packed
    from mlplab.job.facts import JobFacts
    from mlplab.job.run import run_job

    before = folder_state(finished_run)
    recorded = json.loads((finished_run / "metrics.json").read_text())
    cfg = small_run_config()
    assert run_job(cfg, JobFacts(in_sweep=True)) == recorded
    (outcome,) = fit_and_test_packed([cfg], [JobFacts(in_sweep=True)])
    assert outcome() == recorded
    assert folder_state(finished_run) == before


@pytest.mark.end_to_end
def test_a_resumed_runs_console_looks_like_a_fresh_runs(tiny_mnist, tmp_path):
    from tests.conftest import SMALL_RUN

    run_dir = tmp_path / "run"
    fresh = run_train([*SMALL_RUN, f"hydra.run.dir={run_dir}"], tiny_mnist, tmp_path)
    resumed = run_train([f"resume={run_dir}", "trainer.max_epochs=2"], tiny_mnist, tmp_path)
    assert fresh.returncode == resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [line for line in resumed.stdout.splitlines() if line.strip()]
    assert lines[0] == f"continuing from {run_dir / 'checkpoints' / 'last.ckpt'}"
    assert [line.split(" ")[0] for line in lines[1:]] == [
        line.split(" ")[0] for line in fresh.stdout.splitlines() if line.strip()
    ]  # training ..., test/acc ...: plain lines, no timestamps
    assert "exists and is not empty" not in resumed.stderr and "Restored" not in resumed.stdout
    assert "[INFO]" in (run_dir / "train.log").read_text()  # the file keeps times and sources
