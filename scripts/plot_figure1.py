"""Figure 1 of the paper: log-scale density of test SI-SDRi per alpha (PNG and PDF).

    python scripts/plot_figure1.py multirun/robust_esc50_cpu --out figures/robust_esc50_cpu

Reads every complete robust run below the given directories (its saved config says its
alpha); pools the test SI-SDRi of all source estimates over evaluation epochs and seeds, and
draws a Gaussian kernel density estimate per alpha on a log scale. Writes ``figure1.png``
and ``figure1.pdf`` in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ugr_experiments.figures import figure1, figure1_data, save
from ugr_experiments.runs import load_runs


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, draw Figure 1, write PNG and PDF; the exit status."""
    parser = argparse.ArgumentParser(prog="plot_figure1.py", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--stem", default="figure1", help="file name without extension")
    parser.add_argument("--title", default="", help="figure title (default: says what it shows)")
    args = parser.parse_args(argv)
    try:
        values = figure1_data(load_runs(args.dirs))
    except FileNotFoundError as err:
        sys.exit(f"plot_figure1.py: {err}")
    if not values:
        sys.exit(f"plot_figure1.py: no complete robust (or uniform) run under {args.dirs}")
    for path in save(figure1(values, args.title), args.out, args.stem):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
