"""Per-class comparison of the class-biasing runs: bars per gamma pair (PNG and PDF).

    python scripts/plot_classes.py multirun/class_bias_cpu --out figures/class_bias_cpu

Reads every complete class-weighting run below the given directories (its saved config says
its gamma pair) and draws, per (gamma speech, gamma env), the mean test SI-SDRi of the speech
estimates, the environmental estimates and all of them, with the spread (std over seeds, or
over evaluation epochs for a single run) as error bars, and the paper's values as black
markers where the pair is one of the paper's. Writes ``classes.png`` and ``classes.pdf``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from ugr_experiments.analysis.figures import classes_data, classes_figure, plot_main
from ugr_experiments.analysis.runs import Run


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, draw the figure, write PNG and PDF; the exit status."""

    def draw(runs: list[Run], title: str) -> Figure | None:
        rows = classes_data(runs)
        return classes_figure(rows, title) if rows else None

    description = __doc__.splitlines()[0]
    return plot_main(
        argv, "plot_classes.py", description, "classes", draw, "no complete class-weighting run"
    )


if __name__ == "__main__":
    sys.exit(main())
