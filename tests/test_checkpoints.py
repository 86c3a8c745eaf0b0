import os

import pytest
import torch

from mlplab.errors import ConfigError
from mlplab.safety.checkpoints import AtomicCheckpointIO, read_checkpoint

MLPLAB_CHECKPOINT = {
    "state_dict": {"w": torch.ones(2)},
    "hyper_parameters": {"model": {}, "data": {"dataset": "MNIST"}},
}


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(MLPLAB_CHECKPOINT, path)

    def killed_midway(descriptor):
        raise KeyboardInterrupt  # as if the process died before the new file was complete

    monkeypatch.setattr("mlplab.safety.checkpoints.os.fsync", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({**MLPLAB_CHECKPOINT, "global_step": 7}, path)
    monkeypatch.undo()
    assert not (tmp_path / ".last.ckpt.partial").exists()  # its space is free again
    assert "global_step" not in read_checkpoint(path)
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(2))


def test_checkpoint_without_a_run_config_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ConfigError, match="is not an mlplab checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"<html>not found</html>", b"PK\x03\x04truncated"])
def test_damaged_or_foreign_file_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not a readable checkpoint") as error:
        read_checkpoint(path)
    assert "\n" not in str(error.value)


def test_a_full_disk_names_the_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(MLPLAB_CHECKPOINT, path)

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mlplab.safety.checkpoints.os.fsync", disk_full)
    with pytest.raises(OSError) as error:
        AtomicCheckpointIO().save_checkpoint({**MLPLAB_CHECKPOINT, "global_step": 7}, path)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(path))
    assert [file.name for file in tmp_path.iterdir()] == ["last.ckpt"]
    assert "global_step" not in read_checkpoint(path)


def test_checkpoints_saved_together_wait_for_the_disk_twice_in_all(tmp_path, monkeypatch):
    paths = [tmp_path / f"job_{number}" / "last.ckpt" for number in range(3)]
    syncs = []
    monkeypatch.setattr("mlplab.safety.checkpoints.os.sync", lambda: syncs.append(1))
    AtomicCheckpointIO().save_checkpoints(
        [({**MLPLAB_CHECKPOINT, "global_step": number}, path) for number, path in enumerate(paths)]
    )
    assert len(syncs) == 2  # once for the files, once for the folders' entries
    assert [read_checkpoint(path)["global_step"] for path in paths] == [0, 1, 2]
    assert (
        sorted(file.name for file in tmp_path.rglob("*"))
        == ["job_0", "job_1", "job_2"] + ["last.ckpt"] * 3
    )


def test_a_failed_write_among_several_leaves_every_previous_checkpoint_whole(tmp_path, monkeypatch):
    import errno

    paths = [tmp_path / f"job_{number}" / "last.ckpt" for number in range(3)]
    AtomicCheckpointIO().save_checkpoints([(MLPLAB_CHECKPOINT, path) for path in paths])
    real_fsync = os.fsync
    calls = []

    def second_fails(descriptor):
        calls.append(descriptor)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr("mlplab.safety.checkpoints.os.fsync", second_fails)
    newer = {**MLPLAB_CHECKPOINT, "global_step": 7}
    with pytest.raises(OSError) as error:
        AtomicCheckpointIO().save_checkpoints([(newer, path) for path in paths])
    assert (error.value.errno, error.value.filename) == (errno.EIO, str(paths[1]))
    assert not list(tmp_path.rglob("*.partial"))
    assert all("global_step" not in read_checkpoint(path) for path in paths)
