"""`python -m report <sweep folder>`: summary.csv, summary.md and plots of a sweep."""

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "sweep_dir", type=Path, help="a multirun folder, e.g. outputs/sweeps/<time>"
    )
    sweep_dir = parser.parse_args().sweep_dir
    if not any(sweep_dir.glob("*/.hydra/overrides.yaml")):
        sys.exit(
            f"error: {sweep_dir} holds no runs (no */.hydra/overrides.yaml): give a sweep folder"
        )

    from mlplab.report import write_report

    write_report(sweep_dir)
    print((sweep_dir / "summary.md").read_text(), end="")
    plots = "val_acc.png, train_loss.png, grad_norms.png"
    print(f"written to {sweep_dir}: summary.csv, summary.md, {plots}")


if __name__ == "__main__":
    main()
