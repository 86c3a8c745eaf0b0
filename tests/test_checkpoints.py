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
