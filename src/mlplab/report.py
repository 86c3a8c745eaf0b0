"""`python -m mlplab.report <sweep folder>`: the summary table and plots of a sweep."""

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mlplab.report", description=__doc__)
    parser.add_argument(
        "sweep_dir", type=Path, help="a multirun folder, e.g. outputs/sweeps/<time>"
    )
    sweep_dir = parser.parse_args().sweep_dir

    from mlplab import results
    from mlplab.errors import one_line_errors
    from mlplab.sweeps.summary import write_report

    with one_line_errors():
        write_report(sweep_dir)
    print((sweep_dir / results.SUMMARY_MARKDOWN).read_text(), end="")
    print(f"written to {sweep_dir}: {', '.join(results.REPORT_FILES)}")


if __name__ == "__main__":
    main()
