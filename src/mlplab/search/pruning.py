"""Each trial's report to its study after every validation, and its stop when pruned.

The search's sweeper gives each job `callbacks.trial.number`; ReportToTrial (a single run)
and PackedTrials (each copy of a packed group) report the monitored value of every epoch to
that trial and stop the job when the study's pruner says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L

from mlplab.errors import KnownError


class TrialPruned(KnownError):
    """The search's pruner stopped this trial: its value so far was not promising."""

    status = "pruned"
    exit_code = 0


@dataclass
class Trial:
    """One trial of a study, as a job reaches it: storage URL, study name, trial number, and
    the search's pruner (a study's pruner is not stored with it)."""

    storage: str
    study_name: str
    number: int
    monitor: str
    pruner: Any = None  # an Optuna pruner; None or {}: none

    def __post_init__(self) -> None:
        import optuna

        from mlplab.search.storage import open_storage

        study = optuna.load_study(
            study_name=self.study_name,
            storage=open_storage(self.storage),
            pruner=self.pruner or optuna.pruners.NopPruner(),
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.number
        )
        self.trial = optuna.trial.Trial(study, trial_id)
        self.reports = len(study.directions) == 1  # Optuna takes reports of one objective
        self.maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE

    def ranked(self, value: float) -> float:
        """A key that sorts the study's best values first."""
        return -value if self.maximize else value

    def report(self, value: float, epochs: int, last: bool) -> TrialPruned | None:
        """Report the value after `epochs` epochs of training; the error that stops the job
        when the trial is pruned.

        The step of the report is the number of epochs trained, the resource a pruner counts:
        successive halving with min_resource 1 decides after the first epoch. After the `last`
        epoch nothing is left to save: the trial completes.
        A trial the study has finished (its job resumed alone later) takes no more reports.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        if not self.reports:
            return None
        try:
            self.trial.report(value, epochs)
        except UpdateFinishedTrialError:
            return None
        if not last and self.trial.should_prune():
            return TrialPruned(
                f"pruned by the search after epoch {epochs}: {self.monitor} {value:.4f} "
                f"(trial {self.number} of study {self.study_name})"
            )
        return None


class ReportToTrial(L.Callback):
    """A single run's report to its trial after each validation; raises TrialPruned."""

    def __init__(
        self, storage: str, study_name: str, number: int, monitor: str, pruner: Any = None
    ) -> None:
        self.trial = Trial(storage, study_name, number, monitor, pruner)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.trial.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.trial.monitor])
        epochs = trainer.current_epoch + 1
        pruned = self.trial.report(value, epochs, last=epochs >= trainer.max_epochs)
        if pruned is not None:
            raise pruned
