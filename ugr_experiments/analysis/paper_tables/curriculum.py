"""The curriculum table: training steps to reach validation SI-SDRi levels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ugr_experiments.analysis.paper_tables.common import (
    Options,
    TableOut,
    common_footer,
    paired_table,
)
from ugr_experiments.analysis.report import (
    Condition,
    auto_levels,
    baseline_of,
    conditions,
    first_reach,
    summarize_condition,
)
from ugr_experiments.analysis.runs import Run, common_root
from ugr_experiments.analysis.tables import (
    format_spread,
)


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
    """Best and final validation SI-SDRi and steps run: mean and std over the runs."""
    best = np.array([r.valid_history["valid_sisdri"].max() for r in cond.runs])
    final = np.array([r.valid_history["valid_sisdri"].iloc[-1] for r in cond.runs])
    steps = np.array([r.valid_history["step"].iloc[-1] for r in cond.runs], dtype=float)
    return {
        "best valid": (best.mean(), best.std()),
        "final valid": (final.mean(), final.std()),
        "steps": (steps.mean(), steps.std()),
    }


def _curriculum_row(cond: Condition, levels: Sequence[float]) -> tuple[dict, dict]:
    """Numeric and cell row of one schedule."""
    numeric: dict[str, Any] = {"schedule": cond.label, "runs": len(cond.runs)}
    cells: dict[str, Any] = {"schedule": cond.label, "runs": str(len(cond.runs))}
    for level in levels:
        steps = np.array([first_reach(r.valid_history, level, "step") for r in cond.runs])
        epochs = np.array([first_reach(r.valid_history, level, "epoch") for r in cond.runs])
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


def curriculum_table(
    runs: Sequence[Run], conds: Sequence[Condition], opts: Options, root: Path | None
) -> TableOut:
    """One row per schedule: steps to the levels, best / final validation, test mean."""
    base = baseline_of(conds)
    levels = list(opts.levels) if opts.levels else auto_levels(base or conds[0])
    rows = [_curriculum_row(c, levels) for c in conds]
    used = [r for c in conds for r in c.runs]
    steps_per_epoch = ", ".join(
        str(s) for s in sorted({int(r.valid_history["step"].iloc[0]) for r in used})
    )
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
