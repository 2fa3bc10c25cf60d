"""Figure 1 of the paper: log-scale density of test SI-SDRi per alpha (PNG and PDF).

    python scripts/plot_figure1.py multirun/robust_esc50_cpu --out figures/robust_esc50_cpu

Reads every complete robust run below the given directories (its saved config says its
alpha); pools the test SI-SDRi of all source estimates over evaluation epochs and seeds, and
draws a Gaussian kernel density estimate per alpha on a log scale. Writes ``figure1.png``
and ``figure1.pdf`` in ``--out``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from ugr_experiments.analysis.figures import figure1, figure1_data, plot_main
from ugr_experiments.analysis.runs import Run


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, draw the figure, write PNG and PDF; the exit status."""

    def draw(runs: list[Run], title: str) -> Figure | None:
        values = figure1_data(runs)
        return figure1(values, title) if values else None

    description = __doc__.splitlines()[0]
    return plot_main(
        argv, "plot_figure1.py", description, "figure1", draw, "no complete robust (or uniform) run"
    )


if __name__ == "__main__":
    sys.exit(main())
