"""curves.csv: every logged point written as it comes, read back whole, cut back on resume."""

import torch

from mlplab.record.curves import CurveFile, read_curves
from mlplab.results import CURVES_FILE


def test_every_point_of_a_long_curve_is_written_and_read_back(tmp_path):
    curves = CurveFile(tmp_path)
    for step in range(10_050):
        curves.log_metrics(
            {"grad_norm/first_to_last_ratio": float(step), "x": torch.tensor(2.5)}, step
        )
        if step % 100 == 0:
            curves.save()
    curves.finalize("success")
    read = read_curves(tmp_path)
    assert read["grad_norm/first_to_last_ratio"] == [(step, float(step)) for step in range(10_050)]
    assert read["x"] == [(step, 2.5) for step in range(10_050)]


def test_points_are_on_disk_after_each_save_so_a_killed_run_keeps_them(tmp_path):
    curves = CurveFile(tmp_path)
    curves.log_metrics({"val/acc": 0.5}, step=9)
    assert read_curves(tmp_path) == {}
    curves.save()
    assert read_curves(tmp_path) == {"val/acc": [(9, 0.5)]}


def test_a_resumed_run_drops_the_points_from_its_checkpoint_step_on(tmp_path):
    first = CurveFile(tmp_path)
    first.log_metrics({"train/loss_step": 1.0}, step=0)
    first.log_metrics({"train/loss_step": 0.9, "val/acc": 0.3}, step=10)
    first.log_metrics({"train/loss_step": 0.8}, step=20)
    first.save()
    resumed = CurveFile(tmp_path, resumed_step=10)
    assert read_curves(tmp_path) == {"train/loss_step": [(0, 1.0)]}
    resumed.log_metrics({"train/loss_step": 0.7}, step=10)
    resumed.save()
    assert read_curves(tmp_path)["train/loss_step"] == [(0, 1.0), (10, 0.7)]
    assert not list(tmp_path.glob(f".{CURVES_FILE}*"))  # no partial file left behind


def test_a_folder_without_curves_reads_as_none(tmp_path):
    assert read_curves(tmp_path) == {}
