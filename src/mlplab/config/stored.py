"""A config stored in a file from elsewhere (a checkpoint, a run folder) is data, checked as such.

mlplab trusts its command line and conf/. A stored config is rebuilt only if it could have come
from conf/'s options: every `_target_` is one that an option of conf/ names at the same key,
every other `_`-key (`_partial_`, `_convert_`) is one conf/ sets there to the same value, every
`${...}` is one conf/ has at that key, and the rest are plain values. The check reads the raw
file contents, before OmegaConf resolves or Hydra instantiates anything, so a file that names
`torch.save` or `builtins.open` is refused before anything is imported, called or written.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from mlplab.config.compose import CONF
from mlplab.errors import ConfigError

PRIMARY = "train.yaml"
# Hydra's own settings and composition lists: a run's stored config holds neither.
NOT_STORED = ("hydra", "defaults")
PLAIN = (type(None), bool, int, float, str)
PACKAGE_HEADER = re.compile(r"^\s*#\s*@package\s+(\S+)", re.MULTILINE)
NODE_REFERENCE = re.compile(r"^\$\{([\w.]+)\}$")  # `${activation}`: the node at that key
FIX = "use a checkpoint or run folder that `python -m train` wrote"
# Classes that mlplab 0.1.0 stored under other module paths (it had its modules at the top of
# the package): a stored config that names one is read as naming the class where it is now.
MOVED_TARGETS = {
    "mlplab.nets.MLP": "mlplab.model.nets.MLP",
    "mlplab.nets.SoftmaxRegression": "mlplab.model.nets.SoftmaxRegression",
    "mlplab.nets.Maxout": "mlplab.model.nets.Maxout",
    "mlplab.rbm.RBMPretraining": "mlplab.model.rbm.RBMPretraining",
    "mlplab.data.MNISTDataModule": "mlplab.data.mnist.MNISTDataModule",
    "mlplab.diagnostics.TrainingDiagnostics": "mlplab.record.diagnostics.TrainingDiagnostics",
    # Lightning's bar, which the progress_bar callback now picks on a terminal only.
    "lightning.pytorch.callbacks.TQDMProgressBar": "mlplab.record.progress.progress_bar",
}


@dataclass(frozen=True)
class ConfOptions:
    """What conf/'s options can put into a run's config, by dotted key."""

    top_level: frozenset[str]  # the keys of a run's config
    special: dict[str, dict[str, frozenset]]  # node -> `_`-key -> the values conf/ gives it
    interpolations: dict[str, frozenset[str]]  # key -> the `${...}` strings conf/ has there


def package_of(path: Path, text: str) -> str:
    """Where an option file's contents go in the config: its group, or its `@package` header."""
    header = PACKAGE_HEADER.search(text)
    package = header.group(1) if header else "_group_"
    group = ".".join(path.relative_to(CONF).parent.parts)
    package = package.replace("_group_", group)
    return "" if package == "_global_" else package.removeprefix("_global_.")


def joined(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def collect(node: Any, path: str, special: dict, interpolations: dict) -> None:
    """Record the `_`-keys and interpolations of a node of an option file, and of those below."""
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).startswith("_"):
                special[path][key].add(value)
            else:
                collect(value, joined(path, key), special, interpolations)
    elif isinstance(node, str) and "${" in node:
        interpolations[path].add(node)


def with_references(special: dict, interpolations: dict) -> None:
    """A key that conf/ sets to `${node}` (model.activation: ${activation}) holds that node."""
    for path, strings in list(interpolations.items()):
        for string in strings:
            reference = NODE_REFERENCE.match(string)
            if not reference:
                continue
            source = reference.group(1)
            for node, keys in list(special.items()):
                if node == source or node.startswith(f"{source}."):
                    for key, values in keys.items():
                        special[path + node[len(source) :]][key] |= values


@cache
def conf_options() -> ConfOptions:
    """What conf/train.yaml and the options of its config groups can put into a run's config."""
    special: dict = defaultdict(lambda: defaultdict(set))
    interpolations: dict = defaultdict(set)
    top_level: set[str] = set()
    files = [CONF / PRIMARY, *sorted(CONF.glob("*/**/*.yaml"))]
    for file in files:
        if file.relative_to(CONF).parts[0] in NOT_STORED:
            continue
        text = file.read_text()
        package = "" if file.parent == CONF else package_of(file, text)
        contents = yaml.safe_load(text) or {}
        for key in NOT_STORED:
            contents.pop(key, None)
        contents = nested(package, contents)
        top_level.update(contents)
        collect(contents, "", special, interpolations)
    with_references(special, interpolations)
    return ConfOptions(
        top_level=frozenset(top_level),
        special={
            node: {k: frozenset(v) for k, v in keys.items()} for node, keys in special.items()
        },
        interpolations={key: frozenset(strings) for key, strings in interpolations.items()},
    )


def nested(package: str, contents: dict) -> dict:
    """`contents` placed at the dotted `package`: logger.csv -> {logger: {csv: contents}}."""
    for part in reversed(package.split(".") if package else []):
        contents = {part: contents}
    return contents


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def refuse(source: str, key: str, value: Any, accepted: str) -> None:
    raise ConfigError(
        f"{source}: {key}={shown(value)} is not accepted in a stored config ({accepted}): {FIX}"
    )


def listed(values) -> str:
    return ", ".join(sorted(map(str, values))) or "none"


def check_special(source: str, path: str, key: str, value: Any, options: ConfOptions) -> None:
    accepted = options.special.get(path, {})
    key_path = joined(path, key)
    if key not in accepted:
        where = f"at {path}" if path else "at the top level"
        if key == "_target_":
            refuse(source, key_path, value, f"conf/ builds nothing {where}")
        sets = f"only {listed(accepted)}" if accepted else "no _-key"
        refuse(source, key_path, value, f"conf/ sets {sets} {where}")
    if not (isinstance(value, PLAIN) and value in accepted[key]):
        refuse(source, key_path, value, f"conf/ names {listed(accepted[key])} there")


def check_node(source: str, node: Any, path: str, options: ConfOptions) -> None:
    """Refuse the first key of `node` (at dotted `path`) that conf/'s options could not hold."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                refuse(source, f"{path}[{key!r}]", value, "keys are names")
            if not path and key not in options.top_level:
                refuse(source, key, value, f"its keys are {listed(options.top_level)}")
            if key.startswith("_"):
                check_special(source, path, key, value, options)
            else:
                check_node(source, value, joined(path, key), options)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            check_node(source, item, f"{path}[{index}]", options)
    elif isinstance(node, str) and "${" in node:
        if node not in options.interpolations.get(path, ()):
            found = options.interpolations.get(path)
            has = f"only {listed(found)}" if found else "no interpolation"
            refuse(source, path, node, f"conf/ has {has} there")
    elif not isinstance(node, PLAIN):
        refuse(source, path, node, "values are numbers, strings, true/false, null, lists, maps")


def moved_targets(node: Any, path: str = "") -> dict[str, str]:
    """{dotted key of a node: the class its `_target_` names today}, for each node of a stored
    config whose `_target_` is one of MOVED_TARGETS."""
    moved = {}
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target in MOVED_TARGETS:
            moved[path] = MOVED_TARGETS[target]
        for key, value in node.items():
            moved |= moved_targets(value, joined(path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            moved |= moved_targets(item, f"{path}[{index}]")
    return moved


def with_current_targets(config: Any) -> Any:
    """A stored config with each of MOVED_TARGETS named where its class is now."""
    if isinstance(config, dict):
        current = {key: with_current_targets(value) for key, value in config.items()}
        target = current.get("_target_")
        if isinstance(target, str) and target in MOVED_TARGETS:
            current["_target_"] = MOVED_TARGETS[target]
        return current
    if isinstance(config, list):
        return [with_current_targets(item) for item in config]
    return config


def check_stored_config(config: Any, source: Path | str) -> None:
    """Refuse (ConfigError, one line) a stored config that holds what conf/'s options cannot.

    `config` is the file's raw contents (a checkpoint's hyper_parameters, or a run folder's
    .hydra/config.yaml as YAML read it); `source` names the file in the message. Classes of
    MOVED_TARGETS are taken where they are now.
    """
    if not isinstance(config, dict):
        refuse(str(source), "the config", config, "a stored config is a map of keys")
    check_node(str(source), with_current_targets(config), "", conf_options())


def read_run_config(path: Path) -> dict:
    """A run folder's .hydra/config.yaml, read as data and checked (check_stored_config)."""
    text = path.read_text()
    header = PACKAGE_HEADER.search(text)
    if header:  # it would move the contents elsewhere in Hydra's config; Hydra writes none
        refuse(str(path), "# @package", header.group(1), "Hydra writes no package header")
    try:  # read as Hydra reads it, without resolving anything
        config = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except Exception as error:  # YAML's and OmegaConf's errors for a damaged file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:100]
        raise ConfigError(f"{path} is not a readable config ({reason}): {FIX}") from None
    check_stored_config(config, path)
    return config
