"""Curriculum convergence curves: validation SI-SDRi against training steps (PNG and PDF).

    python scripts/plot_curriculum.py multirun/curriculum_cpu --out figures/curriculum_cpu

Reads ``history.csv`` of every complete curriculum-experiment run below the given directories
(the saved config says its schedule: uniform or easy-first) and draws one colour per
schedule: a thin line per seed, a thick line for their mean. The levels of the curriculum
table (``--levels``, default: 50%, 80% and 95% of the way from the uniform runs' first to
their best validation SI-SDRi) are dotted, the step where each curriculum reaches uniform
weighting dashed. Writes ``curriculum.png`` and ``.pdf``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ugr_experiments.analysis.figures import (
    curriculum_data,
    curriculum_ends,
    curriculum_figure,
    save,
)
from ugr_experiments.analysis.report import auto_levels, baseline_of, conditions
from ugr_experiments.analysis.runs import load_runs


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, draw the convergence curves, write PNG and PDF; the exit status."""
    parser = argparse.ArgumentParser(prog="plot_curriculum.py", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--stem", default="curriculum", help="file name without extension")
    parser.add_argument("--levels", type=float, nargs="*", help="levels to mark (dB)")
    parser.add_argument("--x", choices=["step", "epoch"], default="step", help="x axis")
    parser.add_argument("--title", default="", help="figure title (default: says what it shows)")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.dirs)
    except FileNotFoundError as err:
        sys.exit(f"plot_curriculum.py: {err}")
    curves = curriculum_data(runs)
    if not curves:
        sys.exit(f"plot_curriculum.py: no complete curriculum-experiment run under {args.dirs}")
    levels = args.levels
    if levels is None:
        conds = [c for c in conditions(runs, "curriculum") if c.label in curves]
        levels = auto_levels(baseline_of(conds) or conds[0])
    fig = curriculum_figure(curves, args.title, levels, args.x, curriculum_ends(runs))
    for path in save(fig, args.out, args.stem):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
