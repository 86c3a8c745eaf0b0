"""What `python -m train` prints: mistakes in one line before torch loads, a quiet run, --help."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from mlplab.config import command_line
from mlplab.config.command_line import check_command_line
from mlplab.errors import ConfigError
from tests.conftest import REPO, SMALL_RUN
from tests.test_cli import run_train

pytestmark = pytest.mark.end_to_end


def check(*arguments: str) -> None:
    check_command_line(list(arguments), REPO / "src", "../conf", "train")


MISTAKES = [  # (arguments, what the one line must say)
    (["model.dropout=1.5"], "model.dropout=1.5 is not valid: a number in [0, 1)"),
    (["activation=sigmod"], "sigmod is not an option of activation; did you mean sigmoid?"),
    (["logger=[tensorboard,mlflw]"], "mlflw is not an option of logger; did you mean mlflow?"),
    (["optimizer.lrr=0.1"], "optimizer has no key lrr; did you mean lr?"),
    (["+optimizer.lr=0.1"], "optimizer.lr exists already"),
    (["+foo=1"], "+foo=1: nothing reads foo"),
    (["+optimizer.learning_rate=0.1"], "torch.optim.Adam takes no argument learning_rate"),
    (["seed=1,2"], "To sweep over it, add --multirun"),
    (["-m", "seed=1,2", "model.dropout=0.5,1.5"], "model.dropout=1.5 is not valid"),
]


@pytest.mark.parametrize("arguments, message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_config_mistake_is_one_line_with_status_2_and_leaves_no_folder(
    tmp_path, arguments, message
):
    folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_train([*arguments, *folders], tmp_path, tmp_path)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_a_config_mistake_is_answered_without_importing_torch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "train", "model.dropout=1.5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "mlplab.config.checks" in imported
    assert "torch" not in imported and "lightning" not in imported


def test_additions_that_something_reads_are_accepted():
    check(
        "+callbacks.early_stopping._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.early_stopping.monitor=val/acc",
        "+optimizer.amsgrad=true",
    )


def test_a_sweep_is_checked_job_by_job_with_the_presets_own_sweep():
    check("-m", "experiment=relu_vs_sigmoid", "seed=1,2")
    with pytest.raises(ConfigError, match="activation=relu has no effect"):
        check("-m", "experiment=relu_vs_sigmoid", "model=linear")


def test_jobs_that_differ_only_in_values_share_one_composition_and_end_as_composed(
    monkeypatch,
):
    compositions = []
    compose_job = command_line.composed
    monkeypatch.setattr(
        command_line,
        "composed",
        lambda *args: compositions.append(args) or compose_job(*args),
    )
    first = ["seed=1", "model.dropout=0.1", "optimizer.lr=0.1", "model.hidden_sizes=[8]"]
    second = ["seed=7", "model.dropout=0.2", "optimizer.lr=0.01", "model.hidden_sizes=[64,32]"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        jobs = command_line.ComposedConfigs("train")
        jobs.config(first)
        from_values = jobs.config(second)
        assert len(compositions) == 1
        jobs.config(["activation=tanh", *second])  # another config group: composed in full
        assert len(compositions) == 2
        full = command_line.ComposedConfigs("train").config(second)
    assert OmegaConf.to_container(from_values) == OmegaConf.to_container(full)
    assert (from_values.seed, from_values.model.hidden_sizes) == (7, [64, 32])


def test_a_run_prints_what_it_trains_then_its_result_and_nothing_else(tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    arguments = [*SMALL_RUN, "trainer.log_every_n_steps=5", f"hydra.run.dir={run_dir}"]
    result = run_train(arguments, tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [
        "training mnist · mlp 784-256-256-10 · relu · init default · adam lr 0.001 · cpu · "
        f"1 epochs -> {run_dir}",
        lines[1],
    ]
    assert lines[1].startswith("test/acc ") and lines[1].endswith(f"results: {run_dir}")


def test_a_warning_a_user_can_act_on_still_shows(tiny_mnist, tmp_path):
    # 10 batches an epoch but a point every 50 steps: Lightning says the curves will be empty.
    result = run_train([*SMALL_RUN, f"hydra.run.dir={tmp_path / 'run'}"], tiny_mnist, tmp_path)
    assert result.returncode == 0
    assert "smaller than the logging interval" in result.stderr


def test_help_lists_each_group_with_its_options_and_example_commands(tmp_path):
    result = run_train(["--help"], tmp_path, tmp_path)
    assert result.returncode == 0
    assert "activation: elu, gelu, leaky_relu" in result.stdout
    assert "logger: csv, mlflow, none, tensorboard, wandb" in result.stdout
    assert "python -m train -m experiment=relu_vs_sigmoid seed=1,2,3" in result.stdout
    extras = "hydra/launcher=parallel, hydra/launcher=slurm, hparams_search=optuna   [scale]"
    assert extras in result.stdout and "logger=mlflow" in result.stdout.split(extras)[1]
    assert not list(Path(tmp_path).iterdir())  # --help runs nothing


@pytest.mark.parametrize(
    ("arguments", "package"),
    [
        (["-m", "hydra/launcher=parallel", "seed=1,2"], "joblib"),
        (["-m", "hydra/launcher=slurm", "seed=1,2"], "submitit"),
        (["hparams_search=optuna"], "optuna"),
    ],
)
def test_an_option_whose_extra_is_missing_answers_with_the_pip_install_that_brings_it(
    monkeypatch, arguments, package
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == package else find_spec(name, *a),
    )
    option = next(argument for argument in arguments if "=" in argument and "seed" not in argument)
    with pytest.raises(ConfigError) as error:
        check(*arguments)
    assert str(error.value) == (
        f"{option} needs the {package} package, which is not installed: pip install -e '.[scale]'"
    )
