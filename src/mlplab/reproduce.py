"""`python -m mlplab.reproduce`: the course's presets, 3 seeds each, and the page of results.

Runs `python -m train -m experiment=<preset> seed=1,2,3` for every preset of
conf/experiment/ (each a sweep folder under outputs/reproduce/), then writes docs/results.md:
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

from mlplab.config.compose import CONF

PLOTS = ("val_acc.png", "train_loss.png", "grad_norms.png", "test_acc_vs_compute.png")


def presets() -> list[str]:
    return sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))


def description(preset: str) -> str:
    """The preset's header comment: what it trains and what the course printed."""
    lines = (CONF / "experiment" / f"{preset}.yaml").read_text().splitlines()
    comment = [line[1:].strip() for line in lines if line.startswith("#")]
    return " ".join(line for line in comment if line and not line.startswith("@package"))


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


def run_preset(preset: str, seeds: str, sweep_dir: Path, overrides: list[str]) -> None:
    """The preset's sweep, its output kept in sweep_dir.log; a failed sweep stops here."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "train", "-m", f"experiment={preset}", f"seed={seeds}"]
    command += [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    print(" ".join(command[1:]), flush=True)
    with sweep_dir.with_suffix(".log").open("w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise SystemExit(f"{preset} failed: see {sweep_dir.with_suffix('.log')}")


def section(preset: str, sweep_dir: Path, page: Path) -> list[str]:
    """The page's section of a preset: description, table, plots (copied beside the page)."""
    from mlplab import results

    figures = page.with_suffix("")  # docs/results/ beside docs/results.md
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"## {preset}", "", description(preset), ""]
    lines += [(sweep_dir / results.SUMMARY_MARKDOWN).read_text().rstrip(), ""]
    for plot in PLOTS:
        if (sweep_dir / plot).exists():
            copy = figures / f"{preset}_{plot}"
            shutil.copyfile(sweep_dir / plot, copy)
            lines.append(f"![{preset}: {plot.removesuffix('.png')}]({figures.name}/{copy.name})")
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
    names = args.presets.split(",") if args.presets else presets()
    unknown = sorted(set(names) - set(presets()))
    if unknown:
        raise SystemExit(f"no preset {', '.join(unknown)}; choose from {', '.join(presets())}")
    for preset in names:
        run_preset(preset, args.seeds, args.sweeps / preset, args.overrides)
    write_page(args.output, names, args.sweeps, args.seeds, args.overrides)
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
