"""Table 1 (robust weighting): one row per alpha, with intervals and paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ugr_experiments.analysis import paper
from ugr_experiments.analysis.paper_tables.common import (
    DEFINITIONS,
    STAT_HEADERS,
    Options,
    TableOut,
    common_footer,
    paired_table,
    paper_note,
    spread_note,
)
from ugr_experiments.analysis.report import (
    Condition,
    condition_interval,
    conditions,
    summarize_condition,
)
from ugr_experiments.analysis.runs import Run, common_root, get
from ugr_experiments.analysis.tables import (
    MISSING,
    STAT_COLUMNS,
    format_interval,
    format_spread,
    format_value,
)

# The paper's test set: two source estimates per test mixture of its setting (PAPER.md 4).
PAPER_N = 2 * paper.SETTING["dataset.n_test"]


def ours_row(cond: Condition, summary: Any, key_cols: dict[str, Any]) -> tuple[dict, dict]:
    """Numeric and cell row of our runs for one alpha (all estimates)."""
    n = float(summary.mean.at["all", "n"])  # test source estimates per evaluation epoch
    numeric = {**key_cols, "source": "ours", "runs": summary.runs, "epochs": summary.epochs}
    numeric["n"] = n
    cells = {**key_cols, "source": "ours", "runs": str(summary.runs)}
    cells["epochs"], cells["n"] = f"{summary.epochs:g}", f"{n:g}"
    for col, head in zip(STAT_COLUMNS, STAT_HEADERS, strict=True):
        value, spread = summary.mean.at["all", col], summary.spread.at["all", col]
        numeric[col], numeric[f"{col}_spread"] = value, spread
        cells[head] = format_spread(value, spread)
    return numeric, cells


def _paper_row(values: Sequence[float], key_cols: dict[str, Any]) -> tuple[dict, dict]:
    """Numeric and cell row of the paper's Table 1 for one alpha."""
    numeric = {**key_cols, "source": "paper", "runs": np.nan, "epochs": 10, "n": PAPER_N}
    cells = {**key_cols, "source": "paper", "runs": MISSING, "epochs": "10", "n": f"{PAPER_N}"}
    for col, head, value in zip(STAT_COLUMNS, STAT_HEADERS, values, strict=True):
        numeric[col], numeric[f"{col}_spread"] = value, np.nan
        cells[head] = format_value(value, 1)
    return numeric, cells


def table1(runs: Sequence[Run], conds: Sequence[Condition], root: Path | None) -> TableOut:
    """Table 1's layout: one row per alpha (ours, then the paper's where it has that alpha)."""
    numeric, cells, summaries, shown = [], [], [], False
    for cond in conds:
        summary = summarize_condition(cond)
        summaries.append(summary)
        n, c = ours_row(cond, summary, {"alpha": cond.label})
        numeric.append(n)
        cells.append(c)
        published = paper.table1_row(cond.key) if _is_esc50(cond) else None
        if published is not None:
            shown = True
            n, c = _paper_row(published, {"alpha": cond.label})
            numeric.append(n)
            cells.append(c)
    used = [r for c in conds for r in c.runs]
    footer = " ".join(
        [DEFINITIONS, spread_note(summaries), paper_note(used, "robust", shown)]
        + [common_footer(runs, "robust", used, root)]
    ).strip()
    title = "Table 1: robust weighting, test SI-SDRi (dB) per alpha"
    return TableOut("table1", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def _is_esc50(cond: Condition) -> bool:
    """True when every run of the condition used ESC-50 mixtures."""
    return all(get(r.config, "dataset.name") == "esc50" for r in cond.runs)


def interval_table(
    conds: Sequence[Condition], key_name: str, opts: Options, stem: str, title: str
) -> TableOut:
    """Bootstrap intervals of every statistic of the ``all`` subset, one row per condition."""
    numeric, cells = [], []
    for cond in conds:
        est, low, high = condition_interval(cond, None, opts.n_boot, opts.level, opts.seed)
        n_row, c_row = {key_name: cond.label, "runs": len(cond.runs)}, {key_name: cond.label}
        for i, (col, head) in enumerate(zip(STAT_COLUMNS, STAT_HEADERS, strict=True)):
            n_row.update({col: est[i], f"{col}_low": low[i], f"{col}_high": high[i]})
            c_row[head] = format_interval(est[i], low[i], high[i])
        numeric.append(n_row)
        cells.append(c_row)
    footer = (
        f"Estimate [{100 * opts.level:g}% percentile bootstrap interval] of each statistic "
        f"of Table 1, from {opts.n_boot} resamplings of the test items (mixture, source) of "
        "every run, each item keeping its evaluation epochs; each run (seed) is resampled on "
        "its own. The test mixtures are the same for every seed (drawn from "
        "`dataset.eval_seed`), so seed spreads measure training variance only. The intervals "
        "reflect the finite test set, "
        "not the variation between training runs (see ± in the main table)."
    )
    return TableOut(stem, title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def robust_tables(runs: Sequence[Run], opts: Options) -> list[TableOut]:
    """Table 1 with its intervals and paired comparisons (empty without robust runs)."""
    conds = conditions(runs, "robust")
    if not conds:
        return []
    root = common_root(runs)
    out = [
        table1(runs, conds, root),
        interval_table(conds, "alpha", opts, "table1_ci", "Table 1 with bootstrap intervals"),
    ]
    paired = paired_table(conds, "alpha", opts, "table1_paired", "Each alpha against alpha = 0")
    return out + ([paired] if paired else [])
