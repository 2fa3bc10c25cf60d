"""The columns of an SI-SDRi statistics table and their definitions (tables.py, writers.py).

A table has one row per subset (``all``, then every group, sorted) and the columns
``n, mean, std, q1 ... q99, epochs``; :data:`FOOTER` defines them.
"""

from __future__ import annotations

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
STAT_COLUMNS = ("mean", "std") + tuple(f"q{q}" for q in PERCENTILES)
ALL = "all"
INDEX_NAME = "subset"

FOOTER = (
    "Rows: all source estimates (`all`), then each group. n: number of source estimates "
    "per evaluation epoch. std: population standard deviation (ddof=0). qX: X-th "
    "percentile, numpy's default (linear interpolation). With several evaluation epochs, "
    "every statistic is computed per epoch and then averaged over the epochs (the "
    "`epochs` column). SI-SDRi is computed per example: SI-SDR of the PIT-aligned "
    "estimate minus SI-SDR of that example's mixture, in dB."
)
