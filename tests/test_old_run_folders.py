"""Run folders and checkpoints written by mlplab 0.1.0 keep working with today's code.

tests/data/written_by_0.1.0/ holds a single run and a two-job packed sweep that mlplab 0.1.0
wrote on the tiny data of tests/conftest.py (a 784-8-10 network, SGD, one epoch; trackers
off). Their configs and checkpoints name the modules of that version's layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlplab.sweeps.summary import write_report
from mlplab.use.checkpoint_test import evaluate_checkpoint
from mlplab.use.trained_network import load_checkpoint
from tests.conftest import REPO, tiny_digits, write_tiny_mnist

WRITTEN_BY_0_1_0 = REPO / "tests" / "data" / "written_by_0.1.0"


@pytest.fixture
def old_folders(tmp_path: Path) -> Path:
    """A copy of the 0.1.0 folders (tests write into their folders) and the tiny data."""
    shutil.copytree(WRITTEN_BY_0_1_0, tmp_path / "written")
    write_tiny_mnist(tmp_path / "data")
    return tmp_path


def metrics_of(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("job", ["run", "sweep/0_seed1", "sweep/1_seed2"])
def test_a_best_checkpoint_of_0_1_0_tests_to_the_results_its_run_recorded(old_folders, job):
    folder = old_folders / "written" / job
    scores = evaluate_checkpoint(folder, str(old_folders / "data"), "cpu")
    assert scores["test/acc"] == pytest.approx(metrics_of(folder)["test/acc"], abs=1e-6)


def test_a_checkpoint_of_0_1_0_loads_for_prediction_and_classifies_as_its_run_tested(
    old_folders,
):
    network = load_checkpoint(old_folders / "written" / "sweep" / "0_seed1")
    images, labels = tiny_digits(200, seed=1)  # the tiny data's test set
    features = (torch.tensor(images, dtype=torch.float32) / 255 - 0.1307) / 0.3081
    predicted = network(features.flatten(1)).argmax(dim=1)
    accuracy = (predicted == torch.tensor(labels)).float().mean().item()
    assert accuracy == pytest.approx(
        metrics_of(old_folders / "written" / "sweep" / "0_seed1")["test/acc"], abs=1e-6
    )


def test_the_report_of_a_0_1_0_sweep_lists_both_its_jobs(old_folders):
    rows = write_report(old_folders / "written" / "sweep")
    assert sum(row["n"] for row in rows) == 2


@pytest.mark.end_to_end
def test_a_run_of_0_1_0_resumes_for_another_epoch(old_folders):
    folder = old_folders / "written" / "run"
    resumed = subprocess.run(
        [sys.executable, "-m", "train", f"resume={folder}", "trainer.max_epochs=2"],
        cwd=old_folders,
        env={**os.environ, "DATA_DIR": str(old_folders / "data")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    continued = metrics_of(folder)
    assert continued["status"] == "completed" and continued["epochs"] == 2
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 20  # 10 steps an epoch, the first epoch's from 0.1.0
