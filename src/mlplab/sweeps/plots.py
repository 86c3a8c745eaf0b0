"""The sweep report's pictures: validation accuracy, training loss, gradient norm per layer, and
test accuracy against training cost.

Each configuration is drawn as the mean over its seeds with a shaded band of one standard
deviation (the sample one, as in the summary table); a configuration run with one seed is a
line alone. Its legend entry says which.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

import mlplab.results as results  # noqa: E402
from mlplab.sweeps.jobs import JobFolder  # noqa: E402

BAND_OPACITY = 0.2
DPI = 110


def seed_label(label: str, seeds: int) -> str:
    """The legend entry of a configuration: what its line and band are."""
    return f"{label} (mean ± 1 std, {seeds} seeds)" if seeds > 1 else f"{label} (1 seed)"


def seed_band(
    curves: list[dict[int, float]],
) -> tuple[list[int], list[float], list[float] | None]:
    """Points every curve has, the mean over curves there and, for two or more, the std."""
    points = sorted(set.intersection(*(set(curve) for curve in curves)))
    means = [statistics.fmean(curve[point] for curve in curves) for point in points]
    if len(curves) == 1:
        return points, means, None
    return points, means, [statistics.stdev(curve[point] for curve in curves) for point in points]


def draw_band(
    axes, curves: list[dict[int, float]], label: str, numbered: bool = False, **style
) -> None:
    """The mean of `curves`, shaded one std either side, at the points every curve has.

    `numbered` draws them at x = 1, 2, ... (validation is logged at steps, drawn by epoch).
    A configuration without the curve (its jobs failed) is left out; the table lists it.
    """
    if not curves:
        return
    points, means, stds = seed_band(curves)
    x = list(range(1, len(points) + 1)) if numbered else points
    (line,) = axes.plot(x, means, label=seed_label(label, len(curves)), **style)
    if stds is not None:
        lower = [mean - std for mean, std in zip(means, stds)]
        upper = [mean + std for mean, std in zip(means, stds)]
        axes.fill_between(x, lower, upper, color=line.get_color(), alpha=BAND_OPACITY, lw=0)


def scalar_curves(jobs: list[JobFolder], tag: str) -> list[dict[int, float]]:
    """Per job that logged `tag`, its values by step."""
    return [dict(job.scalars[tag]) for job in jobs if job.scalars.get(tag)]


def median_norm_per_layer(jobs: list[JobFolder]) -> list[dict[int, float]]:
    """Per job, the median gradient norm over training of each Linear layer (1 = the first)."""
    return [
        {
            layer: statistics.median(job.series(tag))
            for layer, tag in enumerate(job.layer_tags(results.GRAD_NORM), start=1)
        }
        for job in jobs
        if job.layer_tags(results.GRAD_NORM)
    ]


def legend(axes) -> None:
    """The legend of the configurations drawn on `axes`; none where none is (no job logged it)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)


def save(figure, path: Path) -> None:
    # Laid out at the resolution it is saved at, so saving reuses the text measured for layout.
    figure.set_dpi(DPI)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_val_acc(groups: dict[str, list[JobFolder]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        draw_band(axes, scalar_curves(jobs, results.VAL_ACC), label, numbered=True, marker="o")
    axes.set(title="Validation accuracy after each epoch", xlabel="epoch", ylabel="val/acc")
    axes.xaxis.get_major_locator().set_params(integer=True)
    legend(axes)
    axes.grid(alpha=0.3)
    save(figure, path)


def plot_train_loss(groups: dict[str, list[JobFolder]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        draw_band(axes, scalar_curves(jobs, results.TRAIN_LOSS_STEP), label)
    axes.set(title="Training loss", xlabel="step", ylabel="cross-entropy (log scale)", yscale="log")
    legend(axes)
    axes.grid(alpha=0.3)
    save(figure, path)


def plot_grad_norms(groups: dict[str, list[JobFolder]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, jobs in groups.items():
        draw_band(axes, median_norm_per_layer(jobs), label, marker="o")
    axes.set(
        title="Gradient norm per layer: lower at layer 1 = the gradient vanished on its way back",
        xlabel="Linear layer (1 = next to the input)",
        ylabel="median ||dL/dW|| (log scale)",
        yscale="log",
    )
    axes.title.set_fontsize(10)
    axes.xaxis.get_major_locator().set_params(integer=True)
    legend(axes)
    axes.grid(alpha=0.3, which="both")
    save(figure, path)


def draw_point(axes, costs: list[float], accuracies: list[float], label: str) -> None:
    """The mean cost and accuracy of a configuration's seeds, with one-std error bars."""
    spread = len(costs) > 1
    axes.errorbar(
        statistics.fmean(costs),
        statistics.fmean(accuracies),
        xerr=statistics.stdev(costs) if spread else None,
        yerr=statistics.stdev(accuracies) if spread else None,
        fmt="o",
        capsize=3,
        label=seed_label(label, len(costs)),
    )


def plot_compute(groups: dict[str, list[JobFolder]], path: Path) -> None:
    """Test accuracy against training FLOPs and seconds, pre-training included.

    A point has no curve to shade: its one-std spread over seeds is drawn as error bars.
    """
    figure, (by_flops, by_seconds) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for label, jobs in groups.items():
        completed = [job for job in jobs if job.metrics.get("status") == "completed"]
        for axes, cost in ((by_flops, JobFolder.flops), (by_seconds, JobFolder.seconds)):
            measured = [job for job in completed if cost(job) is not None]
            if measured:
                costs = [cost(job) for job in measured]
                accuracies = [job.metrics[results.TEST_ACC] for job in measured]
                draw_point(axes, costs, accuracies, label)
    by_flops.set(
        title="Test accuracy against training FLOPs",
        xlabel="floating-point operations, pre-training included (log scale)",
        ylabel="test/acc",
        xscale="log",
    )
    by_seconds.set(
        title="Test accuracy against training time",
        xlabel="seconds, pre-training included (log scale)",
        xscale="log",
    )
    for axes in (by_flops, by_seconds):  # a legend each: a packed job has seconds, no FLOPs
        legend(axes)
        axes.grid(alpha=0.3, which="both")
    save(figure, path)


def costs_differ(groups: dict[str, list[JobFolder]]) -> bool:
    """Whether the configurations' completed jobs cost different FLOPs (pre-training included)."""
    costs = set()
    for jobs in groups.values():
        completed = [job for job in jobs if job.metrics.get("status") == "completed"]
        flops = [job.flops() for job in completed if job.flops() is not None]
        if flops:
            costs.add(float(f"{sum(flops) / len(flops):.6g}"))
    return len(costs) > 1


def plot_sweep(groups: dict[str, list[JobFolder]], sweep_dir: Path) -> list[str]:
    """Write into `sweep_dir` the report's plots that say something about this sweep; return
    why each other one is left out."""
    plot_val_acc(groups, sweep_dir / results.VAL_ACC_PLOT)
    plot_train_loss(groups, sweep_dir / results.TRAIN_LOSS_PLOT)
    plot_grad_norms(groups, sweep_dir / results.GRAD_NORMS_PLOT)
    compute = sweep_dir / results.COMPUTE_PLOT
    if costs_differ(groups):
        plot_compute(groups, compute)
        return []
    compute.unlink(missing_ok=True)  # an earlier report's
    return [f"No {compute.name}: every configuration cost the same training FLOPs."]
