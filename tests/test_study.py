"""Optuna studies in SQLite files: the folder is made before the sweeper opens the file."""

from omegaconf import OmegaConf

from mlplab.scale.study import StudyFolder, sqlite_file


def test_sqlite_storage_url_names_a_file_and_other_storages_none():
    assert str(sqlite_file("sqlite:///outputs/optuna/study.db")) == "outputs/optuna/study.db"
    assert str(sqlite_file("sqlite:////abs/study.db")) == "/abs/study.db"
    assert sqlite_file("postgresql://host/db") is None
    assert sqlite_file(None) is None


def test_study_folder_is_created_at_the_start_of_the_search(tmp_path):
    study = tmp_path / "deep" / "optuna" / "study.db"
    config = OmegaConf.create({"hydra": {"sweeper": {"storage": f"sqlite:///{study}"}}})
    StudyFolder().on_multirun_start(config)
    assert study.parent.is_dir() and not study.exists()
