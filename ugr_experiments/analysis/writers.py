"""Writers of tables: string cells, Markdown, LaTeX (booktabs) and CSV files.

Two kinds of input: a numeric statistics table (``tables.summarize``; :func:`to_markdown`,
:func:`to_latex`, :func:`write_table`), and a frame of preformatted string cells built by
``make_tables.py`` (mean ± spread, intervals, paper rows; :func:`cells_to_markdown`,
:func:`cells_to_latex`, :func:`write_cells`). Footers are written in Markdown; in LaTeX,
```code``` spans become ``\\texttt{code}``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import cast

import pandas as pd

from ugr_experiments.analysis.columns import FOOTER, INDEX_NAME, STAT_COLUMNS

__all__ = [
    "MISSING",
    "cells_to_latex",
    "cells_to_markdown",
    "format_interval",
    "format_spread",
    "format_value",
    "to_latex",
    "to_markdown",
    "write_cells",
    "write_table",
]


def _number_at(df: pd.DataFrame, name: object, column: object) -> float:
    """The cell ``df.at[name, column]`` of a numeric table (pandas-stubs type ``.at`` as any
    scalar, since the column dtypes are only known at run time)."""
    return cast(float, df.at[name, column])


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
            cell = _format_number(_number_at(df, name, column), column)
            if spread is not None and column in STAT_COLUMNS and column in spread.columns:
                cell += f" ± {_format_number(_number_at(spread, name, column), column)}"
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
    "`": r"\textasciigrave{}",  # a lone backtick (pairs are code spans: _latex_cell)
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
            position = csv_table.columns.get_loc(column)
            assert isinstance(position, int)  # column labels are unique: one position
            csv_table.insert(position + 1, f"{column}_spread", spread[column])
    # pandas accepts any hashable axis name; pandas-stubs ask for a str.
    index_name = cast(str, df.index.name or INDEX_NAME)
    csv_table = csv_table.rename_axis(index_name).reset_index()
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


# A Markdown code span: `text` (no backtick inside).
_CODE_SPAN = re.compile(r"`([^`]*)`")


def _latex_text(text: str) -> str:
    """Plain text (no code spans) escaped for LaTeX, with ±, — and Δ as LaTeX."""
    escaped = _latex_escape(text)
    return escaped.replace("±", r"$\pm$").replace(MISSING, "--").replace("Δ", r"$\Delta$")


def _latex_cell(text: str) -> str:
    """A cell, caption or footer for LaTeX: Markdown code spans become ``\\texttt{...}``."""
    parts = _CODE_SPAN.split(str(text))  # even: plain text, odd: inside backticks
    return "".join(
        rf"\texttt{{{_latex_text(part)}}}" if i % 2 else _latex_text(part)
        for i, part in enumerate(parts)
    )


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
