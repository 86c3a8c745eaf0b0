"""A checkpoint or run folder from elsewhere is data: it builds only what conf/'s options build.

The crafted files below are genuine ones with one node changed to name a callable that writes
a file; every reader must refuse them in one line, naming the key, before anything is built.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from mlplab import load_checkpoint
from mlplab.errors import ConfigError
from mlplab.safety.resume import resume_arguments
from mlplab.use.checkpoint_test import evaluate_checkpoint
from tests.conftest import REPO, SMALL_RUN, compose_train_config, train, write_tiny_mnist

PRECIOUS = "a file that no config may touch\n"


def writes_victim(callable_name: str, victim: Path) -> dict:
    """A config node whose `_target_` would write (or empty) `victim` when instantiated."""
    arguments = {
        "torch.save": {"obj": 1, "f": str(victim)},
        "builtins.open": {"file": str(victim), "mode": "w"},
        "pathlib.Path.write_text": {
            "self": {"_target_": "pathlib.Path", "_args_": [str(victim)]},
            "data": "overwritten",
        },
    }[callable_name]
    return {"_target_": callable_name, **arguments}


CALLABLES = ("torch.save", "builtins.open", "pathlib.Path.write_text")
# Each node a stored config has, and places conf/ builds nothing at.
NODES = (
    "model",
    "activation",
    "model.activation",
    "init.weight",
    "init.pretraining",
    "optimizer",
    "optimizer.lr",
    "scheduler",
    "data",
    "trainer",
    "trainer.strategy",
    "callbacks.model_checkpoint",
    "callbacks.save_on_signal",
    "logger.tensorboard",
    "diagnostics",
    "hydra.callbacks.evil",  # Hydra itself would build it when a run folder is resumed
)


def set_node(config: dict, key: str, node: Any) -> dict:
    """A copy of `config` with `node` at dotted `key` in place of what is there."""
    config = copy.deepcopy(config)
    *parents, name = key.split(".")
    parent = config
    for part in parents:
        if not isinstance(parent.get(part), dict):
            parent[part] = {}
        parent = parent[part]
    parent[name] = node
    return config


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A finished tiny run (its best checkpoint) and a run folder's config as Hydra saves it."""
    tmp = tmp_path_factory.mktemp("genuine")
    data = write_tiny_mnist(tmp / "data")
    overrides = [*SMALL_RUN, "model.hidden_sizes=[16]"]
    train(compose_train_config(tmp / "run", data, overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        saved = compose("train", overrides=[f"data.root={data}", *overrides])
    checkpoint = next((tmp / "run" / "checkpoints").glob("epoch*.ckpt"))
    return {
        "checkpoint": checkpoint,
        "data": data,
        "run_config": OmegaConf.to_container(saved, resolve=False),
    }


def crafted_checkpoint(genuine: dict, folder: Path, key: str, node: dict) -> Path:
    contents = torch.load(genuine["checkpoint"], weights_only=True)
    contents["hyper_parameters"] = set_node(contents["hyper_parameters"], key, node)
    path = folder / "crafted.ckpt"
    torch.save(contents, path)
    return path


def crafted_run_folder(genuine: dict, folder: Path, key: str, node: dict) -> Path:
    (folder / "run" / ".hydra").mkdir(parents=True)
    config = set_node(genuine["run_config"], key, node)
    (folder / "run" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "run"


READERS = {
    "load_checkpoint": lambda genuine, folder, key, node: load_checkpoint(
        crafted_checkpoint(genuine, folder, key, node)
    ),
    "evaluate": lambda genuine, folder, key, node: evaluate_checkpoint(
        crafted_checkpoint(genuine, folder, key, node), str(genuine["data"]), "cpu"
    ),
    "resume": lambda genuine, folder, key, node: resume_arguments(
        [f"resume={crafted_run_folder(genuine, folder, key, node)}"]
    ),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("key", NODES)
def test_a_stored_config_naming_a_callable_outside_conf_is_refused_before_it_writes(
    genuine, tmp_path, reader, key
):
    callable_name = CALLABLES[NODES.index(key) % len(CALLABLES)]
    victim = tmp_path / "victim.txt"
    victim.write_text(PRECIOUS)
    with pytest.raises(ConfigError) as refused:
        READERS[reader](genuine, tmp_path, key, writes_victim(callable_name, victim))
    message = str(refused.value)
    assert victim.read_text() == PRECIOUS
    assert "\n" not in message and "is not accepted in a stored config" in message
    if key.startswith("hydra."):
        assert message.split(": ")[1].startswith("hydra={'callbacks'")
    else:
        assert f"{key}._target_={callable_name!r}" in message


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("optimizer._args_", ["x"], "optimizer._args_=['x']"),
        ("data._recursive_", False, "data._recursive_=False"),
        ("trainer._partial_", True, "trainer._partial_=True"),
        ("data.root", "${oc.env:HOME}", "data.root='${oc.env:HOME}'"),
        ("model.hidden_sizes", "${oc.decode:'[1]'}", "model.hidden_sizes="),
        ("data.class_names", [{"_target_": "os.getcwd"}], "data.class_names[0]._target_="),
        ("data.mean", ("a", "tuple"), "data.mean=('a', 'tuple')"),
    ],
    ids=["args", "recursive", "partial", "env", "decode", "in-a-list", "not-plain"],
)
def test_keys_and_values_that_conf_does_not_use_there_are_refused_in_one_line(
    genuine, tmp_path, key, value, named
):
    with pytest.raises(ConfigError) as refused:
        load_checkpoint(crafted_checkpoint(genuine, tmp_path, key, value))
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_a_run_folder_config_with_a_package_header_is_refused(genuine, tmp_path):
    run = crafted_run_folder(genuine, tmp_path, "seed", 1)
    config = run / ".hydra" / "config.yaml"
    config.write_text("# @package hydra\n" + config.read_text())
    with pytest.raises(ConfigError, match="# @package='hydra'"):
        resume_arguments([f"resume={run}"])


def test_genuine_checkpoints_and_run_folders_pass_every_reader(genuine, tmp_path):
    network = load_checkpoint(genuine["checkpoint"])
    assert network.config.model.hidden_sizes == [16]
    scores = evaluate_checkpoint(genuine["checkpoint"], str(genuine["data"]), "cpu")
    assert 0 <= scores["test/acc"] <= 1
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(genuine["run_config"]))
    assert f"--config-path={run / '.hydra'}" in resume_arguments([f"resume={run}"])


def every_option() -> list[str]:
    conf = REPO / "conf"
    groups = ("activation", "data", "diagnostics", "init", "logger", "model", "optimizer")
    options = [f"{g}={p.stem}" for g in groups for p in sorted((conf / g).glob("*.yaml"))]
    options += [f"scheduler={p.stem}" for p in sorted((conf / "scheduler").glob("*.yaml"))]
    options += [f"trainer={p.stem}" for p in sorted((conf / "trainer").glob("*.yaml"))]
    options += [f"experiment={p.stem}" for p in sorted((conf / "experiment").glob("*.yaml"))]
    options += [f"+hidden_units={p.stem}" for p in sorted((conf / "hidden_units").glob("*.yaml"))]
    return options + ["logger=[tensorboard,csv]", "+optimizer.weight_decay=0.1"]


def test_every_option_of_conf_is_accepted_in_the_configs_a_run_stores(tmp_path):
    from mlplab.config.stored import check_stored_config

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        for option in every_option():
            saved = compose("train", overrides=[option])  # as .hydra/config.yaml holds it
            check_stored_config(OmegaConf.to_container(saved, resolve=False), option)
            resolved = compose("train", overrides=[f"output_dir={tmp_path}", option])
            check_stored_config(OmegaConf.to_container(resolved, resolve=True), option)


def command(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.end_to_end
def test_each_command_refuses_a_crafted_file_in_one_line_and_writes_nothing(genuine, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text(PRECIOUS)
    digit = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(digit)
    (tmp_path / "predict").mkdir()
    (tmp_path / "evaluate").mkdir()
    predicted = crafted_checkpoint(
        genuine, tmp_path / "predict", "model", writes_victim("torch.save", victim)
    )
    evaluated = crafted_checkpoint(
        genuine, tmp_path / "evaluate", "init.weight", writes_victim("builtins.open", victim)
    )
    resumed = crafted_run_folder(
        genuine, tmp_path, "hydra.callbacks.evil", writes_victim("pathlib.Path.write_text", victim)
    )
    for args, named in [
        (["-m", "mlplab.predict", predicted, digit], "model._target_='torch.save'"),
        (
            ["-m", "mlplab.evaluate", f"ckpt_path={evaluated}"],
            "init.weight._target_='builtins.open'",
        ),
        (["-m", "train", f"resume={resumed}"], "hydra={'callbacks'"),
    ]:
        result = command(*args, cwd=tmp_path)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 2, output[-2000:]
        assert output.startswith("error: ") and "\n" not in output and named in output
    assert victim.read_text() == PRECIOUS
    assert not (tmp_path / "outputs").exists()
