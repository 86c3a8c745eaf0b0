"""A sweep's job folders read back: overrides, metrics.json and every curve point."""

import yaml

from mlplab.sweeps.jobs import JobFolder, read_job, read_overrides


def test_overrides_are_read_without_hydras_own_and_with_added_or_removed_keys(tmp_path):
    lines = [
        "+optimizer.weight_decay=0.01",
        "~callbacks.progress_bar",
        "hydra.job.name=x",
        "data.root=/data/with=sign",
        "model.hidden_sizes=[64,64]",
    ]
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(lines))
    assert read_overrides(tmp_path) == {
        "optimizer.weight_decay": "0.01",
        "data.root": "/data/with=sign",
        "model.hidden_sizes": "[64,64]",
    }


def test_job_without_metrics_reads_as_unfinished(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1"]))
    job = read_job(tmp_path)
    assert job.folder == tmp_path and job.overrides == {"seed": "1"}
    assert job.metrics["status"] == "unfinished"
    assert "no metrics.json" in job.metrics["error"]


def test_layer_tags_come_in_layer_order_past_nine_layers():
    tags = {f"grad_norm/layer_{k}": [(0, 1.0)] for k in (10, 2, 1)}
    tags["grad_norm/first_to_last_ratio"] = [(0, 1.0)]
    job = JobFolder(None, {}, {}, tags)
    assert job.layer_tags("grad_norm") == [
        "grad_norm/layer_1",
        "grad_norm/layer_2",
        "grad_norm/layer_10",
    ]
