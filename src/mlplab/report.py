"""`python -m mlplab.report <sweep folder>`: the summary table and plots of a sweep (of each
preset's folder in a sweep of several presets)."""

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
    from mlplab.sweeps.jobs import sweep_folders
    from mlplab.sweeps.summary import write_report

    for folder in sweep_folders(sweep_dir):  # each preset's of a sweep of several
        with one_line_errors():
            write_report(folder)
        print((folder / results.SUMMARY_MARKDOWN).read_text(), end="")
        print(f"written to {folder}: {', '.join(results.REPORT_FILES)}")


if __name__ == "__main__":
    main()
