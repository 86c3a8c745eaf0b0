"""The sweep report's pictures: validation accuracy, training loss, gradient norm per layer."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from mlplab import results  # noqa: E402
from mlplab.sweeps.jobs import Job  # noqa: E402


def mean_curve(jobs: list[Job], tag: str) -> tuple[list[int], list[float]]:
    """Steps and the mean value over jobs at the steps every job logged."""
    curves = [dict(job.scalars[tag]) for job in jobs if job.scalars.get(tag)]
    if not curves:
        return [], []
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    return steps, [statistics.fmean(curve[step] for curve in curves) for step in steps]


def median_norm_per_layer(jobs: list[Job]) -> list[float]:
    """Per Linear layer, the median gradient norm over training, averaged over jobs."""
    per_job = [
        [statistics.median(job.series(tag)) for tag in job.layer_tags(results.GRAD_NORM)]
        for job in jobs
        if job.layer_tags(results.GRAD_NORM)
    ]
    if not per_job:
        return []
    depth = min(len(norms) for norms in per_job)
    return [statistics.fmean(norms[layer] for norms in per_job) for layer in range(depth)]


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_sweep(groups: dict[str, list[Job]], sweep_dir: Path) -> None:
    """Write the validation accuracy, training loss and gradient norm plots into `sweep_dir`."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        _, values = mean_curve(jobs, results.VAL_ACC)
        axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
    axes.set(title="Validation accuracy after each epoch", xlabel="epoch", ylabel="val/acc")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    save(figure, sweep_dir / results.VAL_ACC_PLOT)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        steps, values = mean_curve(jobs, results.TRAIN_LOSS_STEP)
        axes.plot(steps, values, label=label)
    axes.set(title="Training loss", xlabel="step", ylabel="cross-entropy (log scale)", yscale="log")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    save(figure, sweep_dir / results.TRAIN_LOSS_PLOT)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        norms = median_norm_per_layer(jobs)
        axes.plot(range(1, len(norms) + 1), norms, marker="o", label=label)
    axes.set(
        title="Gradient norm per layer: lower at layer 1 = the gradient vanished on its way back",
        xlabel="Linear layer (1 = next to the input)",
        ylabel="median ||dL/dW|| (log scale)",
        yscale="log",
    )
    axes.title.set_fontsize(10)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    save(figure, sweep_dir / results.GRAD_NORMS_PLOT)
