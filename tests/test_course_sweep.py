"""hydra/sweeper=course: the course's presets swept as one, so jobs of different presets pack."""

import json
import sys

import pytest
from hydra import initialize_config_dir

from mlplab import report
from mlplab.config.command_line import check_command_line, job_overrides
from mlplab.config.presets import preset_sweep
from mlplab.errors import ConfigError
from tests.conftest import REPO, SMALL_RUN, train
from tests.test_cli import run_train

COURSE = ["hydra/sweeper=course"]


def jobs_of(*overrides: str) -> list[dict[str, str]]:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        jobs = job_overrides("train", [*COURSE, *overrides], multirun=True)
    return [dict(line.split("=", 1) for line in job) for job in jobs]


def test_each_preset_sweeps_its_own_params_with_the_command_line_in_place_of_its_own():
    jobs = jobs_of("hydra.sweeper.presets=[rbm_vs_xavier,lab09_6_batchnorm]", "seed=5,6")
    rbm = [job for job in jobs if job["experiment"] == "rbm_vs_xavier"]
    batchnorm = [job for job in jobs if job["experiment"] == "lab09_6_batchnorm"]
    assert jobs == rbm + batchnorm  # preset after preset, in the order given
    hidden_units = preset_sweep("rbm_vs_xavier")["hidden_units"].split(",")
    assert sorted((job["hidden_units"], job["seed"]) for job in rbm) == sorted(
        (units, seed) for units in hidden_units for seed in ("5", "6")
    )  # the command line's seeds, not the preset's own 1,2,3
    assert sorted((job["model.batchnorm"], job["seed"]) for job in batchnorm) == sorted(
        (value, seed) for value in ("True", "False") for seed in ("5", "6")
    )
    for job in jobs:
        assert job["hydra.sweep.subdir"].startswith(f"{job['experiment']}/")


def test_no_presets_named_sweeps_every_preset_of_the_course():
    presets = {job["experiment"] for job in jobs_of("seed=1")}
    assert presets == {path.stem for path in (REPO / "conf" / "experiment").glob("*.yaml")}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["hydra.sweeper.presets=[lab09_1_softmax,nope]"], "no preset 'nope'; choose from "),
        (["hydra.sweeper.presets=[relu_vs_sigmoid]", "model=linear"], "has no effect"),
    ],
)
def test_a_bad_preset_or_a_value_one_preset_cannot_take_is_refused_before_any_job(
    overrides, message
):
    with pytest.raises(ConfigError, match=message):
        check_command_line(["-m", *COURSE, *overrides], REPO / "src", "../conf", "train")


@pytest.mark.end_to_end
def test_jobs_of_two_presets_pack_together_and_each_preset_gets_its_own_folder_and_report(
    tiny_mnist, tmp_path, small_run_config, monkeypatch
):
    presets = ["lab09_2_relu_normal_init", "lab09_3_xavier"]
    sweep = tmp_path / "sweep"
    finished = run_train(
        ["-m", *COURSE, f"hydra.sweeper.presets=[{','.join(presets)}]", *SMALL_RUN]
        + [f"hydra.sweep.dir={sweep}"],
        tiny_mnist,
        tmp_path,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "packed together: #0, #1" in finished.stdout
    for preset in presets:
        assert (sweep / preset / "summary.md").read_text().count("| all runs | 1 |") == 1
        (job,) = (sweep / preset).glob("*/metrics.json")
        alone = train(small_run_config(f"experiment={preset}", name=preset))
        assert json.loads(job.read_text())["test/acc"] == pytest.approx(alone["test/acc"], abs=1e-4)
    rewritten = sweep / presets[0] / "summary.md"
    rewritten.unlink()
    monkeypatch.setattr(sys, "argv", ["mlplab.report", str(sweep)])
    report.main()  # python -m mlplab.report <sweep folder>: each preset's report
    assert "| all runs | 1 |" in rewritten.read_text()
