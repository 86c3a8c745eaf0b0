"""The search: its space in Hydra's grammar, a study that lasts, trials that report and prune."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from mlplab.errors import ConfigError
from mlplab.search.space import grid, search_space, trial_overrides
from mlplab.search.storage import open_storage, sqlite_file
from mlplab.search.study import OWNER, take_over_interrupted, tell, trials_counted
from tests.conftest import SMALL_RUN, compose_train_config
from tests.test_packed import train_packed


def test_params_and_command_line_sweeps_become_distributions_and_the_rest_is_shared():
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.hidden_sizes": "choice([128], [256, 256])",
        "seed": "range(1, 4)",
        "activation": "choice(relu, tanh)",
    }
    space, fixed = search_space(params, ["activation=relu,gelu", "trainer.max_epochs=3"])
    assert space["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
    assert space["model.hidden_sizes"].choices == ("[128]", "[256,256]")
    assert space["seed"] == optuna.distributions.IntDistribution(1, 3)
    assert space["activation"].choices == ("relu", "gelu")  # the command line wins
    assert fixed == ["trainer.max_epochs=3"]
    overrides = trial_overrides({"model.hidden_sizes": "[256,256]", "optimizer.lr": 0.002})
    assert overrides == ["model.hidden_sizes=[256,256]", "optimizer.lr=0.002"]


def test_the_grid_takes_choices_and_ranges_and_names_an_interval_it_cannot_take():
    space, _ = search_space({"seed": "range(1, 7, 2)", "activation": "choice(relu, tanh)"}, [])
    assert grid(space) == {"seed": [1, 3, 5], "activation": ["relu", "tanh"]}
    space, _ = search_space({"model.dropout": "interval(0.0, 0.5)"}, [])
    with pytest.raises(ConfigError, match="hydra.sweeper.params.model.dropout is an interval"):
        grid(space)


def test_an_sqlite_study_gets_its_folder_and_other_storages_are_urls(tmp_path):
    study_file = tmp_path / "deep" / "optuna" / "study.db"
    assert sqlite_file(f"sqlite:///{study_file}") == study_file
    assert sqlite_file("postgresql://host/db") is None
    optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{study_file}"))
    assert study_file.exists()


def open_when_all_are_ready(url: str, ready) -> None:
    ready.wait()
    open_storage(url)


def test_searches_that_open_one_new_sqlite_study_at_the_same_moment_all_open_it(tmp_path):
    """Unserialised, 4 processes opening a new study at once failed 13 times in 40
    (`table studies already exists`, `UNIQUE constraint failed: alembic_version`)."""
    fork = multiprocessing.get_context("fork")
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / str(attempt) / 'study.db'}"
        ready = fork.Barrier(4)
        openers = [fork.Process(target=open_when_all_are_ready, args=(url, ready)) for _ in "abcd"]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=120)
        assert [opener.exitcode for opener in openers] == [0, 0, 0, 0]


def exit_zero_if_it_opens_its_own(url: str, inherited) -> None:
    sys.exit(0 if open_storage(url) is not inherited else 1)


def test_a_process_opens_a_storage_once_and_a_forked_process_opens_its_own(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    opened = open_storage(url)
    assert open_storage(url) is opened  # the search and its trials share one
    child = multiprocessing.get_context("fork").Process(
        target=exit_zero_if_it_opens_its_own, args=(url, opened)
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0  # connections are not shared across a fork


def dead_process() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_searchs_unfinished_trials_run_again_and_a_running_searchs_stay_its_own(
    tmp_path,
):
    import socket

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    finished = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(finished, 0.5)
    killed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    killed.set_user_attr(OWNER, f"{socket.gethostname()}:{dead_process()}")
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    running.set_user_attr(OWNER, f"{socket.gethostname()}:{__import__('os').getpid()}")
    elsewhere = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    elsewhere.set_user_attr(OWNER, "another-host:1")

    assert take_over_interrupted(study) == 1
    states = [trial.state.name for trial in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "RUNNING", "RUNNING", "WAITING"]
    assert trials_counted(study) == 3  # the finished one and the two still running
    again = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert again.params == killed.params  # asked again first


class PruneOddTrials(optuna.pruners.BasePruner):
    """Prunes the trials with an odd number at their first report."""

    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


def trial_config(
    tmp_path: Path,
    data: Path,
    storage: str,
    number: int,
    *extra: str,
    pruner: tuple[str, ...] = (f"_target_={__name__}.PruneOddTrials",),
):
    trial = [
        "+callbacks.trial._target_=mlplab.search.pruning.ReportToTrial",
        f"+callbacks.trial.storage={storage}",
        "+callbacks.trial.study_name=s",
        f"+callbacks.trial.number={number}",
        "+callbacks.trial.monitor=val/acc",
        *(f"+callbacks.trial.pruner.{setting}" for setting in pruner),
    ]
    overrides = [*SMALL_RUN, "trainer.max_epochs=3", f"seed={number + 1}", *trial, *extra]
    return compose_train_config(tmp_path / str(number), data, overrides)


@pytest.mark.parametrize("packed", [True, False])
def test_a_pruned_trial_stops_at_its_epoch_and_in_a_packed_group_the_others_go_on(
    tiny_mnist, tmp_path, packed, caplog
):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    space = {"model.dropout": optuna.distributions.FloatDistribution(0, 0.5)}
    trials = [study.ask(space) for _ in range(2)]
    shown = "callbacks.progress_bar.refresh_rate=1"  # a line per epoch, each job's values
    cfgs = [
        trial_config(tmp_path, tiny_mnist, storage, trial.number, f"model.dropout={dropout}", shown)
        for trial, dropout in zip(trials, (0.1, 0.2))
    ]
    if packed:
        with caplog.at_level("INFO", logger="mlplab.record.progress"):
            outcomes = train_packed(cfgs)
        lines = [record.getMessage() for record in caplog.records if record.name.endswith("ress")]
        pruned_copy = [line.split("  ")[2].split()[2] for line in lines]  # its val/acc
        assert pruned_copy[0] != "-" and pruned_copy[1:] == ["-", "-"]
    else:
        from tests.conftest import train

        outcomes = []
        for cfg in cfgs:
            try:
                outcomes.append(train(cfg))
            except Exception as error:
                outcomes.append(error)
    kept, pruned = outcomes
    assert kept["status"] == "completed" and kept["epochs"] == 3
    assert kept.get("packed_jobs") == (2 if packed else None)
    written = json.loads((tmp_path / "1" / "metrics.json").read_text())
    assert written["status"] == "pruned"
    assert written["error"].startswith("pruned by the search after epoch 1: val/acc ")
    for trial, cfg in zip(trials, cfgs):
        tell(study, trial, Path(cfg.output_dir), ["val/acc"])
    reported = study.get_trials()
    assert [trial.state.name for trial in reported] == ["COMPLETE", "PRUNED"]
    assert sorted(reported[0].intermediate_values) == [1, 2, 3]  # after every epoch
    assert list(reported[1].intermediate_values) == [1]
    assert reported[0].value == pytest.approx(kept["val/acc"])


def test_a_packed_groups_copies_are_judged_best_first_whatever_their_order(tiny_mnist, tmp_path):
    """Successive halving keeping the better half: judged in the group's order, the first
    copy would compete with itself alone and go on."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    halving = (
        "_target_=optuna.pruners.SuccessiveHalvingPruner",
        "min_resource=1",
        "reduction_factor=2",
    )
    rates = ("optimizer.lr=1e-7", "optimizer.lr=1e-2")  # the first copy learns nothing
    cfgs = [
        trial_config(tmp_path, tiny_mnist, storage, study.ask().number, rate, pruner=halving)
        for rate in rates
    ]
    slow, fast = train_packed(cfgs)
    assert isinstance(slow, Exception) and "pruned by the search after epoch 1" in str(slow)
    assert fast["status"] == "completed" and fast["epochs"] == 3


@pytest.mark.parametrize("packed", [True, False])
def test_a_trial_that_trained_all_its_epochs_completes_whatever_the_pruner_says(
    tiny_mnist, tmp_path, packed
):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trials = [study.ask() for _ in range(2)]
    one_epoch = "trainer.max_epochs=1"  # the odd trial's pruner says prune at its only report
    cfgs = [trial_config(tmp_path, tiny_mnist, storage, t.number, one_epoch) for t in trials]
    if packed:
        outcomes = train_packed(cfgs)
    else:
        from tests.conftest import train

        outcomes = [train(cfg) for cfg in cfgs]
    assert [metrics["status"] for metrics in outcomes] == ["completed", "completed"]
    for trial, cfg in zip(trials, cfgs):
        tell(study, trial, Path(cfg.output_dir), ["val/acc"])
    assert [trial.state.name for trial in study.get_trials()] == ["COMPLETE", "COMPLETE"]


def test_several_objectives_end_in_a_pareto_front_that_the_report_shows(tmp_path):
    from mlplab.search.study import outcome
    from mlplab.sweeps.summary import search_table

    study = optuna.create_study(directions=["maximize", "minimize"])
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for accuracy, flops in ((0.9, 10.0), (0.95, 30.0), (0.8, 40.0)):  # the third is dominated
        trial = study.ask(space)
        trial.set_user_attr("job_folder", str(tmp_path / f"{trial.number}_x"))
        study.tell(trial, [accuracy, flops])
    found = outcome(study, ["val/acc", "train_flops"])
    assert [trial["number"] for trial in found["pareto_front"]] == [0, 1]
    assert found["pareto_front"][1]["values"] == {"val/acc": 0.95, "train_flops": 30.0}
    table = search_table(found).splitlines()
    assert table[1] == "## Search: Pareto front"
    assert table[3:5] == [
        "| trial | val/acc | train_flops | params | job folder |",
        "|---|---|---|---|---|",
    ]
    assert table[6].startswith("| 1 | 0.95 | 30 | x=") and table[6].endswith("| 1_x |")


class PruneAll(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_packed_group_whose_every_copy_is_pruned_records_each_as_pruned(tiny_mnist, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    every = (f"_target_={__name__}.PruneAll",)
    cfgs = [
        trial_config(tmp_path, tiny_mnist, storage, study.ask().number, activation, pruner=every)
        for activation in ("activation=relu", "activation=tanh")
    ]
    outcomes = train_packed(cfgs)
    assert all("pruned by the search after epoch 1" in str(outcome) for outcome in outcomes)
    for cfg in cfgs:
        assert json.loads((Path(cfg.output_dir) / "metrics.json").read_text())["status"] == "pruned"
