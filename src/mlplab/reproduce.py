"""`python -m mlplab.reproduce`: the course's presets, 3 seeds each, and the page of results.

Runs every preset of conf/experiment/ with seed=1,2,3 as one sweep (`python -m train -m
hydra/sweeper=course seed=1,2,3`: jobs of different presets pack together; a new folder under
outputs/reproduce/ with one folder per preset), then writes docs/results.md:
for each preset what it trains and what the course printed (the preset's own header
comment), the sweep report's table, and its plots, copied beside the page; and the machine,
versions and date it ran on. Extra arguments are overrides for every sweep
(`trainer.max_epochs=2` for a quick look).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from mlplab.config.presets import description, preset_file, preset_names
from mlplab.errors import one_line_errors

PLOTS = ("val_acc.png", "train_loss.png", "grad_norms.png", "test_acc_vs_compute.png")


def machine() -> str:
    """The CPU (and GPU) the sweeps ran on, and the versions that trained them."""
    import lightning
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, lightning {lightning.__version__}"
    )


def run_course(names: list[str], seeds: str, sweep_dir: Path, overrides: list[str]) -> None:
    """The presets' sweeps as one (hydra/sweeper=course), its output kept in sweep_dir.log; a
    failed sweep stops here."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "train", "-m", "hydra/sweeper=course", f"seed={seeds}"]
    command += [f"hydra.sweeper.presets=[{','.join(names)}]", *overrides]
    command += [f"hydra.sweep.dir={sweep_dir}"]
    print(" ".join(command[1:]), flush=True)
    with sweep_dir.with_suffix(".log").open("w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise SystemExit(f"the sweep failed: see {sweep_dir.with_suffix('.log')}")


def section(preset: str, sweep_dir: Path, page: Path) -> list[str]:
    """The page's section of a preset: description, table, plots (copied beside the page)."""
    from mlplab import results

    figures = page.with_suffix("")  # docs/results/ beside docs/results.md
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"## {preset}", "", description(preset), ""]
    lines += [(sweep_dir / results.SUMMARY_MARKDOWN).read_text().rstrip(), ""]
    for plot in PLOTS:
        copy = figures / f"{preset}_{plot}"
        if (sweep_dir / plot).exists():
            shutil.copyfile(sweep_dir / plot, copy)
            lines.append(f"![{preset}: {plot.removesuffix('.png')}]({figures.name}/{copy.name})")
        else:  # a plot an earlier run drew and this one did not
            copy.unlink(missing_ok=True)
    return [*lines, ""]


def write_page(page: Path, names: list[str], sweeps: Path, seeds: str, overrides: list[str]):
    when = datetime.date.today().isoformat()
    settings = " ".join(overrides) if overrides else "each preset's own settings"
    lines = [
        "# Results",
        "",
        f"Written by `python -m mlplab.reproduce` on {when}, on {machine()}: every preset of "
        f"`conf/experiment/` with seeds {seeds.replace(',', ', ')}, {settings}. Each table is "
        "the preset's sweep report (mean ± std over the seeds); the text above it is the "
        "preset's own description with the numbers the course printed. Run the same command "
        "to regenerate this page.",
        "",
    ]
    for preset in names:
        lines += section(preset, sweeps / preset, page)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlplab.reproduce", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="for every sweep, such as data.root=...")
    parser.add_argument("--presets", help="comma-separated (default: every preset)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--sweeps", type=Path, default=Path("outputs/reproduce"))
    parser.add_argument("--output", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args(arguments)
    names = args.presets.split(",") if args.presets else preset_names()
    with one_line_errors():
        for name in names:
            preset_file(name)  # a preset that does not exist stops here, before any sweep
    sweep_dir = args.sweeps / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_course(names, args.seeds, sweep_dir, args.overrides)
    write_page(args.output, names, sweep_dir, args.seeds, args.overrides)
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
