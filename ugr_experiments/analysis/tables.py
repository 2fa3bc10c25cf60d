"""SI-SDRi statistics tables: per-epoch statistics and averaging (writers.py renders them).

Input is ``per_source_sisdri.csv`` (one row per evaluation epoch x mixture x source, columns
``epoch, mixture, source, class, group, file, offset, snr_db, sisdr, input_sisdr, sisdri``).
A table has one row per subset (``all``, then every group, sorted) and the columns
``n, mean, std, q1 ... q99, epochs``. The definitions are in :data:`FOOTER`.

Aggregation over evaluation epochs, seeds or anything else is one operation,
:func:`combine`: each statistic is averaged over the tables, and its spread is the
population std across them (what the paper's "12.2 +- 0.1" reports).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ugr_experiments.analysis.columns import ALL, FOOTER, INDEX_NAME, PERCENTILES, STAT_COLUMNS

# The writers live in writers.py; re-exported here, where the training loop, evaluate.py and
# make_tables.py have always imported them from.
from ugr_experiments.analysis.writers import (
    MISSING,
    cells_to_latex,
    cells_to_markdown,
    format_interval,
    format_spread,
    format_value,
    to_latex,
    to_markdown,
    write_cells,
    write_table,
)

__all__ = [
    "ALL",
    "FOOTER",
    "INDEX_NAME",
    "MISSING",
    "PERCENTILES",
    "STAT_COLUMNS",
    "cells_to_latex",
    "cells_to_markdown",
    "combine",
    "format_interval",
    "format_spread",
    "format_value",
    "spread_footer",
    "summarize",
    "summarize_epochs",
    "summarize_spread",
    "summarize_values",
    "to_latex",
    "to_markdown",
    "write_cells",
    "write_table",
]


def spread_footer(over: str) -> str:
    """The footer sentence for ``mean +- spread`` cells, e.g. ``spread_footer("seeds")``."""
    return (
        f"Cells read `mean ± spread`: each statistic is averaged over {over}, and the spread "
        f"is the population standard deviation (ddof=0) of that statistic across {over}."
    )


def summarize_values(values: np.ndarray) -> dict[str, float]:
    """``n``, ``mean``, population ``std`` and the :data:`PERCENTILES` of one set of values.

    Non-finite values are kept (and show up as NaN statistics) rather than silently dropped.

    Shape:
        values (N,) -> dict of scalars.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("cannot summarise an empty set of values")
    quantiles = np.percentile(values, PERCENTILES)
    stats = {"n": float(values.size), "mean": float(values.mean()), "std": float(values.std())}
    stats.update({f"q{q}": float(v) for q, v in zip(PERCENTILES, quantiles, strict=True)})
    return stats


def _order(index: Sequence[str]) -> list[str]:
    """``all`` first, then the other subsets sorted."""
    others = sorted(str(name) for name in index if name != ALL)
    return ([ALL] if ALL in index else []) + others


def _one_table(rows: pd.DataFrame, value: str, by: str | None) -> pd.DataFrame:
    """Statistics of ``rows[value]`` for all rows and per ``rows[by]``, with no averaging."""
    stats = {ALL: summarize_values(rows[value].to_numpy())}
    if by is not None:
        for name, part in rows.groupby(by, sort=True):
            if str(name) == ALL:
                raise ValueError(f"a {by} may not be called {ALL!r}: it names the overall row")
            stats[str(name)] = summarize_values(part[value].to_numpy())
    table = pd.DataFrame.from_dict(stats, orient="index")
    table.index.name = INDEX_NAME
    return table


def _check_rows(rows: pd.DataFrame, value: str, by: str | None) -> None:
    if len(rows) == 0:
        raise ValueError("no rows to summarise: is per_source_sisdri.csv empty?")
    for column in [value] + ([by] if by is not None else []):
        if column not in rows.columns:
            raise ValueError(
                f"column {column!r} not in the rows; available: {list(rows.columns)} "
                "(pass value=/by= with one of them)"
            )


def summarize_epochs(
    rows: pd.DataFrame, value: str = "sisdri", by: str | None = "group"
) -> list[pd.DataFrame]:
    """One statistics table per evaluation epoch (a single table without an ``epoch`` column).

    Shape:
        rows (R rows) -> list over epochs of tables (subsets x [n, mean, std, q1 ... q99]).
    """
    _check_rows(rows, value, by)
    if "epoch" not in rows.columns:
        return [_one_table(rows, value, by)]
    return [_one_table(part, value, by) for _, part in rows.groupby("epoch", sort=True)]


def combine(
    tables: Sequence[pd.DataFrame], count: str = "epochs"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Average statistics tables (over epochs, seeds, ...) and measure their spread.

    Every numeric column is averaged over the tables holding that subset; the spread is the
    population std (ddof=0) across them (0 for a single table). A column ``count`` says how
    many tables were combined for each subset.

    Returns:
        ``(mean, spread)``, both indexed ``all`` then the subsets sorted; ``spread`` has the
        statistic columns (mean, std, percentiles) and ``count`` only.
    """
    if not tables:
        raise ValueError("combine needs at least one table")
    stacked = pd.concat(list(tables), keys=range(len(tables)), names=["_table", INDEX_NAME])
    grouped = stacked.groupby(level=INDEX_NAME, sort=False)
    mean = grouped.mean()
    spread = grouped.std(ddof=0)[[c for c in STAT_COLUMNS if c in stacked.columns]]
    order = _order(list(mean.index))
    mean, spread = mean.loc[order], spread.loc[order]
    counts = grouped.size().loc[order]
    mean[count] = counts
    spread[count] = counts
    return mean, spread


def summarize(rows: pd.DataFrame, value: str = "sisdri", by: str | None = "group") -> pd.DataFrame:
    """The statistics table of a ``per_source_sisdri.csv``: per epoch, then averaged.

    Args:
        rows: one row per (epoch, mixture, source); ``epoch`` and ``by`` columns optional.
        value: the column to summarise.
        by: the column defining the per-subset rows (``group``; ``class`` also works), or None
            for the ``all`` row only.

    Returns:
        Index ``all`` then each ``by`` value sorted; columns ``n`` (items per epoch, averaged),
        ``mean``, ``std`` (ddof=0), ``q1`` ... ``q99`` (numpy linear), ``epochs``.
    """
    return combine(summarize_epochs(rows, value, by), count="epochs")[0]


def summarize_spread(
    rows: pd.DataFrame, value: str = "sisdri", by: str | None = "group"
) -> pd.DataFrame:
    """The std across evaluation epochs (ddof=0) of each statistic of :func:`summarize`."""
    return combine(summarize_epochs(rows, value, by), count="epochs")[1]
