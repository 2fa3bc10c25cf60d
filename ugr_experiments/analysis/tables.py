"""SI-SDRi statistics tables: per-epoch statistics, averaging, CSV / Markdown / LaTeX.

Input is ``per_source_sisdri.csv`` (one row per evaluation epoch x mixture x source, columns
``epoch, mixture, source, class, group, file, offset, snr_db, sisdr, input_sisdr, sisdri``).
A table has one row per subset (``all``, then every group, sorted) and the columns
``n, mean, std, q1 ... q99, epochs``. The definitions are in :data:`FOOTER`.

Aggregation over evaluation epochs, seeds or anything else is one operation,
:func:`combine`: each statistic is averaged over the tables, and its spread is the
population std across them (what the paper's "12.2 +- 0.1" reports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FOOTER",
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


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _format_number(x: float, column: str) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if column not in STAT_COLUMNS and float(x).is_integer():
        return str(int(x))  # counts (n, epochs) read better without decimals
    return f"{x:.2f}"


def _cells(df: pd.DataFrame, spread: pd.DataFrame | None) -> pd.DataFrame:
    """The table as string cells, its index as the first column; ``mean ± spread`` where a
    spread is given (the form :func:`cells_to_markdown` and :func:`cells_to_latex` print)."""
    rows = []
    for name in df.index:
        row = [str(name)]
        for column in df.columns:
            cell = _format_number(df.at[name, column], column)
            if spread is not None and column in STAT_COLUMNS and column in spread.columns:
                cell += f" ± {_format_number(spread.at[name, column], column)}"
            row.append(cell)
        rows.append(row)
    header = [df.index.name or INDEX_NAME] + [str(c) for c in df.columns]
    return pd.DataFrame(rows, columns=header)


def to_markdown(
    df: pd.DataFrame, title: str, footer: str = FOOTER, spread: pd.DataFrame | None = None
) -> str:
    """A GitHub-flavoured Markdown table with a ``###`` title and the footer below.

    Numbers have 2 decimals (counts none); with ``spread``, cells read ``mean ± spread``.
    """
    return cells_to_markdown(_cells(df, spread), title, footer)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, caption: str, spread: pd.DataFrame | None = None) -> str:
    """A ``table`` environment with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``).

    Numbers have 2 decimals (counts none); with ``spread``, cells read ``mean $\\pm$ spread``.
    """
    return cells_to_latex(_cells(df, spread), caption)


def write_table(
    df: pd.DataFrame,
    out_dir: Path,
    stem: str = "sisdri_table",
    title: str = "Test SI-SDRi (dB)",
    footer: str = FOOTER,
    spread: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``<stem>.csv`` (full precision), ``<stem>.md`` and ``<stem>.tex`` (2 decimals).

    With ``spread``, the CSV gets a ``<column>_spread`` column after each statistic column
    and the Markdown / LaTeX cells read ``mean ± spread`` (add :func:`spread_footer` to the
    footer to say across what).

    Returns:
        The three paths, in that order.
    """
    csv_table = df.copy()
    if spread is not None:
        for column in [c for c in STAT_COLUMNS if c in spread.columns]:
            csv_table.insert(
                csv_table.columns.get_loc(column) + 1, f"{column}_spread", spread[column]
            )
    csv_table = csv_table.rename_axis(df.index.name or INDEX_NAME).reset_index()
    return write_cells(csv_table, _cells(df, spread), out_dir, stem, title, footer)


# ---------------------------------------------------------------------------------------------
# Tables of preformatted cells (make_tables.py: mean ± spread, intervals, paper rows)
# ---------------------------------------------------------------------------------------------

MISSING = "—"


def format_value(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; None or NaN (nothing to show) as an em dash."""
    if x is None or math.isnan(float(x)):
        return MISSING
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def format_spread(value: float, spread: float | None, digits: int = 2) -> str:
    """``"12.20 ± 0.14"``; the value alone where the spread is missing (None or NaN)."""
    text = format_value(value, digits)
    if spread is None or math.isnan(float(spread)):
        return text
    return f"{text} ± {format_value(spread, digits)}"


def format_interval(value: float, low: float, high: float, digits: int = 2) -> str:
    """``"4.61 [4.40, 4.83]"``: an estimate and its interval."""
    return (
        f"{format_value(value, digits)} [{format_value(low, digits)}, {format_value(high, digits)}]"
    )


def cells_to_markdown(cells: pd.DataFrame, title: str = "", footer: str = "") -> str:
    """A Markdown table of preformatted string cells (the index is not printed).

    The first column is left-aligned, the others right-aligned; ``title`` becomes a ``###``
    heading and ``footer`` a paragraph below the table.
    """
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(str(c) for c in cells.columns) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(cells.columns) - 1)) + "|")
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in cells.to_numpy()]
    if footer:
        lines += ["", footer]
    return "\n".join(lines) + "\n"


def _latex_cell(text: str) -> str:
    escaped = _latex_escape(str(text))
    return escaped.replace("±", r"$\pm$").replace(MISSING, "--").replace("Δ", r"$\Delta$")


def cells_to_latex(cells: pd.DataFrame, caption: str, footer: str = "") -> str:
    """A booktabs ``table`` of preformatted string cells; ``footer`` goes under the tabular."""
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_cell(caption)}}}",
        r"\begin{tabular}{l" + "r" * (len(cells.columns) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_cell(c) for c in cells.columns) + r" \\",
        r"\midrule",
        *[" & ".join(_latex_cell(v) for v in row) + r" \\" for row in cells.to_numpy()],
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if footer:
        lines.append(r"\par\smallskip\footnotesize " + _latex_cell(footer))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_cells(
    numeric: pd.DataFrame,
    cells: pd.DataFrame,
    out_dir: Path,
    stem: str,
    title: str,
    footer: str = "",
) -> list[Path]:
    """Write ``<stem>.csv`` (``numeric``, full precision), ``<stem>.md`` and ``<stem>.tex``.

    Returns:
        The three paths, in that order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    numeric.to_csv(paths[0], index=False, float_format="%.17g")
    paths[1].write_text(cells_to_markdown(cells, title, footer), encoding="utf-8")
    paths[2].write_text(cells_to_latex(cells, title, footer), encoding="utf-8")
    return paths
