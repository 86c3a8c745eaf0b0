import statistics
import warnings

import matplotlib.pyplot as plt
import pytest
from PIL import Image

import mlplab.sweeps.plots as plots
from mlplab.sweeps.jobs import JobFolder
from mlplab.sweeps.plots import draw_band, median_norm_per_layer, scalar_curves, seed_band


def job(scalars: dict[str, list[tuple[int, float]]]) -> JobFolder:
    return JobFolder(None, {}, {"status": "completed"}, scalars)


def test_seed_band_is_the_mean_and_sample_std_at_the_steps_every_seed_logged():
    curves = [{0: 1.0, 50: 0.5, 100: 0.2}, {0: 3.0, 50: 1.5}, {0: 2.0, 50: 1.0, 100: 0.1}]
    points, means, stds = seed_band(curves)
    assert points == [0, 50]
    assert means == pytest.approx([2.0, 1.0])
    assert stds == pytest.approx([1.0, 0.5])  # n - 1 in the denominator, as the table
    assert seed_band([{0: 1.0, 50: 0.5}]) == ([0, 50], [1.0, 0.5], None)


def test_each_configuration_is_its_mean_with_a_one_std_band_and_one_seed_a_line_alone():
    seeds = [job({"val/acc": [(9, a), (19, b)]}) for a, b in ((0.5, 0.6), (0.7, 0.9), (0.6, 0.9))]
    alone = [job({"val/acc": [(9, 0.3), (19, 0.4)]})]
    figure, axes = plt.subplots()
    draw_band(axes, scalar_curves(seeds, "val/acc"), "init=rbm", numbered=True)
    draw_band(axes, scalar_curves(alone, "val/acc"), "init=normal", numbered=True)
    draw_band(axes, scalar_curves([job({})], "val/acc"), "init=zeros", numbered=True)  # failed

    mean_line, alone_line = axes.get_lines()
    assert list(mean_line.get_xdata()) == [1, 2]  # drawn by epoch, not by step
    assert list(mean_line.get_ydata()) == pytest.approx([0.6, 0.8])
    assert list(alone_line.get_ydata()) == pytest.approx([0.3, 0.4])
    (band,) = axes.collections  # the single seed has none
    assert band.get_facecolor()[0][:3] == pytest.approx(
        plt.matplotlib.colors.to_rgb(mean_line.get_color())
    )
    edges = band.get_paths()[0].vertices
    first_std = statistics.stdev([0.5, 0.7, 0.6])
    at_epoch_1 = sorted({round(y, 9) for x, y in edges if x == 1})
    assert at_epoch_1 == pytest.approx([0.6 - first_std, 0.6 + first_std])
    legend = [text.get_text() for text in axes.legend().get_texts()]
    assert legend == ["init=rbm (mean ± 1 std, 3 seeds)", "init=normal (1 seed)"]
    plt.close(figure)


def test_gradient_norm_band_is_over_each_seeds_median_per_layer():
    norms = {"grad_norm/layer_1": [(0, 1.0), (5, 3.0), (10, 2.0)], "grad_norm/layer_2": [(0, 4.0)]}
    other = {"grad_norm/layer_1": [(0, 6.0)], "grad_norm/layer_2": [(0, 8.0), (5, 2.0)]}
    assert median_norm_per_layer([job(norms), job(other), job({})]) == [
        {1: 2.0, 2: 4.0},
        {1: 6.0, 2: 5.0},
    ]


def test_a_sweep_that_logged_some_curves_only_draws_no_empty_legend_and_warns_nothing(
    tmp_path, monkeypatch
):
    # Packed jobs of a short run: no training-loss steps, no gradient norms; two networks
    # whose FLOPs differ, and a job of each without FLOPs (seconds only).
    def job(acc: float, flops: float | None, scalars: dict) -> JobFolder:
        metrics = {"status": "completed", "test/acc": acc, "train_seconds": 2.0}
        return JobFolder(
            None, {}, {**metrics, **({"train_flops": flops} if flops else {})}, scalars
        )

    groups = {
        "small": [job(0.8, 1e9, {"val/acc": [(9, 0.7)]}), job(0.82, 1e9, {"val/acc": [(9, 0.72)]})],
        "large": [
            job(0.9, 4e9, {"val/acc": [(9, 0.8)]}),
            job(0.91, None, {"val/acc": [(9, 0.81)]}),
        ],
    }
    figures = []
    save = plots.save
    monkeypatch.setattr(
        plots, "save", lambda figure, path: figures.append(figure) or save(figure, path)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of a legend without entries
        assert plots.plot_sweep(groups, tmp_path) == []

    val_acc, train_loss, grad_norms, compute = figures
    assert val_acc.axes[0].get_legend() is not None
    assert train_loss.axes[0].get_legend() is None and grad_norms.axes[0].get_legend() is None
    by_flops, by_seconds = compute.axes
    flops_legend = [text.get_text() for text in by_flops.get_legend().get_texts()]
    assert flops_legend == ["small (mean ± 1 std, 2 seeds)", "large (1 seed)"]
    legend = [text.get_text() for text in by_seconds.get_legend().get_texts()]
    assert legend == ["small (mean ± 1 std, 2 seeds)", "large (mean ± 1 std, 2 seeds)"]
    with Image.open(tmp_path / "val_acc.png") as image:
        assert image.size == (770, 495)  # 7 x 4.5 inches at 110 dpi


def test_no_compute_plot_is_drawn_where_every_configuration_cost_the_same(tmp_path):
    metrics = {"status": "completed", "test/acc": 0.9, "train_flops": 1e9, "train_seconds": 2.0}
    groups = {label: [JobFolder(None, {}, metrics, {})] for label in ("relu", "sigmoid")}
    (tmp_path / "test_acc_vs_compute.png").write_bytes(b"an earlier report's")
    reasons = plots.plot_sweep(groups, tmp_path)
    assert reasons == [
        "No test_acc_vs_compute.png: every configuration cost the same training FLOPs."
    ]
    assert not (tmp_path / "test_acc_vs_compute.png").exists()
