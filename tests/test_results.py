"""The results contract: each name is defined once and the config and Lightning agree with it."""

import ast
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from mlplab import results

SRC = Path(__file__).resolve().parents[1] / "src"


def test_last_checkpoint_is_the_file_lightning_writes_as_last():
    assert ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION == (
        results.LAST_CHECKPOINT
    )


def test_config_monitors_the_contracts_validation_accuracy(small_run_config):
    assert small_run_config().callbacks.model_checkpoint.monitor == results.VAL_ACC


def test_every_checkpoint_path_of_the_config_is_below_its_one_checkpoint_dir(small_run_config):
    cfg = small_run_config("checkpoint_dir=/elsewhere/checkpoints")
    assert cfg.callbacks.model_checkpoint.dirpath == "/elsewhere/checkpoints"
    assert cfg.callbacks.last_checkpoint.folder == "/elsewhere/checkpoints"
    assert cfg.callbacks.save_on_signal.folder == "/elsewhere/checkpoints"


def test_metrics_file_is_replaced_whole_and_reads_back(tmp_path):
    results.write_metrics(tmp_path, {"status": "failed", "error": "x"})
    results.write_metrics(tmp_path, {"status": "completed", "test/acc": 0.5})
    assert results.read_metrics(tmp_path) == {"status": "completed", "test/acc": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == [results.METRICS_FILE]
    assert results.read_metrics(tmp_path / "nothing") is None


def mlplab_imports(path: Path) -> set[str]:
    """The mlplab modules that the module at `path` imports."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlplab"):
            # `from mlplab import results` imports the module results; the package itself
            # counts only for a name it defines (`from mlplab import load_checkpoint`).
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            modules = {name for name in names if module_file(name)}
            imported |= modules | ({node.module} if len(modules) < len(names) else set())
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("mlplab")}
    return imported


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_no_two_modules_import_each_other_directly_or_through_others():
    graph = {}
    for path in sorted((SRC / "mlplab").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {name for name in mlplab_imports(path) if name != module}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in graph.get(start, ()):
            if name == goal or (name not in seen and reaches(name, goal, seen | {name})):
                return True
        return False

    cycles = [module for module in graph if reaches(module, module, {module})]
    assert cycles == []


def test_metrics_that_cannot_be_written_leave_the_previous_file_whole(tmp_path, monkeypatch):
    import errno
    import pathlib

    results.write_metrics(tmp_path, {"status": "completed", "test/acc": 0.5})
    real_write_text = pathlib.Path.write_text

    def disk_full_midway(self, text, *args, **kwargs):
        real_write_text(self, text[:7], *args, **kwargs)  # a part gets out, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", disk_full_midway)
    with pytest.raises(OSError) as error:
        results.write_metrics(tmp_path, {"status": "failed", "error": "x"})
    monkeypatch.undo()
    assert error.value.filename == str(tmp_path / results.METRICS_FILE)
    assert results.read_metrics(tmp_path) == {"status": "completed", "test/acc": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == [results.METRICS_FILE]
