"""The study a search asks and tells: opened by name, continued after a killed search, shared
safely by searches running at once (Optuna's storage serialises their writes)."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import mlplab.results as results

log = logging.getLogger(__name__)

# A trial's owner: the search process that asked it (host and process id).
OWNER = "search"
# A trial whose search was killed before it finished: failed, and asked again.
INTERRUPTED = "interrupted"


def this_search() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_gone(owner: str | None) -> bool:
    """Whether the search `owner` is a process of this host that no longer runs."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's search may still run: its trials are its own
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_over_interrupted(study) -> int:
    """Fail the trials a killed search left running and ask their values again first; how
    many."""
    import optuna

    taken = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if is_gone(trial.user_attrs.get(OWNER)):
            study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
            taken += 1
    if taken:
        log.info(f"{taken} trials of a search that stopped run again")
    return taken


def trials_counted(study) -> int:
    """The trials that count towards n_trials: all but those a killed search left unfinished
    (asked again) and those waiting to be asked."""
    import optuna

    return sum(
        1
        for trial in study.get_trials(deepcopy=False)
        if trial.state != optuna.trial.TrialState.WAITING and not trial.user_attrs.get(INTERRUPTED)
    )


def tell(study, trial, job_folder: Path, objectives: list[str]) -> None:
    """Tell the study how the trial's job ended, from its metrics.json."""
    import optuna

    path = job_folder / results.METRICS_FILE
    metrics = json.loads(path.read_text()) if path.exists() else {}
    status = metrics.get(results.STATUS)
    trial.set_user_attr("job_folder", str(job_folder))
    if status == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif status == "completed" and all(metrics.get(key) is not None for key in objectives):
        study.tell(trial, [float(metrics[key]) for key in objectives])
    else:
        trial.set_user_attr("error", metrics.get("error", f"no {results.METRICS_FILE}"))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def outcome(study, objectives: list[str]) -> dict[str, Any]:
    """What the search found: the best trial, or the Pareto front of several objectives."""

    def described(trial) -> dict[str, Any]:
        return {
            "number": trial.number,
            "values": dict(zip(objectives, trial.values)),
            "params": trial.params,
            "job_folder": trial.user_attrs.get("job_folder"),
        }

    front = [described(trial) for trial in study.best_trials]
    if len(objectives) == 1:
        return {"best": front[0] if front else None}
    return {"pareto_front": sorted(front, key=lambda trial: trial["number"])}
