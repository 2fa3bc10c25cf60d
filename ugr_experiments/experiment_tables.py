"""The paper's tables from run directories: Table 1, the class table, the curriculum table.

Each builder takes loaded runs (``ugr_experiments.runs``) and returns :class:`TableOut`
objects (a numeric frame for the CSV, a frame of formatted cells for Markdown / LaTeX, a
title and a footer that states the protocol). ``scripts/make_tables.py`` writes them.

- Table 1 layout (robust): one row per alpha, mean, std and the 1 ... 99 percentiles;
  ``table1_ci``: bootstrap intervals of each; ``table1_paired``: every alpha minus alpha 0.
- Class table: one row per (gamma speech, gamma env) pair, speech / environmental /
  combined mean; ``class_ci`` and ``class_paired`` likewise.
- Curriculum table: steps to reach validation SI-SDRi levels per schedule;
  ``curriculum_paired``: easy-first minus uniform on the test items.
- ``runs``: every run found, with its status (complete, failed, incomplete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ugr_experiments import paper
from ugr_experiments.report import (
    KEYS,
    Condition,
    Paired,
    auto_levels,
    baseline_of,
    condition_interval,
    conditions,
    first_reach,
    kind_of,
    paired_comparison,
    summarize_condition,
)
from ugr_experiments.runs import Run, common_root, get, short_name, wall_seconds
from ugr_experiments.tables import (
    MISSING,
    PERCENTILES,
    STAT_COLUMNS,
    format_interval,
    format_spread,
    format_value,
    write_cells,
)

STAT_HEADERS = ["mean", "std"] + [str(q) for q in PERCENTILES]
SUBSETS = (("speech", "Speech"), ("environmental", "Env."), ("all", "Combined"))
# Config keys that are expected to differ between the runs of one table.
_VARYING = ("seed", "alpha", "weighting", "gamma_pair", "gamma_pairs", "schedule", "schedules")
_IGNORED = ("paths", "device", "train.progress", "train.num_workers", "eval.batch_size")

DEFINITIONS = (
    "Test SI-SDRi in dB over all source estimates (2 per mixture). Each statistic is computed "
    "per evaluation epoch, averaged over the evaluation epochs of a run (`epochs`), then over "
    "the runs of a row (`runs`, one per seed). std: population std (ddof=0); 1 ... 99: "
    "percentiles (numpy, linear interpolation)."
)


@dataclass
class Options:
    """Bootstrap replicates, interval level, RNG seed, curriculum levels (None: automatic)."""

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    levels: Sequence[float] | None = None


@dataclass
class TableOut:
    """One table: numeric CSV frame, formatted cells, title and footer."""

    stem: str
    title: str
    numeric: pd.DataFrame
    cells: pd.DataFrame
    footer: str

    def write(self, out_dir: Path) -> list[Path]:
        """``<stem>.csv``, ``.md`` and ``.tex`` in ``out_dir``."""
        return write_cells(self.numeric, self.cells, out_dir, self.stem, self.title, self.footer)


# ---------------------------------------------------------------------------------------------
# Footers shared by the tables
# ---------------------------------------------------------------------------------------------


def spread_note(summaries: Sequence[Any]) -> str:
    overs = sorted({s.over for s in summaries})
    if overs == ["seeds"]:
        return "± is the population std across seeds (runs) of each statistic."
    if overs == ["evaluation epochs"]:
        return "± is the population std across evaluation epochs of each statistic (one run)."
    return (
        "± is the population std across seeds for rows with runs > 1, across evaluation "
        "epochs for rows with one run."
    )


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(runs: Sequence[Run]) -> list[str]:
    """Config keys (other than the swept ones) whose values differ between ``runs``."""
    flats = [_flat(r.config) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    diffs = []
    for key in keys:
        if key.split(".")[0] in _VARYING or any(key.startswith(i) for i in _IGNORED):
            continue
        values = {repr(f.get(key)) for f in flats}
        if len(values) > 1:
            diffs.append(f"{key} ({', '.join(sorted(values))})")
    return diffs


def excluded_note(runs: Sequence[Run], kind: str, root: Path | None) -> str:
    """The runs of ``kind`` left out of a table (failed or incomplete), one by one."""
    left = [r for r in runs if not r.complete and kind_of(r.config) in (kind, None)]
    if not left:
        return ""
    items = [f"{short_name(r, root)} (seed {r.seed}): {r.status}, {r.detail}" for r in left]
    return f"Not in the table ({len(left)} run(s) without results): " + "; ".join(items) + "."


def common_footer(runs: Sequence[Run], kind: str, used: Sequence[Run], root: Path | None) -> str:
    parts = []
    diffs = config_differences(used)
    if diffs:
        parts.append("Warning: the runs also differ in " + "; ".join(diffs) + ".")
    parts.append(excluded_note(runs, kind, root))
    return " ".join(p for p in parts if p)


def paper_note(used: Sequence[Run], kind: str, shown: bool) -> str:
    if not shown:
        return "No row of this experiment matches a row of the paper's table."
    diffs = paper.setting_differences(used[0].config, kind) if used else []
    text = f"Rows marked paper: the published numbers ({paper.CITATION})."
    if diffs:
        text += " Our setting differs from the paper's in: " + "; ".join(diffs) + "."
    else:
        text += " Our setting matches the paper's (PAPER.md 4)."
    return text


def _star(low: float, high: float) -> str:
    return "*" if low > 0 or high < 0 else ""


# ---------------------------------------------------------------------------------------------
# Table 1 (robust)
# ---------------------------------------------------------------------------------------------


def _ours_row(cond: Condition, summary: Any, key_cols: dict[str, Any]) -> tuple[dict, dict]:
    numeric = {**key_cols, "source": "ours", "runs": summary.runs, "epochs": summary.epochs}
    cells = {**key_cols, "source": "ours", "runs": str(summary.runs)}
    cells["epochs"] = f"{summary.epochs:g}"
    for col, head in zip(STAT_COLUMNS, STAT_HEADERS, strict=True):
        value, spread = summary.mean.at["all", col], summary.spread.at["all", col]
        numeric[col], numeric[f"{col}_spread"] = value, spread
        cells[head] = format_spread(value, spread)
    return numeric, cells


def _paper_row(values: Sequence[float], key_cols: dict[str, Any]) -> tuple[dict, dict]:
    numeric = {**key_cols, "source": "paper", "runs": np.nan, "epochs": 10}
    cells = {**key_cols, "source": "paper", "runs": MISSING, "epochs": "10"}
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
        n, c = _ours_row(cond, summary, {"alpha": cond.label})
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
        "every run, each item keeping its evaluation epochs; runs (seeds) are resampled "
        "separately since their test sets differ. The intervals reflect the finite test set, "
        "not the variation between training runs (see ± in the main table)."
    )
    return TableOut(stem, title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def paired_rows(
    conds: Sequence[Condition],
    base: Condition,
    key_name: str,
    opts: Options,
    group: str | None = None,
) -> tuple[list[dict], list[dict], list[str]]:
    """Numeric and cell rows of ``condition - baseline`` for every statistic."""
    numeric, cells, notes = [], [], []
    for cond in conds:
        if cond is base:
            continue
        res = paired_comparison(cond, base, group, opts.n_boot, opts.level, opts.seed)
        if res is None:
            notes.append(f"{cond.label}: no seed shares its test items with the baseline")
            continue
        notes += [f"{cond.label}, {s}" for s in res.skipped]
        n_row, c_row = _paired_head(cond, base, res, key_name)
        for i, (col, head) in enumerate(zip(STAT_COLUMNS, STAT_HEADERS, strict=True)):
            d, lo, hi = res.difference[i], res.low[i], res.high[i]
            n_row.update({f"d_{col}": d, f"d_{col}_low": lo, f"d_{col}_high": hi})
            c_row[f"Δ{head}"] = format_interval(d, lo, hi) + _star(lo, hi)
        numeric.append(n_row)
        cells.append(c_row)
    return numeric, cells, notes


def _paired_head(cond: Condition, base: Condition, res: Paired, key_name: str) -> tuple[dict, dict]:
    numeric = {
        key_name: cond.label,
        "baseline": base.label,
        "seeds": len(res.seeds),
        "items": res.items,
        "better": res.better,
        "p_mean": res.p_mean,
    }
    cells = {
        key_name: cond.label,
        "vs": base.label,
        "seeds": str(len(res.seeds)),
        "items": str(res.items),
        "better": f"{100 * res.better:.0f}%",
        "p (mean)": f"{res.p_mean:.3g}",
    }
    return numeric, cells


def paired_footer(opts: Options, what: str, notes: Sequence[str], better: bool = True) -> str:
    """The footer of a paired table (``better``: the table has the ``better`` column)."""
    text = (
        f"Paired comparison with {what} on the same test items (same seed, so the same test "
        "mixtures; checked by file, offset and SNR). Δ: the statistic's difference "
        f"(row minus {what}), averaged over seeds, with its {100 * opts.level:g}% paired "
        f"bootstrap interval ({opts.n_boot} resamplings of the items, the same items for both "
        "runs); * where the interval excludes 0. "
    )
    if better:
        text += (
            "better: share of items whose SI-SDRi (mean over evaluation epochs) is higher "
            "than under the baseline. "
        )
    text += (
        "p: two-sided sign-flip permutation test (10000 flips) of the mean per-item "
        "difference (items' SI-SDRi averaged over evaluation epochs)."
    )
    if notes:
        text += " Not paired: " + "; ".join(notes) + "."
    return text


def paired_table(
    conds: Sequence[Condition], key_name: str, opts: Options, stem: str, title: str
) -> TableOut | None:
    base = baseline_of(conds)
    if base is None or len(conds) < 2:
        return None
    numeric, cells, notes = paired_rows(conds, base, key_name, opts)
    if not numeric:
        return None
    footer = paired_footer(opts, f"{key_name} = {base.label}", notes)
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


# ---------------------------------------------------------------------------------------------
# Class table
# ---------------------------------------------------------------------------------------------


def _class_keys(cond: Condition) -> dict[str, str]:
    return {"gamma speech": f"{cond.key[0]:g}", "gamma env": f"{cond.key[1]:g}"}


def _class_row(cond: Condition, summary: Any) -> tuple[dict, dict]:
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
    keys = _class_keys(cond)
    numeric = {**keys, "source": "paper", "runs": np.nan, "epochs": np.nan}
    cells = {**keys, "source": "paper", "runs": MISSING, "epochs": MISSING}
    for subset, head in SUBSETS:
        value, spread = published[subset]
        numeric[subset], numeric[f"{subset}_spread"] = value, spread
        cells[head] = format_spread(value, spread, 1)
    return numeric, cells


def class_table(runs: Sequence[Run], conds: Sequence[Condition], root: Path | None) -> TableOut:
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
    return all(get(r.config, "dataset.name") == "cross" for r in cond.runs)


def class_interval_table(conds: Sequence[Condition], opts: Options) -> TableOut:
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
    base = baseline_of(conds)
    if base is None or len(conds) < 2:
        return None
    numeric, cells, notes = [], [], []
    for cond in conds:
        if cond is base:
            continue
        n_row, c_row = dict(_class_keys(cond)), dict(_class_keys(cond))
        for subset, head in SUBSETS:
            group = None if subset == "all" else subset
            res = paired_comparison(cond, base, group, opts.n_boot, opts.level, opts.seed)
            if res is None:
                break
            d, lo, hi = res.difference[0], res.low[0], res.high[0]
            n_row.update({f"d_{subset}": d, f"d_{subset}_low": lo, f"d_{subset}_high": hi})
            n_row[f"p_{subset}"] = res.p_mean
            c_row[f"Δ{head}"] = format_interval(d, lo, hi) + _star(lo, hi)
            c_row[f"p {head}"] = f"{res.p_mean:.3g}"
        else:
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


# ---------------------------------------------------------------------------------------------
# Curriculum table
# ---------------------------------------------------------------------------------------------


def _reach_cell(values: np.ndarray) -> tuple[float, float, int, str]:
    """Mean and std (ddof=0) over the runs that reached a level, their count, and the cell."""
    reached = values[~np.isnan(values)]
    if reached.size == 0:
        return np.nan, np.nan, 0, "never"
    mean, spread = float(reached.mean()), float(reached.std())
    cell = f"{mean:.0f} ± {spread:.0f}" if reached.size > 1 else f"{mean:.0f}"
    if reached.size < values.size:
        cell += f" ({reached.size}/{values.size})"
    return mean, spread, int(reached.size), cell


def _curve_stats(cond: Condition) -> dict[str, tuple[float, float]]:
    best = np.array([r.history["valid_sisdri"].max() for r in cond.runs])
    final = np.array([r.history["valid_sisdri"].iloc[-1] for r in cond.runs])
    steps = np.array([r.history["step"].iloc[-1] for r in cond.runs], dtype=float)
    return {
        "best valid": (best.mean(), best.std()),
        "final valid": (final.mean(), final.std()),
        "steps": (steps.mean(), steps.std()),
    }


def _curriculum_row(cond: Condition, levels: Sequence[float]) -> tuple[dict, dict]:
    numeric: dict[str, Any] = {"schedule": cond.label, "runs": len(cond.runs)}
    cells: dict[str, Any] = {"schedule": cond.label, "runs": str(len(cond.runs))}
    for level in levels:
        steps = np.array([_first(r, level, "step") for r in cond.runs])
        epochs = np.array([_first(r, level, "epoch") for r in cond.runs])
        mean, spread, count, cell = _reach_cell(steps)
        numeric.update({f"steps_to_{level:g}": mean, f"steps_to_{level:g}_spread": spread})
        numeric[f"epochs_to_{level:g}"] = float(np.nanmean(epochs)) if count else np.nan
        numeric[f"reached_{level:g}"] = count
        cells[f"steps to {level:g} dB"] = cell
    for name, (value, spread) in _curve_stats(cond).items():
        numeric[name.replace(" ", "_")] = value
        numeric[name.replace(" ", "_") + "_spread"] = spread
        if name != "steps":
            cells[f"{name} (dB)"] = format_spread(value, spread if len(cond.runs) > 1 else None)
    test = summarize_condition(cond)
    numeric["test_mean"] = test.mean.at["all", "mean"]
    numeric["test_mean_spread"] = test.spread.at["all", "mean"]
    cells["test mean (dB)"] = format_spread(numeric["test_mean"], numeric["test_mean_spread"])
    return numeric, cells


def _first(run: Run, level: float, column: str) -> float:
    return first_reach(run.history, level, column)


def curriculum_table(
    runs: Sequence[Run], conds: Sequence[Condition], opts: Options, root: Path | None
) -> TableOut:
    base = baseline_of(conds)
    levels = list(opts.levels) if opts.levels else auto_levels(base or conds[0])
    rows = [_curriculum_row(c, levels) for c in conds]
    used = [r for c in conds for r in c.runs]
    steps_per_epoch = sorted({int(r.history["step"].iloc[0]) for r in used})
    how = (
        "given on the command line"
        if opts.levels
        else (
            f"chosen 50%, 80% and 95% of the way from the {(base or conds[0]).label} runs' first "
            "to their best validation SI-SDRi"
        )
    )
    footer = " ".join(
        [
            "Training steps needed to reach each validation SI-SDRi level: the step of the first "
            f"validation (one per epoch, every {steps_per_epoch} steps) at or above the level, "
            "mean ± population std over the runs (seeds) that reached it, (k/n) where only k "
            f"of n did, never where none did. Levels {how}. best / final valid: the highest "
            "and the last validation SI-SDRi; test mean: as in Table 1. Same data (same seeds: "
            "same training mixtures) and the same number of steps for every schedule.",
            "The paper shows this experiment as a plot only (no numbers to set beside ours).",
            common_footer(runs, "curriculum", used, root),
        ]
    ).strip()
    title = "Curriculum: training steps to reach validation SI-SDRi levels"
    numeric = pd.DataFrame([n for n, _ in rows])
    return TableOut("curriculum", title, numeric, pd.DataFrame([c for _, c in rows]), footer)


def curriculum_tables(runs: Sequence[Run], opts: Options) -> list[TableOut]:
    """The curriculum table and the paired test comparison (empty without curriculum runs)."""
    conds = [
        c for c in conditions(runs, "curriculum") if all(r.history is not None for r in c.runs)
    ]
    if not conds:
        return []
    out = [curriculum_table(runs, conds, opts, common_root(runs))]
    paired = paired_table(
        conds, "schedule", opts, "curriculum_paired", "Curriculum: test SI-SDRi against uniform"
    )
    return out + ([paired] if paired else [])


# ---------------------------------------------------------------------------------------------
# Inventory and entry point
# ---------------------------------------------------------------------------------------------


def inventory(runs: Sequence[Run]) -> TableOut:
    """Every run found: kind, condition, seed, status, detail, wall time."""
    root = common_root(runs)
    rows = []
    for run in runs:
        kind = kind_of(run.config)
        label = "" if kind is None else _label(run, kind)
        rows.append(
            {
                "run": short_name(run, root),
                "kind": kind or "other",
                "condition": label,
                "seed": run.seed,
                "status": run.status,
                "detail": run.detail,
                "wall_s": wall_seconds(run),
            }
        )
    numeric = pd.DataFrame(rows)
    cells = numeric.astype(object).where(numeric.notna(), MISSING)
    cells["wall_s"] = [format_value(v, 0) for v in numeric["wall_s"]] if rows else []
    done = int((numeric["status"] == "complete").sum()) if rows else 0
    footer = (
        f"{len(rows)} run(s) under {root}: {done} complete; failed and incomplete runs are "
        "listed here and left out of the tables."
    )
    return TableOut("runs", "Runs found", numeric, cells, footer)


def _label(run: Run, kind: str) -> str:
    return KEYS[kind](run.config)[1]


BUILDERS: dict[str, Callable[[Sequence[Run], Options], list[TableOut]]] = {
    "robust": robust_tables,
    "class": class_tables,
    "curriculum": curriculum_tables,
}


def build_tables(
    runs: Sequence[Run], kinds: Sequence[str] | None = None, opts: Options | None = None
) -> list[TableOut]:
    """The inventory, then the tables of every kind present among ``runs`` (or of ``kinds``)."""
    opts = opts or Options()
    out = [inventory(runs)]
    for kind in kinds or BUILDERS:
        if kind not in BUILDERS:
            raise ValueError(f"unsupported table kind: {kind!r}; choose from {list(BUILDERS)}")
        out += BUILDERS[kind](runs, opts)
    return out
