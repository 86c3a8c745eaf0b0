"""What a run shows while it trains: a bar on a terminal, plain epoch lines in a log file."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar

from mlplab.record.progress import EpochLines, progress_bar
from tests.test_cli import run_train


def test_a_terminal_gets_lightnings_bar_and_a_file_plain_lines(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_bar(refresh_rate=7)
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == 7
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(progress_bar(refresh_rate=7), EpochLines)
    assert not progress_bar(refresh_rate=0).enabled


def test_a_run_whose_output_is_a_file_writes_one_plain_line_per_epoch(tiny_mnist, tmp_path):
    overrides = ["trainer=cpu", "trainer.max_epochs=2", "data.val_size=100", "data.batch_size=50"]
    result = run_train([*overrides, f"hydra.run.dir={tmp_path / 'run'}"], tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    written = result.stdout + result.stderr
    assert "\x1b[" not in written and "\r" not in written  # no redraws, no cursor movements
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(" train/loss " in line and " val/acc " in line for line in epochs)
    assert epochs[0].endswith(" s")
