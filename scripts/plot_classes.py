"""Per-class comparison of the class-biasing runs: bars per gamma pair (PNG and PDF).

    python scripts/plot_classes.py multirun/class_bias_cpu --out figures/class_bias_cpu

Reads every complete class-weighting run below the given directories (its saved config says
its gamma pair) and draws, per (gamma speech, gamma env), the mean test SI-SDRi of the speech
estimates, the environmental estimates and all of them, with the spread (std over seeds, or
over evaluation epochs for a single run) as error bars, and the paper's values as black
markers where the pair is one of the paper's. Writes ``classes.png`` and ``classes.pdf``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ugr_experiments.figures import classes_data, classes_figure, save
from ugr_experiments.runs import load_runs


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, draw the per-class bars, write PNG and PDF; the exit status."""
    parser = argparse.ArgumentParser(prog="plot_classes.py", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--stem", default="classes", help="file name without extension")
    parser.add_argument("--title", default="", help="figure title (default: says what it shows)")
    args = parser.parse_args(argv)
    try:
        rows = classes_data(load_runs(args.dirs))
    except FileNotFoundError as err:
        sys.exit(f"plot_classes.py: {err}")
    if not rows:
        sys.exit(f"plot_classes.py: no complete class-weighting run under {args.dirs}")
    for path in save(classes_figure(rows, args.title), args.out, args.stem):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
