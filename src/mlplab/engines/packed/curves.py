"""Each packed job's curves and diagnostics, written to its own loggers at a single run's steps.

The values a single run logs through LightningModule.log, its learning-rate monitor and its
TrainingDiagnostics are computed here per copy; a diverged job's curves stop where it did.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

import mlplab.results as results
from mlplab.engines.packed.checkpoints import PackedJob
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.record.diagnostics import (
    gradient_norms,
    hidden_statistics,
    trained_step,
    write_activation_histograms,
    write_parameter_histograms,
)


def write(job: PackedJob, values: dict[str, float], step: int) -> None:
    for logger in job.loggers:
        logger.log_metrics(values, step=step)


def tensorboards(job: PackedJob) -> list[TensorBoardLogger]:
    return [logger for logger in job.loggers if isinstance(logger, TensorBoardLogger)]


def per_copy(values: dict[str, torch.Tensor], copies: list[int]) -> dict[int, dict[str, float]]:
    """{tag: tensor of one value per copy of `copies`} as each copy's dict of floats, read off
    the device once per tag."""
    read = {tag: value.tolist() for tag, value in values.items()}
    return {
        copy: {tag: value[row] for tag, value in read.items()} for row, copy in enumerate(copies)
    }


class PackedCurves(L.Callback):
    """Writes each active job's values to its loggers.

    `lr_tag` names the learning rate's curve (None: the runs log no learning rate), logged at
    each epoch's start or, with `lr_every_step`, every log_every_n_steps steps, as Lightning's
    LearningRateMonitor logs it with logging_interval epoch or step; `diagnostics` adds
    gradient norms and hidden-layer statistics, and `histograms` their
    histograms in each job's TensorBoard, as TrainingDiagnostics does for a single run.
    """

    def __init__(
        self,
        jobs: list[PackedJob],
        lr_tag: str | None,
        diagnostics: bool,
        histograms: bool,
        lr_every_step: bool = False,
    ) -> None:
        self.jobs = jobs
        self.lr_tag = lr_tag
        self.lr_every_step = lr_every_step
        self.diagnostics = diagnostics
        self.histograms = histograms

    def write_learning_rates(self, trainer: L.Trainer, pl_module: PackedClassifier) -> None:
        for copy in pl_module.active():
            write(self.jobs[copy], {self.lr_tag: pl_module.copy_lr(copy)}, trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: PackedClassifier) -> None:
        if self.lr_tag is not None and not self.lr_every_step:
            self.write_learning_rates(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module: PackedClassifier, batch, batch_idx) -> None:
        # Before the step that makes the count a multiple of log_every_n_steps, as Lightning.
        logs_now = (trainer.global_step + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop
        if self.lr_tag is not None and self.lr_every_step and logs_now:
            self.write_learning_rates(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module: PackedClassifier, outputs, batch, batch_idx):
        # Gradients are cleared before validation: the epoch's last batch is when to draw them.
        if self.histograms and batch_idx == trainer.num_training_batches - 1:
            self.write_histograms_of_parameters(pl_module, trained_step(trainer))
        if trainer.global_step % trainer.log_every_n_steps != 0:
            return
        (losses,) = pl_module.running_rows(pl_module.step_losses)
        values = {results.TRAIN_LOSS_STEP: losses}
        if self.diagnostics:  # of the copies that still train, as their weights
            gradients = [weight.grad for weight in pl_module.network.weights()]
            values = {**gradient_norms(gradients), **values}
        epoch = {"epoch": float(trainer.current_epoch)}
        for copy, copy_values in per_copy(values, pl_module.active()).items():
            write(self.jobs[copy], {**copy_values, **epoch}, trained_step(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: PackedClassifier) -> None:
        # Called before the module's own epoch end, which resets the training sums.
        stages = {"train": pl_module.training_sums.means()}
        if "val" in pl_module.epoch_results:
            stages["val"] = pl_module.epoch_results["val"]
        values = {
            results.metric_key(stage, name): pl_module.running_rows(means[name])[0]
            for stage, means in stages.items()
            for name in ("acc", "loss")
        }
        epoch = {"epoch": float(trainer.current_epoch)}
        active = pl_module.active()
        outputs, statistics = [], None
        if self.diagnostics and active:  # every copy may have stopped in this epoch
            features, _ = next(iter(trainer.datamodule.val_dataloader()))
            (features,) = pl_module.running_rows(trainer.precision_plugin.convert_input(features))
            outputs = pl_module.network.hidden_outputs(features)
            activations = [pl_module.network.activations[copy] for copy in active]
            statistics = hidden_statistics(activations, outputs)
            outputs = [output.cpu() for output in outputs] if self.histograms else []
        for row, (copy, copy_values) in enumerate(per_copy(values, active).items()):
            job = self.jobs[copy]
            write(job, {**copy_values, **epoch}, trained_step(trainer))
            if statistics:
                write(job, statistics[row], trainer.global_step)
                for board in tensorboards(job) if self.histograms else ():
                    copy_outputs = [output[row] for output in outputs]
                    write_activation_histograms(board, copy_outputs, trainer.global_step)
            for logger in job.loggers:
                logger.save()

    def write_histograms_of_parameters(self, module: PackedClassifier, step: int) -> None:
        """Histograms of each copy's Linear weights and of their gradients."""
        # Off the device once for all copies: TensorBoard bins on the CPU.
        stacked = module.network.weights()
        weights = [weight.detach().cpu() for weight in stacked]
        gradients = [weight.grad.cpu() for weight in stacked]
        for row, copy in enumerate(module.active()):  # the rows the network holds
            for board in tensorboards(self.jobs[copy]):
                copy_weights = [weight[row] for weight in weights]
                copy_gradients = [gradient[row] for gradient in gradients]
                write_parameter_histograms(board, copy_weights, copy_gradients, step)
