"""Packed sweeps: jobs trained as one stacked network end where each would end alone."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hydra_plugins.mlplab_packed_launcher.packed_launcher import GroupRun
from mlplab.engines.packed.classifier import PackedClassifier
from mlplab.engines.packed.network import PackedNetworks
from mlplab.engines.packed.train import fit_and_test_packed
from mlplab.errors import RunInterrupted, TrainingDiverged
from mlplab.job.facts import JobFacts
from mlplab.job.outcome import record_outcome
from mlplab.search.pruning import TrialPruned
from tests.conftest import SMALL_RUN, compose_train_config, train, write_tiny_mnist
from tests.test_run import SendSignalAtStep

# Three jobs that differ in everything a copy keeps for itself: seed, activation, init, dropout.
JOBS = {
    "relu": ["seed=1"],
    "tanh_xavier": ["seed=2", "activation=tanh", "init=xavier_uniform"],
    "dropout": ["seed=3", "model.dropout=0.3"],
}
TWO_EPOCHS = [*SMALL_RUN, "trainer.max_epochs=2", "trainer.log_every_n_steps=3"]
# The equivalence tests train in float64. Packed and single products add the same numbers in
# other orders, and which order depends on the CPU's kernels (AVX-512, AVX2, none): in float32
# that moves a weight by up to 4e-4 after 20 Adam steps (Adam divides by the root of tiny second
# moments), as much as a real mistake would. In float64 the same reordering moves no weight by
# more than 1e-13 on any of those kernels, so 1e-9 tells reordering from a bug: a wrong update
# of one copy moves its weights by about one step (learning rate 1e-3 and up).
IN_FLOAT64 = ["trainer.precision=64-true"]
REORDERING_TOLERANCE = 1e-9


def train_packed(cfgs) -> list[dict | Exception]:
    """Train `cfgs` packed and record each job's outcome as the packed launcher does."""
    recorded = []
    for cfg, outcome in zip(cfgs, fit_and_test_packed(cfgs, [JobFacts() for _ in cfgs])):
        try:
            recorded.append(record_outcome(Path(cfg.output_dir), outcome))
        except Exception as error:
            recorded.append(error)
    return recorded


def train_packed_and_alone(root: Path, jobs: dict[str, list[str]], shared: list[str]):
    """`jobs` (name: overrides, after `shared`) on tiny data, trained packed into
    root/packed/<name> and then each alone into root/alone/<name>: their metrics."""
    data = write_tiny_mnist(root / "data")

    def config(name: str, kind: str):
        return compose_train_config(root / kind / name, data, [*shared, *jobs[name]])

    packed = train_packed([config(name, "packed") for name in jobs])
    alone = [train(config(name, "alone")) for name in jobs]
    return packed, alone


@pytest.fixture(scope="module")
def packed_and_alone(tmp_path_factory):
    """The JOBS trained packed, and each trained alone: their folders and metrics."""
    root = tmp_path_factory.mktemp("packed")
    packed, alone = train_packed_and_alone(root, JOBS, [*TWO_EPOCHS, *IN_FLOAT64])
    return root, packed, alone


def checkpoint(root: Path, kind: str, name: str) -> dict:
    path = root / kind / name / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(packed: dict, alone: dict) -> None:
    """Two checkpoints' float64 weights (and batch norm's statistics) are equal up to the
    reordering of sums; counts are equal."""
    assert packed["state_dict"].keys() == alone["state_dict"].keys()
    for key, weight in alone["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            assert packed["state_dict"][key] == weight > 0, key
            continue
        assert weight.dtype == torch.float64, key
        torch.testing.assert_close(
            packed["state_dict"][key], weight, rtol=0, atol=REORDERING_TOLERANCE
        )


def assert_same_weights_and_optimizer_state(packed: dict, alone: dict) -> None:
    """Two last.ckpt contents hold equal weights and Adam moments, up to reordering."""
    assert packed["global_step"] == alone["global_step"] == 20
    assert_same_weights(packed, alone)
    packed_state = packed["optimizer_states"][0]["state"]
    for index, values in alone["optimizer_states"][0]["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(
                packed_state[index][key], value, rtol=0, atol=REORDERING_TOLERANCE
            )


@pytest.mark.parametrize("name", list(JOBS))
def test_packed_job_ends_with_the_weights_and_optimizer_state_it_reaches_alone(
    packed_and_alone, name
):
    root, _, _ = packed_and_alone
    packed, alone = checkpoint(root, "packed", name), checkpoint(root, "alone", name)
    assert_same_weights_and_optimizer_state(packed, alone)


# A search's trials: one seed, so one split and one batch order, each with its own settings.
ONE_SEED = {
    "relu": ["seed=1"],
    "tanh_dropout": ["seed=1", "activation=tanh", "model.dropout=0.3", "optimizer.lr=0.003"],
}


def test_jobs_of_one_seed_share_their_batches_and_end_where_each_ends_alone(tmp_path):
    train_packed_and_alone(tmp_path, ONE_SEED, [*TWO_EPOCHS, *IN_FLOAT64])
    for name in ONE_SEED:
        packed, alone = checkpoint(tmp_path, "packed", name), checkpoint(tmp_path, "alone", name)
        assert_same_weights_and_optimizer_state(packed, alone)


# The course's presets' options that pack with jobs of their own kind, two jobs each.
OWN_KIND = {
    "batchnorm": (
        ["model.batchnorm=true"],
        [["seed=1"], ["seed=2", "activation=tanh", "model.dropout=0.3"]],
    ),
    "prelu": (["activation=prelu"], [["seed=1"], ["seed=2", "init=xavier_uniform"]]),
    "maxout": (["activation=maxout"], [["seed=1"], ["seed=2", "model.dropout=0.3"]]),
    "rbm": (  # a pre-trained job beside one that is not
        ["activation=sigmoid", "data.normalize=false", "optimizer=sgd", "optimizer.lr=0.1"],
        [["seed=1", "init=rbm", "init.pretraining.epochs=2"], ["seed=2", "init=xavier_uniform"]],
    ),
}


@pytest.mark.parametrize("kind", list(OWN_KIND))
def test_batch_norm_prelu_maxout_and_rbm_jobs_end_packed_where_each_ends_alone(tmp_path, kind):
    data = write_tiny_mnist(tmp_path / "data")
    shared, jobs = OWN_KIND[kind]

    def config(copy: int, how: str):
        overrides = [*TWO_EPOCHS, *IN_FLOAT64, *shared, *jobs[copy]]
        return compose_train_config(tmp_path / how / str(copy), data, overrides)

    packed = train_packed([config(copy, "packed") for copy in range(len(jobs))])
    for copy, packed_metrics in enumerate(packed):
        alone = train(config(copy, "alone"))
        assert packed_metrics["packed_jobs"] == len(jobs)
        assert_same_weights_and_optimizer_state(
            checkpoint(tmp_path, "packed", str(copy)), checkpoint(tmp_path, "alone", str(copy))
        )
        for key in ("test/acc", "test/loss", "val/acc", "pretrain_flops"):  # logged in float32
            assert packed_metrics[key] == pytest.approx(alone[key], rel=1e-6), key
        assert (packed_metrics["pretrain_seconds"] > 0) == (alone["pretrain_seconds"] > 0)
        folders = [tmp_path / how / str(copy) for how in ("packed", "alone")]
        assert curve_points(folders[0]) == curve_points(folders[1])
    if kind == "rbm":
        assert packed[0]["pretrain_flops"] > 0 == packed[1]["pretrain_flops"]


def test_jobs_of_one_pretraining_setting_pretrain_together(tmp_path, caplog):
    """Their RBMs train stacked (tests/test_rbm.py finds each the RBMs it gets alone), and a
    job of another setting pre-trains in a group of its own."""
    data = write_tiny_mnist(tmp_path / "data")
    shared = [*SMALL_RUN, *OWN_KIND["rbm"][0], "init=rbm", "init.pretraining.epochs=2"]
    jobs = [["seed=1"], ["seed=2"], ["seed=3", "init.pretraining.epochs=1"]]
    cfgs = [
        compose_train_config(tmp_path / str(copy), data, [*shared, *overrides])
        for copy, overrides in enumerate(jobs)
    ]
    with caplog.at_level("INFO"):
        packed = train_packed(cfgs)
    seconds = [metrics["pretrain_seconds"] for metrics in packed]
    assert seconds[0] == seconds[1] != seconds[2] and min(seconds) > 0
    assert "pre-trained the hidden layers in" in caplog.text
    assert caplog.text.count(", 2 networks together") == 1
    assert packed[0]["pretrain_flops"] == packed[1]["pretrain_flops"] > packed[2]["pretrain_flops"]


LEARNING_RATES = {  # optimiser and schedule: each job's own learning rate
    "sgd_momentum_step": (
        ["optimizer=sgd", "optimizer.momentum=0.9", "scheduler=step", "scheduler.step_size=1"],
        [0.1, 0.03],
    ),
    "adam_cosine": (["scheduler=cosine"], [0.001, 0.004]),
}


@pytest.mark.parametrize("name", list(LEARNING_RATES))
def test_packed_jobs_with_their_own_learning_rates_end_where_each_ends_alone(tmp_path, name):
    data = write_tiny_mnist(tmp_path / "data")
    shared, rates = LEARNING_RATES[name]

    def config(copy: int, kind: str):
        rate = f"optimizer.lr={rates[copy]}"
        overrides = [*TWO_EPOCHS, *IN_FLOAT64, *shared, f"seed={copy + 1}", rate]
        return compose_train_config(tmp_path / kind / str(copy), data, overrides)

    metrics = train_packed([config(copy, "packed") for copy in range(len(rates))])
    assert [job["packed_jobs"] for job in metrics] == [len(rates)] * len(rates)
    for copy in range(len(rates)):
        train(config(copy, "alone"))
        folder = str(copy)
        packed, alone = (
            checkpoint(tmp_path, "packed", folder),
            checkpoint(tmp_path, "alone", folder),
        )
        assert_same_weights_and_optimizer_state(packed, alone)
        packed_group = packed["optimizer_states"][0]["param_groups"][0]
        alone_group = alone["optimizer_states"][0]["param_groups"][0]
        assert packed_group["lr"] == pytest.approx(alone_group["lr"])
        assert packed_group["initial_lr"] == pytest.approx(rates[copy])
        (packed_schedule,) = packed["lr_schedulers"]
        (alone_schedule,) = alone["lr_schedulers"]
        assert packed_schedule.keys() == alone_schedule.keys()
        for key, value in alone_schedule.items():
            assert packed_schedule[key] == pytest.approx(value), key
        lr_rows = {  # the learning-rate curve each job logs
            kind: [row for row in curve_rows(tmp_path / kind / folder) if row[1].startswith("lr-")]
            for kind in ("packed", "alone")
        }
        assert lr_rows["packed"] and lr_rows["packed"] == lr_rows["alone"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_packed_jobs_end_with_the_weights_they_reach_alone(tmp_path):
    on_gpu = [override for override in TWO_EPOCHS if override != "trainer=cpu"] + ["trainer=gpu"]
    # Without dropout: a GPU's fused dropout kernel draws its masks another way.
    names = ("relu", "tanh_xavier")
    train_packed_and_alone(tmp_path, {name: JOBS[name] for name in names}, [*on_gpu, *IN_FLOAT64])
    for name in names:
        packed, alone = checkpoint(tmp_path, "packed", name), checkpoint(tmp_path, "alone", name)
        # cuBLAS sums batched and single products in other orders too: float64 again.
        assert_same_weights_and_optimizer_state(packed, alone)


def test_packed_checkpoints_hold_what_a_single_runs_checkpoints_hold(packed_and_alone):
    root, packed_metrics, alone_metrics = packed_and_alone
    for name, packed, alone in zip(JOBS, packed_metrics, alone_metrics):
        assert packed["best_checkpoint"] == alone["best_checkpoint"]
        packed_best = torch.load(root / "packed" / name / packed["best_checkpoint"])
        alone_best = torch.load(root / "alone" / name / alone["best_checkpoint"])
        assert packed_best.keys() == alone_best.keys()
        assert packed_best["callbacks"].keys() == alone_best["callbacks"].keys()
        assert packed_best["hyper_parameters"]["output_dir"] == str(root / "packed" / name)
        assert packed_best["MNISTDataModule"]["batches_consumed"] == 0
        torch.testing.assert_close(
            packed_best["MNISTDataModule"]["epoch_start_state"],
            alone_best["MNISTDataModule"]["epoch_start_state"],
        )


def curve_rows(folder: Path) -> list[list[str]]:
    """The (step, tag, value) rows of a run's curves.csv."""
    return [line.split(",") for line in (folder / "curves.csv").read_text().splitlines()[1:]]


def curve_points(folder: Path) -> set[tuple[str, ...]]:
    """The (step, tag) pairs of a run's curves.csv."""
    return {tuple(row[:2]) for row in curve_rows(folder)}


def test_packed_job_writes_the_metrics_and_curves_of_a_single_run(packed_and_alone):
    root, packed_metrics, alone_metrics = packed_and_alone
    for name, packed, alone in zip(JOBS, packed_metrics, alone_metrics):
        assert set(packed) ^ set(alone) == {"packed_jobs"} and packed["packed_jobs"] == 3
        for key in ("test/acc", "val/acc", "epochs", "seed", "train_flops", "pretrain_flops"):
            assert packed[key] == pytest.approx(alone[key], abs=1e-4)
        written = json.loads((root / "packed" / name / "metrics.json").read_text())
        assert written == packed
        assert curve_points(root / "packed" / name) == curve_points(root / "alone" / name)


def test_a_packed_job_honours_save_top_k_and_a_learning_rate_logged_every_step(
    tiny_mnist, tmp_path
):
    settings = [
        *TWO_EPOCHS,
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.save_top_k=2",
        "callbacks.learning_rate_monitor.logging_interval=step",
        "diagnostics.histograms=false",
        "logger=tensorboard",
    ]
    jobs = {"first": ["seed=1"], "second": ["seed=2", "activation=tanh"]}

    def config(kind: str, name: str):
        return compose_train_config(tmp_path / kind / name, tiny_mnist, [*settings, *jobs[name]])

    packed = train_packed([config("packed", name) for name in jobs])
    alone = [train(config("alone", name)) for name in jobs]
    for name, packed_metrics, alone_metrics in zip(jobs, packed, alone):
        folders = {kind: tmp_path / kind / name for kind in ("packed", "alone")}
        files = {
            kind: sorted(p.name for p in (f / "checkpoints").iterdir())
            for kind, f in folders.items()
        }
        assert files["packed"] == files["alone"] and len(files["alone"]) == 3  # 2 best + last
        assert packed_metrics["best_checkpoint"] == alone_metrics["best_checkpoint"]
        learning_rates = {
            kind: {p for p in curve_points(f) if p[1] == "lr-Adam"} for kind, f in folders.items()
        }
        assert (
            learning_rates["packed"] == learning_rates["alone"] and len(learning_rates["alone"]) > 3
        )
        assert curve_points(folders["packed"]) == curve_points(folders["alone"])
        assert histogram_tags(folders["packed"]) == histogram_tags(folders["alone"]) == set()


def histogram_tags(folder: Path) -> set[str]:
    """The histogram tags of every TensorBoard event file under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.rglob("events.*"):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()["histograms"])
    return tags


def test_a_signal_saves_every_packed_job_mid_epoch_and_each_resumes_alone(packed_and_alone):
    root, _, alone_metrics = packed_and_alone

    def config(name: str, *extra: str):
        overrides = [*TWO_EPOCHS, *IN_FLOAT64, *JOBS[name], *extra]
        return compose_train_config(root / "signalled" / name, root / "data", overrides)

    cfgs = [config(name) for name in JOBS]
    facts = [JobFacts(number=number) for number in range(len(JOBS))]
    signal_at_13 = (SendSignalAtStep(13, "SIGTERM"),)
    outcomes = fit_and_test_packed(cfgs, facts, extra_callbacks=signal_at_13)
    for name, outcome, alone in zip(JOBS, outcomes, alone_metrics):
        folder = root / "signalled" / name
        with pytest.raises(RunInterrupted) as stopped:
            record_outcome(folder, outcome)
        assert stopped.value.exit_code == 143
        assert "stopped by SIGTERM at epoch 1, step 14" in str(stopped.value)
        assert checkpoint(root, "signalled", name)["global_step"] == 14
        recorded = json.loads((folder / "metrics.json").read_text())
        assert recorded["error"].count("continue with") == 1
        assert recorded["error"].endswith(f"resume={folder}")
        resumed = train(config(name, f"resume={folder}"))
        assert resumed["epochs"] == 2
        # Within the drift of a resumed fused Adam (its step count reloads as float64): a
        # resume from the wrong step or batch order would move weights by 1e-3 and more.
        final = checkpoint(root, "signalled", name)["state_dict"]
        for key, weight in checkpoint(root, "alone", name)["state_dict"].items():
            torch.testing.assert_close(final[key], weight, rtol=0, atol=1e-7)
        assert resumed["test/acc"] == pytest.approx(alone["test/acc"], abs=1e-6)


def test_a_packed_job_reports_the_validation_of_the_epoch_it_tests(tiny_mnist, tmp_path):
    # The learning rate jumps 1000-fold after the first epoch and wrecks what it learned.
    wrecked = ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1000"]
    cfgs = [
        compose_train_config(
            tmp_path / str(seed), tiny_mnist, [*TWO_EPOCHS, *wrecked, f"seed={seed}"]
        )
        for seed in (777, 778)
    ]
    for cfg, metrics in zip(cfgs, train_packed(cfgs)):
        rows = curve_rows(Path(cfg.output_dir))
        val = {
            tag: [float(row[2]) for row in rows if row[1] == tag] for tag in ("val/acc", "val/loss")
        }
        # The setup works: the best epoch (the first to reach the highest val/acc) is the
        # first, and the last epoch's val/loss differs from it.
        assert metrics["best_checkpoint"].startswith("checkpoints/epoch00-")
        assert val["val/loss"][0] != val["val/loss"][1]
        assert metrics["val/acc"] == pytest.approx(val["val/acc"][0])
        assert metrics["val/loss"] == pytest.approx(val["val/loss"][0])


def test_packed_and_one_by_one_test_results_agree_within_their_seed_spread(packed_and_alone):
    _, packed, alone = packed_and_alone
    for key in ("test/acc", "test/loss"):
        packed_values = [metrics[key] for metrics in packed]
        alone_values = [metrics[key] for metrics in alone]
        spread = max(statistics.stdev(alone_values), 1e-6)
        assert abs(statistics.fmean(packed_values) - statistics.fmean(alone_values)) <= spread


def test_a_diverging_packed_job_stops_alone_and_the_others_complete(tiny_mnist, tmp_path):
    jobs = {
        "stable": ["seed=1"],
        "huge_init": ["seed=2", "init=normal", "init.weight.std=1e30"],
        "also_stable": ["seed=3", "activation=sigmoid"],
    }
    cfgs = [
        compose_train_config(tmp_path / name, tiny_mnist, [*TWO_EPOCHS, "optimizer=sgd", *extra])
        for name, extra in jobs.items()
    ]
    stable, diverged, also_stable = train_packed(cfgs)
    assert all(metrics["status"] == "completed" for metrics in (stable, also_stable))
    assert stable["epochs"] == also_stable["epochs"] == 2
    assert isinstance(diverged, TrainingDiverged)
    assert "training diverged at epoch 0, step 0" in str(diverged)
    written = json.loads((tmp_path / "huge_init" / "metrics.json").read_text())
    assert written == {"status": "diverged", "error": str(diverged)}
    assert not (tmp_path / "huge_init" / "checkpoints" / "last.ckpt").exists()


def test_once_a_copy_stops_the_others_train_without_it_and_end_where_each_ends_alone(
    tmp_path, monkeypatch
):
    data = write_tiny_mnist(tmp_path / "data")
    jobs = {  # with batch norm: each copy's running statistics go on without the stopped one
        "dropout": ["seed=1", "model.dropout=0.3"],
        "diverges": ["seed=2", "optimizer.lr=1e300"],  # its second step's loss is not finite
        "tanh_own_lr": ["seed=3", "activation=tanh", "optimizer.lr=2e-3"],
    }

    def config(name: str, kind: str):
        overrides = [*TWO_EPOCHS, *IN_FLOAT64, "model.batchnorm=true", *jobs[name]]
        return compose_train_config(tmp_path / kind / name, data, overrides)

    copies_per_step = []
    forward = PackedNetworks.forward

    def counted(network, features):
        if network.training:
            copies_per_step.append(len(features))
        return forward(network, features)

    monkeypatch.setattr(PackedNetworks, "forward", counted)
    dropout, diverged, tanh_own_lr = train_packed([config(name, "packed") for name in jobs])
    assert isinstance(diverged, TrainingDiverged) and "step 1" in str(diverged)
    assert copies_per_step == [3, 3] + [2] * 18  # left out of every step after it diverged
    monkeypatch.undo()
    for name in ("dropout", "tanh_own_lr"):
        train(config(name, "alone"))
        alone = checkpoint(tmp_path, "alone", name)
        assert_same_weights_and_optimizer_state(checkpoint(tmp_path, "packed", name), alone)


def test_a_stopped_copy_leaves_the_network_and_the_optimizer_with_its_weights_as_they_stopped(
    tmp_path, monkeypatch
):
    """The others' step is then theirs only: no slice of the products, of the optimiser's
    moments (left to decay under a zero gradient they would reach denormal floats, on which
    the CPU's arithmetic is far slower) or of weight decay is the stopped copy's."""
    data = write_tiny_mnist(tmp_path / "data")
    decaying = [*TWO_EPOCHS, "optimizer=adamw", "optimizer.weight_decay=0.5"]
    cfgs = [compose_train_config(tmp_path / f"{s}", data, [*decaying, f"seed={s}"]) for s in (1, 2)]
    stopped = {}
    end_epoch = PackedClassifier.on_train_epoch_end

    def stop_the_second_after_its_first_epoch(module):
        end_epoch(module)
        if module.current_epoch == 0:  # as a search's pruner stops a trial
            at_stop = module.network.copy_state(1).items()
            stopped["state"] = {name: value.clone() for name, value in at_stop}
            module.stop_copy(1, TrialPruned("pruned by the test after epoch 1"))
            stopped["module"] = module

    monkeypatch.setattr(
        PackedClassifier, "on_train_epoch_end", stop_the_second_after_its_first_epoch
    )
    completed, pruned = train_packed(cfgs)
    assert completed["status"] == "completed" and isinstance(pruned, TrialPruned)
    module = stopped["module"]
    assert module.network.rows == [0]
    optimizer_state = module.optimizers().optimizer.state
    for parameter in module.network.stacked:
        assert len(parameter) == 1
        assert len(optimizer_state[parameter]["exp_avg"]) == 1
        assert len(optimizer_state[parameter]["exp_avg_sq"]) == 1
    after = module.network.copy_state(1)
    assert after.keys() == stopped["state"].keys()
    assert all(torch.equal(after[name], value) for name, value in stopped["state"].items())


@pytest.mark.end_to_end
def test_packed_sweep_packs_what_it_can_and_its_jobs_resume_and_evaluate_alone(
    tiny_mnist, tmp_path
):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "train", "-m"]  # a multirun packs by default
    result = subprocess.run(
        [*command, *SMALL_RUN, "seed=1,2", "optimizer=adam,lbfgs", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tiny_mnist)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "packed together: #0, #2" in output
    assert "alone: #1 (optimizer torch.optim.LBFGS does not update each weight" in output
    folders = {
        int(folder.name.split("_")[0]): folder for folder in sweep.glob("*_*") if folder.is_dir()
    }
    metrics = {
        number: json.loads((f / "metrics.json").read_text()) for number, f in folders.items()
    }
    assert {number: m.get("packed_jobs") for number, m in metrics.items()} == {
        0: 2,
        1: None,
        2: 2,
        3: None,
    }
    assert "as one packed network of 2 copies" in (folders[2] / "train.log").read_text()
    summary = (sweep / "summary.csv").read_text()
    assert "optimizer=adam,2," in summary and "optimizer=lbfgs,2," in summary

    packed_job = folders[2]
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplab.evaluate",
            # A sweep job's folder name holds "=" and ",": taken as it is.
            f"ckpt_path={packed_job / metrics[2]['best_checkpoint']}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert f"test/acc {metrics[2]['test/acc']:.4f}" in evaluated.stdout + evaluated.stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "train", f"resume={packed_job}", "trainer.max_epochs=2"],
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tiny_mnist)},  # the data its config names
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    continued = json.loads((packed_job / "metrics.json").read_text())
    assert continued["status"] == "completed" and continued["epochs"] == 2
    assert "packed_jobs" not in continued  # the second epoch trained alone


@pytest.mark.end_to_end
def test_sigterm_stops_a_packed_sweep_with_its_status_once_every_job_recorded_it(
    tiny_mnist, tmp_path
):
    sweep = tmp_path / "sweep"
    sweeping = subprocess.Popen(
        [sys.executable, "-m", "train", "-m", *SMALL_RUN]
        + ["trainer.max_epochs=1000", "seed=1,2", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tiny_mnist)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while len(list(sweep.glob("*/checkpoints/last.ckpt"))) < 2 and sweeping.poll() is None:
            time.sleep(0.2)
        sweeping.send_signal(signal.SIGTERM)
        output, _ = sweeping.communicate(timeout=120)
    finally:
        sweeping.kill()
    assert sweeping.returncode == 128 + signal.SIGTERM.value, output[-3000:]
    for folder in (f for f in sweep.iterdir() if f.is_dir()):
        recorded = json.loads((folder / "metrics.json").read_text())
        assert "stopped by SIGTERM" in recorded["error"], recorded
        step = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        assert f"step {step};" in recorded["error"]
        assert recorded["error"].endswith(f"resume={folder}")


def test_jobs_of_a_group_that_stopped_at_different_steps_each_continue_alone(
    tiny_mnist, tmp_path, caplog
):
    def config(name: str, epochs: int):
        overrides = [*TWO_EPOCHS, f"trainer.max_epochs={epochs}", *JOBS[name]]
        return compose_train_config(tmp_path / name, tiny_mnist, overrides)

    names = ["relu", "dropout"]
    in_sweep = [JobFacts(number=number, in_sweep=True) for number in range(len(names))]
    for outcome in fit_and_test_packed([config(name, 1) for name in names], in_sweep):
        outcome()
    (tmp_path / "dropout" / "checkpoints" / "last.ckpt").unlink()  # its attempt stopped earlier
    with caplog.at_level("INFO"):
        outcomes = fit_and_test_packed([config(name, 2) for name in names], in_sweep)
        continued = [record_outcome(tmp_path / name, o) for name, o in zip(names, outcomes)]
    assert "each continues alone" in caplog.text
    assert f"continuing from {tmp_path / 'relu' / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert [metrics["epochs"] for metrics in continued] == [2, 2]
    assert all("packed_jobs" not in metrics for metrics in continued)
    for name in names:
        last = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["global_step"] == 20


def test_a_packed_group_that_finds_its_jobs_last_checkpoints_continues_as_a_group(
    packed_and_alone,
):
    root, _, _ = packed_and_alone

    def config(kind: str, name: str, epochs: int, *extra: str):
        overrides = [*TWO_EPOCHS, *IN_FLOAT64, f"trainer.max_epochs={epochs}", *JOBS[name]]
        return compose_train_config(root / kind / name, root / "data", [*overrides, *extra])

    in_sweep = [JobFacts(number=number, in_sweep=True) for number in range(len(JOBS))]
    first_epoch = [config("requeued", name, 1) for name in JOBS]
    stopped = [outcome() for outcome in fit_and_test_packed(first_epoch, in_sweep)]
    assert [metrics["epochs"] for metrics in stopped] == [1, 1, 1]
    both_epochs = [config("requeued", name, 2) for name in JOBS]
    continued = [outcome() for outcome in fit_and_test_packed(both_epochs, in_sweep)]
    assert [metrics["epochs"] for metrics in continued] == [2, 2, 2]
    for name in JOBS:
        # Compared with the job stopped and resumed alone: reloading fused Adam's state turns
        # its step count into a float64, whose bias correction rounds otherwise (4e-9 from
        # the uninterrupted run in float64, the same packed or alone).
        train(config("resumed", name, 1))
        train(config("resumed", name, 2, f"resume={root / 'resumed' / name}"))
        requeued, resumed = checkpoint(root, "requeued", name), checkpoint(root, "resumed", name)
        assert_same_weights(requeued, resumed)
        # As for a single run resumed at step 10: the points the stopped run wrote at its
        # checkpoint's step (the epoch's hidden-layer statistics) are dropped.
        alone_points = curve_points(root / "alone" / name)
        at_checkpoint = {(step, tag) for step, tag in alone_points if step == "10"}
        assert curve_points(root / "requeued" / name) == alone_points - {
            point for point in at_checkpoint if point[1].startswith("activation/")
        }


class Requeued(SystemExit):
    """What submitit's handler ends the process with after requeueing the job."""


def test_a_preempted_packed_group_is_requeued_once_saved_and_continues_as_a_group(
    packed_and_alone,
):
    root, _, alone_metrics = packed_and_alone
    cfgs = [
        compose_train_config(
            root / "preempted" / name, root / "data", [*TWO_EPOCHS, *IN_FLOAT64, *JOBS[name]]
        )
        for name in JOBS
    ]
    in_sweep = [JobFacts(number=number, in_sweep=True) for number in range(len(JOBS))]
    requeue_requests = []

    def scheduler(signum, frame):  # a stand-in for submitit's checkpoint_and_try_requeue
        saved = [checkpoint(root, "preempted", name)["global_step"] for name in JOBS]
        requeue_requests.append((signal.Signals(signum), saved))
        raise Requeued(-1)

    previous = signal.signal(signal.SIGUSR2, scheduler)
    try:
        with pytest.raises(Requeued):
            fit_and_test_packed(cfgs, in_sweep, extra_callbacks=(SendSignalAtStep(13, "SIGUSR2"),))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert requeue_requests == [(signal.SIGUSR2, [14, 14, 14])]  # every job saved first

    # submitit requeues the group as it was launched: the same configs, continued together.
    run = GroupRun(hydra_context=None, task_function=None, singletons={})
    assert run.checkpoint(cfgs).args == (cfgs,)
    continued = [outcome() for outcome in fit_and_test_packed(cfgs, in_sweep)]
    assert [metrics["packed_jobs"] for metrics in continued] == [3, 3, 3]
    for name, metrics, alone in zip(JOBS, continued, alone_metrics):
        final = checkpoint(root, "preempted", name)["state_dict"]
        for key, weight in checkpoint(root, "alone", name)["state_dict"].items():
            torch.testing.assert_close(final[key], weight, rtol=0, atol=1e-7)  # as resumed alone
        assert metrics["test/acc"] == pytest.approx(alone["test/acc"], abs=1e-6)
