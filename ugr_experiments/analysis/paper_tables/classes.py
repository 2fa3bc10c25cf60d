"""The class-biasing table: one row per (gamma speech, gamma env) pair."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ugr_experiments.analysis import paper
from ugr_experiments.analysis.paper_tables.common import (
    SUBSETS,
    Options,
    TableOut,
    common_footer,
    paired_footer,
    paper_note,
    spread_note,
    star,
)
from ugr_experiments.analysis.report import (
    Condition,
    baseline_of,
    condition_interval,
    conditions,
    paired_comparison,
    summarize_condition,
)
from ugr_experiments.analysis.runs import Run, common_root, get
from ugr_experiments.analysis.tables import (
    MISSING,
    format_interval,
    format_spread,
)


def _class_keys(cond: Condition) -> dict[str, str]:
    """The two gamma columns of a row."""
    return {"gamma speech": f"{cond.key[0]:g}", "gamma env": f"{cond.key[1]:g}"}


def _class_row(cond: Condition, summary: Any) -> tuple[dict, dict]:
    """Numeric and cell row of our runs for one gamma pair."""
    keys = _class_keys(cond)
    numeric = {**keys, "source": "ours", "runs": summary.runs, "epochs": summary.epochs}
    cells = {**keys, "source": "ours", "runs": str(summary.runs), "epochs": f"{summary.epochs:g}"}
    for subset, head in SUBSETS:
        ok = subset in summary.mean.index
        value = summary.mean.at[subset, "mean"] if ok else np.nan
        spread = summary.spread.at[subset, "mean"] if ok else np.nan
        numeric[subset], numeric[f"{subset}_spread"] = value, spread
        cells[head] = format_spread(value, spread)
    return numeric, cells


def _class_paper_row(cond: Condition, published: dict) -> tuple[dict, dict]:
    """Numeric and cell row of the paper's numbers for one gamma pair."""
    keys = _class_keys(cond)
    numeric = {**keys, "source": "paper", "runs": np.nan, "epochs": np.nan}
    cells = {**keys, "source": "paper", "runs": MISSING, "epochs": MISSING}
    for subset, head in SUBSETS:
        value, spread = published[subset]
        numeric[subset], numeric[f"{subset}_spread"] = value, spread
        cells[head] = format_spread(value, spread, 1)
    return numeric, cells


def class_table(runs: Sequence[Run], conds: Sequence[Condition], root: Path | None) -> TableOut:
    """One row per gamma pair (ours, then the paper's): Speech, Env., Combined means."""
    numeric, cells, summaries, shown = [], [], [], False
    for cond in conds:
        summary = summarize_condition(cond)
        summaries.append(summary)
        rows = [_class_row(cond, summary)]
        published = paper.class_row(cond.key) if _is_cross(cond) else None
        if published is not None:
            shown = True
            rows.append(_class_paper_row(cond, published))
        numeric += [n for n, _ in rows]
        cells += [c for _, c in rows]
    used = [r for c in conds for r in c.runs]
    footer = " ".join(
        [
            "Mean test SI-SDRi (dB) of the speech estimates, the environmental estimates and "
            "all of them (Combined). Each mean is computed per evaluation epoch, averaged over "
            "the evaluation epochs of a run, then over the runs (seeds) of a row.",
            spread_note(summaries),
            "The paper's ± is a spread over evaluation epochs or runs (it does not say which).",
            paper_note(used, "class", shown),
            common_footer(runs, "class", used, root),
        ]
    ).strip()
    title = "Class biasing: mean test SI-SDRi (dB) per (gamma speech, gamma env)"
    return TableOut("class", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def _is_cross(cond: Condition) -> bool:
    """True when every run of the condition used speech + environmental mixtures."""
    return all(get(r.config, "dataset.name") == "cross" for r in cond.runs)


def class_interval_table(conds: Sequence[Condition], opts: Options) -> TableOut:
    """Bootstrap intervals of the three means, one row per gamma pair."""
    numeric, cells = [], []
    for cond in conds:
        n_row, c_row = dict(_class_keys(cond)), dict(_class_keys(cond))
        for subset, head in SUBSETS:
            group = None if subset == "all" else subset
            est, low, high = condition_interval(cond, group, opts.n_boot, opts.level, opts.seed)
            n_row.update({subset: est[0], f"{subset}_low": low[0], f"{subset}_high": high[0]})
            c_row[head] = format_interval(est[0], low[0], high[0])
        numeric.append(n_row)
        cells.append(c_row)
    footer = (
        f"Mean [{100 * opts.level:g}% percentile bootstrap interval] per subset, from "
        f"{opts.n_boot} resamplings of each run's test items (each keeping its evaluation "
        "epochs); the intervals reflect the finite test set, not training-run variation."
    )
    title = "Class biasing with bootstrap intervals"
    return TableOut("class_ci", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def class_paired_table(conds: Sequence[Condition], opts: Options) -> TableOut | None:
    """Each gamma pair minus (0, 0) per subset, on shared test items."""
    base = baseline_of(conds)
    if base is None or len(conds) < 2:
        return None
    numeric, cells, notes = [], [], []
    for cond in conds:
        if cond is base:
            continue
        n_row: dict[str, Any] = dict(_class_keys(cond))
        c_row = dict(_class_keys(cond))
        for subset, head in SUBSETS:
            group = None if subset == "all" else subset
            res = paired_comparison(cond, base, group, opts.n_boot, opts.level, opts.seed)
            if res is None:
                break
            d, lo, hi = res.difference[0], res.low[0], res.high[0]
            n_row.update({f"d_{subset}": d, f"d_{subset}_low": lo, f"d_{subset}_high": hi})
            n_row[f"p_{subset}"] = res.p_mean
            c_row[f"Δ{head}"] = format_interval(d, lo, hi) + star(lo, hi)
            c_row[f"p {head}"] = f"{res.p_mean:.3g}"
        else:
            assert res is not None  # no break: every subset was paired
            n_row["seeds"], c_row["seeds"] = len(res.seeds), str(len(res.seeds))
            numeric.append(n_row)
            cells.append(c_row)
            notes += [f"{cond.label}, {s}" for s in res.skipped]
            continue
        notes.append(f"{cond.label}: no seed shares its test items with the baseline")
    if not numeric:
        return None
    footer = paired_footer(opts, f"(gamma speech, gamma env) = {base.label}", notes, False)
    title = "Class biasing: each gamma pair against (0, 0)"
    return TableOut("class_paired", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def class_tables(runs: Sequence[Run], opts: Options) -> list[TableOut]:
    """The class table with its intervals and paired comparisons (empty without class runs)."""
    conds = conditions(runs, "class")
    if not conds:
        return []
    out = [class_table(runs, conds, common_root(runs)), class_interval_table(conds, opts)]
    paired = class_paired_table(conds, opts)
    return out + ([paired] if paired else [])
