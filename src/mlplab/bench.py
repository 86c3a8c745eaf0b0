"""`python -m mlplab.bench`: seconds per epoch of the course's loop, a plain loop and mlplab.

The epochs run in this process, interleaved (course, plain, mlplab, course, ...), so a
machine that speeds up or slows down affects every contender alike; medians are reported
with their min-max. Then whole sweeps of the default config, one per launcher (one job at a
time, joblib's parallel, packed), each from launch to its report. Prints a table and writes
the measurements as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mlplab.config.compose import compose_train_config
from mlplab.config.presets import preset_names
from mlplab.data.mnist import MNISTDataModule, TensorBatches
from mlplab.engines.packed.classifier import mean_losses
from mlplab.engines.packed.data import PackedBatches
from mlplab.engines.packed.network import PackedNetworks, packed_linear
from mlplab.engines.packed.train import train_group
from mlplab.job.build import build_classifier, build_trainer
from mlplab.job.facts import JobFacts
from mlplab.model.compute import training_flops
from mlplab.model.nets import MLP, linear_layers
from mlplab.results import SUMMARY_CSV
from mlplab.scale.cuda_check import skip_nvml_check_without_driver
from mlplab.scale.job_resources import flush_denormals, reuse_freed_memory
from mlplab.sweeps.jobs import find_jobs, sweep_folders


def course_network() -> nn.Module:
    """784-256-256-10 ReLU, the course's network and mlplab's default."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def course_loop_epoch(data_root: str, batch_size: int) -> float:
    """The course's loop: torchvision MNIST with ToTensor per image, a DataLoader, plain PyTorch."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(data_root, train=True, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    return timed_epoch(loader, fused=False)


def timed_epoch(batches, fused: bool) -> float:
    """Seconds for one epoch of a hand-written loop: zero_grad, forward, backward, Adam step."""
    network = course_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, fused=fused or None)
    loss_function = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for features, labels in batches:
        optimizer.zero_grad()
        loss_function(network(features), labels).backward()
        optimizer.step()
    return time.perf_counter() - started


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> loss


class BareLightningModule(L.LightningModule):
    """A hand-written loop's step inside Lightning, with nothing else: Lightning's own cost."""

    def __init__(self, network: nn.Module, loss: Loss) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.loss = loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(self.loss(self.network(features), labels))
        optimizer.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)


def summed_mean_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The packed loss: the sum over copies of each copy's mean cross-entropy."""
    return mean_losses(logits, labels).sum()


def bare_lightning_epoch(module: BareLightningModule, batches, timer: EpochTimer) -> None:
    """One epoch of `module` over `batches`: no logger, metrics, checkpoints or progress bar."""
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=batches)


class EpochTimer(L.Callback):
    """Wall time of each epoch's training batches, of the whole epoch and of the test pass."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {"train": [], "epoch": [], "test": []}
        self.started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self.seconds["train"].append(time.perf_counter() - self.started)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds["epoch"].append(time.perf_counter() - self.started)

    def on_test_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_test_end(self, trainer, pl_module) -> None:
        self.seconds["test"].append(time.perf_counter() - self.started)


class FirstStepMarker(L.Callback):
    """Writes the wall-clock time of the first training step into `path`."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.path.exists():
            self.path.write_text(str(time.time()))


def datamodule_of(cfg: DictConfig) -> MNISTDataModule:
    """The run's data, loaded: the splits as `python -m train` trains on them."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule


def mlplab_epoch(data_root: str, overrides: list[str], output_dir: Path, timer: EpochTimer):
    """One epoch of `python -m train` (default config plus `overrides`), then its test pass."""
    cfg = compose_train_config(
        output_dir, [f"data.root={data_root}", "trainer.max_epochs=1", *overrides]
    )
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = datamodule_of(cfg)
    classifier = build_classifier(cfg)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(timer)
    trainer.fit(classifier, datamodule=datamodule)
    trainer.test(classifier, datamodule=datamodule, verbose=False)


def packed_epoch(data_root: str, copies: int, output_dir: Path, timer: EpochTimer) -> None:
    """One epoch of `copies` default jobs (seeds 1, 2, ...) packed, as the packed launcher
    trains them: every job's curves, diagnostics and checkpoints on; then the test pass."""
    cfgs = [
        compose_train_config(
            output_dir / f"job_{seed}",
            [f"data.root={data_root}", "trainer.max_epochs=1", f"seed={seed}"],
        )
        for seed in range(1, copies + 1)
    ]
    facts = [JobFacts(number=number, in_sweep=True) for number in range(copies)]
    for outcome in train_group(cfgs, facts, extra_callbacks=(timer,)):
        outcome()  # a failed job fails the bench


LAUNCHERS_COMPARED = {"one_by_one": ["hydra/launcher=basic"], "default": []}
SWEEP_LAUNCHERS = {  # name: the launcher override of `python -m train -m`
    "one_by_one": ["hydra/launcher=basic"],
    "parallel": ["hydra/launcher=parallel"],
    "packed": ["hydra/launcher=packed"],
}


def timed_sweep(
    data_root: str, launcher: list[str], jobs: int, epochs: int, trainer: str
) -> tuple[float, dict]:
    """`python -m train -m seed=1,...,jobs`: wall time from launch to its sweep report, and
    the first job's metrics.json."""
    seeds = ",".join(str(seed) for seed in range(1, jobs + 1))
    overrides = [f"seed={seeds}", f"trainer={trainer}", f"trainer.max_epochs={epochs}"]
    return timed_multirun(data_root, [*launcher, *overrides])


def timed_multirun(data_root: str, overrides: list[str]) -> tuple[float, dict]:
    """`python -m train -m <overrides>`: wall time from launch to its sweep report (each
    preset's, for a sweep of several), and the first job's metrics.json."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            *(sys.executable, "-m", "train", "-m", *overrides),
            f"data.root={data_root}",
            f"hydra.sweep.dir={folder}/sweep",
            "hydra.sweep.subdir=${hydra.job.num}",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        folders = sweep_folders(Path(folder) / "sweep")
        if not all((sweep / SUMMARY_CSV).exists() for sweep in folders):
            raise RuntimeError(f"{' '.join(command)} wrote no sweep report")
        return seconds, find_jobs(folders[0])[0].metrics


PEAK_MEMORY_OF_COMMAND = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
sys.exit(f"{sys.argv[1:]} failed with status {status}") if status else print(usage.ru_maxrss)
"""


def launch_to_first_step(data_root: str) -> tuple[float, float]:
    """Seconds from starting `python -m train` to its first training step; peak RSS in MiB."""
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "first_step"
        command = [
            sys.executable,
            "-m",
            "train",
            f"data.root={data_root}",
            "trainer.max_epochs=1",
            f"hydra.run.dir={folder}/run",
            "+callbacks.first_step._target_=mlplab.bench.FirstStepMarker",
            f"+callbacks.first_step.path={marker}",
        ]
        started = time.time()
        # A child's peak memory counts the parent's pages at the fork, and this process is
        # large by now: a bare interpreter starts the run and reports its peak instead.
        report = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY_OF_COMMAND, *command],
            check=True,
            capture_output=True,
            text=True,
        )
        return float(marker.read_text()) - started, int(report.stdout) / 1024


def import_seconds(module: str) -> float:
    """Seconds for a fresh interpreter to start and import `module`: the floor of any launch."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - started


MATMUL_SIZE = 2048


def matmul_seconds(repetitions: int = 10) -> float:
    """Seconds of one MATMUL_SIZE-square float32 matrix product: the machine's arithmetic."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    started = time.perf_counter()
    for _ in range(repetitions):
        a @ b
    return (time.perf_counter() - started) / repetitions


def packed_products_epoch(copies: int, batch_size: int, examples: int, adam: bool) -> float:
    """Seconds of a packed epoch's Linear layers alone, for `copies` course networks stacked as
    the packed network stacks them: per step and layer packed_linear forward and backward from
    a given output gradient (the products of the layer, of its weights' gradient and, but for
    the first layer, of its input's, and the biases' sums); with `adam`, also the default fused
    Adam's update of the stacked weights and biases. The floor under a packed epoch."""
    shapes = [(layer.in_features, layer.out_features) for layer in linear_layers(course_network())]
    weights = [nn.Parameter(torch.randn(copies, fan_in, fan_out)) for fan_in, fan_out in shapes]
    biases = [nn.Parameter(torch.zeros(copies, fan_out)) for _, fan_out in shapes]
    inputs = [  # the first layer's input is the images: no gradient
        torch.randn(copies, batch_size, fan_in, requires_grad=index > 0)
        for index, (fan_in, _) in enumerate(shapes)
    ]
    gradients = [torch.randn(copies, batch_size, fan_out) * 1e-3 for _, fan_out in shapes]
    optimizer = torch.optim.Adam([*weights, *biases], lr=1e-3, fused=True)
    started = time.perf_counter()
    for _ in range(examples // batch_size):
        optimizer.zero_grad(set_to_none=True)
        for weight, bias, x, gradient in zip(weights, biases, inputs, gradients):
            x.grad = None
            packed_linear(x, weight, bias).backward(gradient)
        if adam:
            optimizer.step()
    return time.perf_counter() - started


def packed_course_networks(copies: int) -> PackedNetworks:
    """`copies` course networks stacked as the packed engine stacks them."""
    networks = [MLP([256, 256], nn.ReLU) for _ in range(copies)]
    return PackedNetworks(networks, [torch.Generator() for _ in networks])


def packed_batches(features: torch.Tensor, labels: torch.Tensor, copies: int) -> PackedBatches:
    """An epoch of batches of 100 for `copies` jobs, each its own split and order gathered per
    step, as the packed engine gathers them."""
    splits = torch.stack([torch.randperm(len(labels)) for _ in range(copies)])
    orders = [TensorBatches(split, split, 100, True, seed) for seed, split in enumerate(splits)]
    return PackedBatches(features, labels, splits, orders)


def packed_loop_epoch(features: torch.Tensor, labels: torch.Tensor, copies: int) -> float:
    """Seconds of one epoch of `copies` packed course networks in a hand-written loop: each
    copy's batch gathered, forward, loss, backward and fused Adam, and nothing else: what any
    engine of the packed step costs before it records or checkpoints anything."""
    network = packed_course_networks(copies)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, fused=True)
    started = time.perf_counter()
    for batch_features, batch_labels in packed_batches(features, labels, copies):
        optimizer.zero_grad(set_to_none=True)
        summed_mean_losses(network(batch_features), batch_labels).backward()
        optimizer.step()
    return time.perf_counter() - started


def arithmetic_rates(seconds: dict[str, list[float]], examples: int) -> dict[str, dict]:
    """GFLOP/s of the epochs' matrix products (mlplab.model.compute's count), each repetition's
    share of that repetition's matrix-product rate: how close an epoch is to the arithmetic."""
    epoch_flops = training_flops(course_network(), examples)
    peak = [2 * MATMUL_SIZE**3 / matmul for matmul in seconds["matmul"]]
    rates = {"matmul": summary([rate / 1e9 for rate in peak])}
    for name in ("plain_loop", "mlplab", PACKED, PACKED_LOOP, PACKED_PRODUCTS):
        rates[name] = summary([epoch_flops / epoch / 1e9 for epoch in seconds[name]])
        rates[f"{name} / matmul"] = summary(
            [epoch_flops / epoch / rate for epoch, rate in zip(seconds[name], peak)]
        )
    return rates


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


PLAIN_LOOPS = {  # name: (fused Adam, batch size)
    "plain_loop": (False, 100),
    "plain_loop_fused": (True, 100),
    "plain_loop_fused_b1000": (True, 1000),
}
MLPLAB_RUNS = {  # name: overrides of the default config
    "mlplab": [],
    "mlplab_no_diagnostics": ["diagnostics=none"],
    "mlplab_b1000": ["data.batch_size=1000"],
}


PACKED_COPIES = 8
PACKED = f"packed_{PACKED_COPIES}_per_model"  # a packed epoch's time over its number of models
PACKED_PRODUCTS = f"packed_{PACKED_COPIES}_products_per_model"  # its matrix products alone
PACKED_FLOOR = f"packed_{PACKED_COPIES}_products_and_adam_per_model"  # and Adam's update
PACKED_LOOP = f"packed_{PACKED_COPIES}_hand_written_loop_per_model"  # its step in a bare loop
PACKED_BARE = f"packed_{PACKED_COPIES}_bare_lightning_per_model"  # that step in a bare Trainer

RATIOS = (  # (slower, faster): how many times longer an epoch of the first takes
    ("mlplab", "plain_loop"),
    ("mlplab", "plain_loop_fused"),
    ("bare_lightning_fused", "plain_loop_fused"),
    ("mlplab", "bare_lightning_fused"),
    ("mlplab_b1000", "plain_loop_fused_b1000"),
    ("course_loop", "mlplab"),
    ("mlplab", "mlplab_no_diagnostics"),
    (PACKED, "plain_loop"),
    (PACKED, "plain_loop_fused"),
    (PACKED, "mlplab"),
    (PACKED_PRODUCTS, "plain_loop"),
    (PACKED_FLOOR, "plain_loop"),
    (PACKED_LOOP, "plain_loop"),
    (PACKED_BARE, "plain_loop"),
    (PACKED_BARE, PACKED_LOOP),
    (PACKED, PACKED_BARE),
    (PACKED, PACKED_LOOP),
    (PACKED, PACKED_PRODUCTS),
)


def paired_ratios(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each ratio of RATIOS taken within each repetition, then summarised.

    The two epochs of a pair ran a few seconds apart, so a machine that drifts faster or
    slower over the minutes of the benchmark moves both alike and the ratio stays put.
    """
    return {
        f"{first} / {second}": summary([a / b for a, b in zip(seconds[first], seconds[second])])
        for first, second in RATIOS
    }


def appending(values: list[float], measure: Callable[..., float], *args) -> Callable[[], None]:
    """A call of `measure(*args)` that appends what it returns to `values`."""
    return lambda: values.append(measure(*args))


def run_benchmark(data_root: str, repetitions: int) -> dict:
    epochs: dict[str, list[float]] = {
        name: []
        for name in ("course_loop", *PLAIN_LOOPS, PACKED_PRODUCTS, PACKED_FLOOR, PACKED_LOOP)
    }
    matmuls = []
    timers = {
        name: EpochTimer() for name in ("bare_lightning_fused", *MLPLAB_RUNS, PACKED, PACKED_BARE)
    }
    with tempfile.TemporaryDirectory() as folder:
        default = compose_train_config(Path(folder) / "data", [f"data.root={data_root}"])
        # mlplab's jobs set these for the process; the plain loops compute the same way.
        flush_denormals(default)
        reuse_freed_memory()
        datamodule = datamodule_of(default)
        features, labels = datamodule.splits["train"]
        for repetition in range(repetitions):
            shuffled = partial(TensorBatches, features, labels, shuffle=True, seed=repetition)
            runs = Path(folder) / str(repetition)
            contenders = [
                appending(matmuls, matmul_seconds),
                appending(epochs["course_loop"], course_loop_epoch, data_root, 100),
                *(
                    appending(epochs[name], timed_epoch, shuffled(size), fused)
                    for name, (fused, size) in PLAIN_LOOPS.items()
                ),
                partial(
                    bare_lightning_epoch,
                    BareLightningModule(course_network(), nn.CrossEntropyLoss()),
                    shuffled(100),
                    timers["bare_lightning_fused"],
                ),
                *(
                    partial(mlplab_epoch, data_root, overrides, runs / name, timers[name])
                    for name, overrides in MLPLAB_RUNS.items()
                ),
                partial(packed_epoch, data_root, PACKED_COPIES, runs / PACKED, timers[PACKED]),
                appending(epochs[PACKED_LOOP], packed_loop_epoch, features, labels, PACKED_COPIES),
                partial(
                    bare_lightning_epoch,
                    BareLightningModule(packed_course_networks(PACKED_COPIES), summed_mean_losses),
                    packed_batches(features, labels, PACKED_COPIES),
                    timers[PACKED_BARE],
                ),
                *(
                    appending(
                        epochs[name],
                        packed_products_epoch,
                        PACKED_COPIES,
                        default.data.batch_size,
                        len(labels),
                        adam,
                    )
                    for name, adam in ((PACKED_PRODUCTS, False), (PACKED_FLOOR, True))
                ),
            ]
            # Every other repetition runs them in reverse, so no contender always goes first.
            for contender in contenders if repetition % 2 == 0 else reversed(contenders):
                contender()
    first_step_seconds, peak_mib = launch_to_first_step(data_root)
    epochs.update({name: timer.seconds["train"] for name, timer in timers.items()})
    for name in (PACKED, PACKED_BARE, PACKED_LOOP, PACKED_PRODUCTS, PACKED_FLOOR):
        epochs[name] = [seconds / PACKED_COPIES for seconds in epochs[name]]
    epochs["mlplab_with_validation_and_checkpoint"] = timers["mlplab"].seconds["epoch"]
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"flush_denormal={default.flush_denormal}",
        "repetitions": repetitions,
        "epoch_seconds": {name: summary(values) for name, values in epochs.items()},
        "ratios": paired_ratios(epochs),
        "gflop_per_second": arithmetic_rates({**epochs, "matmul": matmuls}, len(labels)),
        "test_pass_seconds": summary(timers["mlplab"].seconds["test"]),
        "launch_to_first_step_seconds": first_step_seconds,
        "import_lightning_seconds": import_seconds("lightning"),
        "peak_memory_mib": peak_mib,
        "dataset_mib": sum(t.nbytes for split in datamodule.splits.values() for t in split) / 2**20,
    }


def run_sweeps(data_root: str, jobs: int, epochs: int, trainer: str = "default") -> dict:
    """Each launcher's sweep once, in the order of SWEEP_LAUNCHERS, and packed's ratios."""
    seconds = {
        name: timed_sweep(data_root, launcher, jobs, epochs, trainer)[0]
        for name, launcher in SWEEP_LAUNCHERS.items()
    }
    return {
        "jobs": jobs,
        "epochs": epochs,
        "seconds": seconds,
        "ratios": {
            f"packed / {name}": seconds["packed"] / seconds[name]
            for name in SWEEP_LAUNCHERS
            if name != "packed"
        },
    }


def one_by_one_against_default(data_root: str, sweeps: dict[str, list[str]]) -> dict:
    """Each of `sweeps` (name: its overrides of `python -m train -m`) one job at a time and
    then with the default launcher, launch to report, and the ratio of their totals."""
    seconds = {
        name: {
            launcher_name: timed_multirun(data_root, [*launcher, *overrides])[0]
            for launcher_name, launcher in LAUNCHERS_COMPARED.items()
        }
        for name, overrides in sweeps.items()
    }
    total = {name: sum(times[name] for times in seconds.values()) for name in LAUNCHERS_COMPARED}
    return {
        "seconds": seconds,
        "total": total,
        "default / one_by_one": total["default"] / total["one_by_one"],
    }


def run_presets(data_root: str, epochs: int | None) -> dict:
    """Each preset of conf/experiment with seed=1,2,3 (README's Results) as a sweep of its own,
    one job at a time and then with the default launcher, launch to report; then all of them
    as one sweep (hydra/sweeper=course), one job at a time and with the default launcher.
    `epochs` in place of the presets' own when given."""
    shortened = [f"trainer.max_epochs={epochs}"] if epochs else []
    sweeps = {
        preset: [f"experiment={preset}", "seed=1,2,3", *shortened] for preset in preset_names()
    }
    each = one_by_one_against_default(data_root, sweeps)
    course = ["hydra/sweeper=course", "seed=1,2,3", *shortened]
    as_one = {
        name: timed_multirun(data_root, [*launcher, *course])[0]
        for name, launcher in LAUNCHERS_COMPARED.items()
    }
    return {
        "epochs": epochs or "the presets' own",
        **each,
        "course": as_one,
        "course / one_by_one": as_one["default"] / each["total"]["one_by_one"],
    }


FIRST_SWEEP = ["activation=relu,sigmoid", "optimizer=sgd,adam"]  # README's, 15 epochs


def run_first_sweep(data_root: str) -> dict:
    """README's first sweep, one job at a time and then with the default launcher."""
    sweep = {" ".join(FIRST_SWEEP): FIRST_SWEEP}
    return {"epochs": "the default's 15", **one_by_one_against_default(data_root, sweep)}


SEARCH_MODES = {  # name: how the search's trials train
    "packed_pruned": ["hydra.sweeper.n_jobs=8"],
    "one_at_a_time": ["hydra.sweeper.n_jobs=1", "hydra/sweeper/pruner=none"],
}


def timed_search(data_root: str, overrides: list[str]) -> tuple[float, float]:
    """`python -m train hparams_search=optuna <overrides>` in a folder of its own: wall time
    from launch to its report, and the best val/acc it found."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            *(sys.executable, "-m", "train", "hparams_search=optuna", *overrides),
            f"data.root={data_root}",
            f"hydra.sweeper.storage=sqlite:///{folder}/study.db",
            f"hydra.sweep.dir={folder}/sweep",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        found = OmegaConf.load(Path(folder) / "sweep" / "optimization_results.yaml")
        return seconds, found.best["values"]["val/acc"]


def run_search(data_root: str, trials: int, epochs: int, seeds: int) -> dict:
    """The search of conf/hparams_search/optuna.yaml, `trials` trials of `epochs` epochs,
    packed and pruned against one trial at a time without pruning, for each sampler seed."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in SEARCH_MODES}
    for seed in range(1, seeds + 1):
        shared = [
            f"hydra.sweeper.n_trials={trials}",
            f"trainer.max_epochs={epochs}",
            f"hydra.sweeper.sampler.seed={seed}",
        ]
        modes = list(SEARCH_MODES.items())
        # Every other seed runs them in reverse, so neither mode always goes first.
        for name, mode in modes if seed % 2 else reversed(modes):
            runs[name].append(timed_search(data_root, [*shared, *mode]))
    seconds = {name: [wall for wall, _ in values] for name, values in runs.items()}
    best = {name: [value for _, value in values] for name, values in runs.items()}
    return {
        "trials": trials,
        "epochs": epochs,
        "seconds": seconds,
        "best_val_acc": best,
        "packed_pruned / one_at_a_time": [
            packed / alone
            for packed, alone in zip(seconds["packed_pruned"], seconds["one_at_a_time"])
        ],
    }


def run_gpu_packing(data_root: str, jobs: int, epochs: int, repetitions: int) -> dict:
    """On the GPU: one job against `jobs` seeds packed, each launch to report, alternating;
    and each one's training time (the packed group's for all its jobs)."""
    runs: dict[str, list[tuple[float, dict]]] = {"one_job": [], "packed": []}
    packed = SWEEP_LAUNCHERS["packed"]
    for _ in range(repetitions):
        runs["one_job"].append(timed_sweep(data_root, [], 1, epochs, "gpu"))
        runs["packed"].append(timed_sweep(data_root, packed, jobs, epochs, "gpu"))
    walls = {name: [wall for wall, _ in values] for name, values in runs.items()}
    return {
        "machine": f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
        "repetitions": repetitions,
        "jobs": jobs,
        "epochs": epochs,
        "seconds": {name: summary(values) for name, values in walls.items()},
        "train_seconds": {
            name: summary([metrics["train_seconds"] for _, metrics in values])
            for name, values in runs.items()
        },
        "packed / one job": summary([p / o for p, o in zip(walls["packed"], walls["one_job"])]),
    }


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}; {results['repetitions']} repetitions, median [min-max]")
    print(f"{'seconds per epoch (55,000 images)':<44} {'median':>7}  {'min-max':>13}")
    for name, value in results["epoch_seconds"].items():
        print(f"{name:<44} {value['median']:7.3f}  {value['min']:6.3f}-{value['max']:.3f}")
    print("ratios within each repetition")
    for name, ratio in results["ratios"].items():
        print(f"{name:<44} {ratio['median']:6.2f}x  {ratio['min']:5.2f}x-{ratio['max']:.2f}x")
    print(f"arithmetic: GFLOP/s of the matrix products, share of a {MATMUL_SIZE}^2 product's")
    for name, rate in results["gflop_per_second"].items():
        form = ".2f" if "/" in name else ".0f"
        print(f"{name:<44} {rate['median']:7{form}}  {rate['min']:6{form}}-{rate['max']:{form}}")
    rows = (
        ("test pass, 10,000 images (s)", results["test_pass_seconds"]["median"], ".3f"),
        ("launch to first training step (s)", results["launch_to_first_step_seconds"], ".2f"),
        ("  of which Python start + import lightning", results["import_lightning_seconds"], ".2f"),
        ("peak memory of python -m train (MiB)", results["peak_memory_mib"], ".0f"),
        ("dataset in memory, all splits (MiB)", results["dataset_mib"], ".0f"),
    )
    for label, value, form in rows:
        print(f"{label:<44} {value:7{form}}")


def print_gpu_table(results: dict) -> None:
    print(f"machine: {results['machine']}; {results['repetitions']} repetitions, median [min-max]")
    print(f"default config, {results['epochs']} epochs: launch to report / training (s)")
    jobs = results["jobs"]
    for name, label in (("one_job", "one job"), ("packed", f"{jobs} jobs packed")):
        wall, train = results["seconds"][name], results["train_seconds"][name]
        print(
            f"  {label:<30} {wall['median']:7.1f}  {wall['min']:.1f}-{wall['max']:.1f}"
            f"  {train['median']:7.1f}  {train['min']:.1f}-{train['max']:.1f}"
        )
    ratio = results["packed / one job"]
    print(
        f"  {f'{jobs} packed / one job':<30} {ratio['median']:6.2f}x"
        f"  {ratio['min']:.2f}x-{ratio['max']:.2f}x"
    )


def print_against_default(timed: dict, what: str) -> None:
    print(f"{what}, {timed['epochs']} epochs, launch to report (s)")
    print(f"  {'sweep':<40} {'one by one':>10} {'default':>8} {'ratio':>6}")
    rows = [*timed["seconds"].items(), ("total", timed["total"])]
    if "course" in timed:
        rows.append(("all as one sweep (hydra/sweeper=course)", timed["course"]))
    for name, seconds in rows:
        one, packed = seconds["one_by_one"], seconds["default"]
        print(f"  {name:<40} {one:10.1f} {packed:8.1f} {packed / one:5.2f}x")
    if "course" in timed:
        ratio = timed["course / one_by_one"]
        print(f"  {'one sweep with the default launcher / total one by one':<60} {ratio:5.2f}x")


def print_search(search: dict) -> None:
    print(f"search of {search['trials']} trials x {search['epochs']} epochs, launch to report")
    print(
        f"  {'sampler seed':<14} {'packed+pruned (s)':>18} {'one at a time (s)':>18} {'ratio':>6}"
    )
    ratios = search["packed_pruned / one_at_a_time"]
    seconds, best = search["seconds"], search["best_val_acc"]
    for seed, ratio in enumerate(ratios):
        packed, alone = seconds["packed_pruned"][seed], seconds["one_at_a_time"][seed]
        print(f"  {seed + 1:<14} {packed:18.1f} {alone:18.1f} {ratio:5.2f}x")
    for name, values in best.items():
        print(f"  best val/acc, {name:<16} " + "  ".join(f"{value:.4f}" for value in values))


def print_sweeps(sweeps: dict) -> None:
    print(f"sweep of {sweeps['jobs']} seeds x {sweeps['epochs']} epochs, launch to report (s)")
    for name, seconds in sweeps["seconds"].items():
        print(f"  {name:<42} {seconds:7.1f}")
    for name, ratio in sweeps["ratios"].items():
        print(f"  {name:<42} {ratio:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default=os.environ.get("DATA_DIR", "data"))
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("outputs/bench.json"))
    parser.add_argument("--sweep-jobs", type=int, default=8, help="0: no sweeps")
    parser.add_argument("--sweep-epochs", type=int, default=2)
    parser.add_argument(
        "--presets",
        action="store_true",
        help="only the course's presets with seed=1,2,3, one job at a time against the default",
    )
    parser.add_argument("--preset-epochs", type=int, help="in place of each preset's own")
    parser.add_argument(
        "--first-sweep",
        action="store_true",
        help="only README's first sweep, one job at a time against the default launcher",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="only the search, packed and pruned against one trial at a time, unpruned",
    )
    parser.add_argument("--search-trials", type=int, default=32)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--search-seeds", type=int, default=3, help="sampler seeds")
    parser.add_argument(
        "--gpu-packed-jobs",
        type=int,
        default=0,
        help="on a GPU, in place of the epoch table: one job against this many packed; "
        "the sweeps then train on the GPU",
    )
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.search:
        search = run_search(
            args.data_root, args.search_trials, args.search_epochs, args.search_seeds
        )
        args.output.write_text(json.dumps(search, indent=2) + "\n")
        print_search(search)
        return
    if args.presets or args.first_sweep:
        timed = (
            run_presets(args.data_root, args.preset_epochs)
            if args.presets
            else run_first_sweep(args.data_root)
        )
        args.output.write_text(json.dumps(timed, indent=2) + "\n")
        what = "presets with seed=1,2,3" if args.presets else "README's first sweep"
        print_against_default(timed, what)
        return
    if args.gpu_packed_jobs:
        results = run_gpu_packing(
            args.data_root, args.gpu_packed_jobs, args.sweep_epochs, args.repetitions
        )
        trainer = "gpu"
    else:
        # The plain loops run as in a script that never imported Lightning.
        skip_nvml_check_without_driver()
        results = run_benchmark(args.data_root, args.repetitions)
        trainer = "default"
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.sweep_jobs:
        sweeps = run_sweeps(args.data_root, args.sweep_jobs, args.sweep_epochs, trainer)
        results["sweeps"] = sweeps
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    (print_gpu_table if args.gpu_packed_jobs else print_table)(results)
    if "sweeps" in results:
        print_sweeps(results["sweeps"])


if __name__ == "__main__":
    main()
