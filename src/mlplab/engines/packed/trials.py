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
        """Report each copy's value, best first: the copies finished the epoch together, so
        each is judged against every better one of its group (a pruner that ranks trials, such
        as successive halving, would otherwise let the first copies compete with fewer)."""
        if trainer.sanity_checking:
            return
        values = {}
        for copy in pl_module.active():
            stage, _, name = self.trials[copy].monitor.partition("/")
            means = pl_module.epoch_results.get(stage, {})
            if results.metric_key(stage, name) == self.trials[copy].monitor and name in means:
                values[copy] = float(means[name][copy])
        epochs = trainer.current_epoch + 1
        last = epochs >= trainer.max_epochs
        for copy in sorted(values, key=lambda copy: self.trials[copy].ranked(values[copy])):
            pruned = self.trials[copy].report(values[copy], epochs, last)
            if pruned is not None:
                pl_module.stop_copy(copy, pruned)
