"""A search's trials in a packed group: each copy reports to its own trial after every
validation, and a copy its trial's pruner stops stops alone (mlplab.search.pruning)."""

from __future__ import annotations

import lightning as L

import mlplab.results as results
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.search.pruning import Trial


class PackedTrials(L.Callback):
    def __init__(self, trials: list[Trial]) -> None:
        """`trials`: each copy's, in the group's order."""
        self.trials = trials

    def on_validation_end(self, trainer: L.Trainer, pl_module: PackedClassifier) -> None:
        if trainer.sanity_checking:
            return
        for copy in pl_module.active():
            trial = self.trials[copy]
            stage, _, name = trial.monitor.partition("/")
            means = pl_module.epoch_results.get(stage, {})
            if results.metric_key(stage, name) != trial.monitor or name not in means:
                continue
            epochs = trainer.current_epoch + 1
            last = epochs >= trainer.max_epochs
            pruned = trial.report(float(means[name][copy]), epochs, last)
            if pruned is not None:
                pl_module.stop_copy(copy, pruned)
