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


def test_a_packed_group_shows_each_jobs_values_on_its_epoch_line(tiny_mnist, tmp_path, caplog):
    from tests.conftest import compose_train_config
    from tests.test_packed import train_packed

    overrides = ["trainer=cpu", "trainer.max_epochs=1", "data.val_size=100", "data.batch_size=50"]
    cfgs = [
        compose_train_config(tmp_path / str(seed), tiny_mnist, [*overrides, f"seed={seed}"])
        for seed in (1, 2)
    ]
    with caplog.at_level("INFO", logger="mlplab.record.progress"):
        jobs = train_packed(cfgs)
    (line,) = [record.getMessage() for record in caplog.records if record.name.endswith("progress")]
    shown = line.split("  ")
    assert shown[0] == "epoch 1/1" and shown[-1].endswith(" s")
    val_acc = [float(value) for value in shown[2].removeprefix("val/acc ").split()]
    assert val_acc == [round(job["val/acc"], 4) for job in jobs]
    assert shown[1].startswith("train/loss ") and len(shown[1].split()) == 3
