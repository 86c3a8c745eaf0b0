"""A fixed small run gives the numbers it gave when they were recorded.

The values below were measured with this run before the code was reorganised into its
present modules; a change of structure must not change a result. Record them again only
for a change that is meant to change results, and say so in its commit.
"""

import json

import pytest
import torch

from tests.conftest import train

FIXED_RUN = [
    "trainer.max_epochs=2",
    "seed=11",
    "model.hidden_sizes=[32,16]",
    "model.dropout=0.2",
    "optimizer=sgd",
    "optimizer.lr=0.01",
    "data.eval_batch_size=30",
]
RECORDED_METRICS = {
    "status": "completed",
    "test/acc": 0.5299999713897705,
    "test/loss": 2.1654632091522217,
    "val/acc": 0.47999998927116394,
    "val/loss": 2.179114580154419,
    "train/acc": 0.3019999861717224,
    "train/loss": 2.20483136177063,
    "epochs": 2,
    "best_checkpoint": "checkpoints/epoch01-val_acc0.4800.ckpt",
    "seed": 11,
}
RECORDED_WEIGHT_SUMS = {
    "network.layers.1.weight": -1.2041609742476562,
    "network.layers.1.bias": -0.09162929985905066,
    "network.layers.4.weight": 1.3192394361176412,
    "network.layers.4.bias": 0.8392901464831084,
    "network.layers.7.weight": -2.4140790877572726,
    "network.layers.7.bias": -0.9486905602971092,
}


# The tolerances hold on any CPU. Under PyTorch's kernel sets (ATEN_CPU_CAPABILITY=avx512,
# avx2, default) and on one thread, this run's metrics came out the same to the last digit,
# and its weight sums moved by at most 3.8e-7 relatively (float32 sums in another order).
# 1e-6 and 1e-5 allow several times that; another seed moves the metrics by 44% and the sums
# by 160%.
METRICS_RTOL, WEIGHT_SUMS_RTOL = 1e-6, 1e-5


def test_fixed_small_run_gives_the_recorded_metrics_and_weights(small_run_config, tmp_path):
    train(small_run_config(*FIXED_RUN))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key, recorded in RECORDED_METRICS.items():
        expected = (
            recorded if isinstance(recorded, str) else pytest.approx(recorded, rel=METRICS_RTOL)
        )
        assert metrics[key] == expected, key
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    sums = {key: float(value.double().sum()) for key, value in weights["state_dict"].items()}
    assert sums == pytest.approx(RECORDED_WEIGHT_SUMS, rel=WEIGHT_SUMS_RTOL, abs=1e-6)
