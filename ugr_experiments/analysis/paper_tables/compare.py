"""Beyond the paper: UGR's robust mode against other reweighting methods (compare_methods).

Table 1's layout with one row per method (``compare``), its bootstrap intervals
(``compare_ci``), every method against uniform on the same test items (``compare_paired``),
and the pmf's health each method trained with, read from the runs' TensorBoard scalars
(``compare_health``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ugr_experiments.analysis.paper_tables.common import (
    DEFINITIONS,
    Options,
    TableOut,
    common_footer,
    paired_table,
    spread_note,
)
from ugr_experiments.analysis.paper_tables.robust import interval_table, ours_row
from ugr_experiments.analysis.report import Condition, conditions, summarize_condition
from ugr_experiments.analysis.runs import Run, common_root
from ugr_experiments.analysis.tables import MISSING, format_spread

HEALTH_TAGS = ("ess", "max_weight")


def compare_table(runs: Sequence[Run], conds: Sequence[Condition], root: Path | None) -> TableOut:
    """One row per method: mean, std and the 1 ... 99 percentiles (Table 1's columns)."""
    summaries = [summarize_condition(cond) for cond in conds]
    rows = [ours_row(c, s, {"method": c.label}) for c, s in zip(conds, summaries, strict=True)]
    # no "source" column: there are no paper rows to tell ours from
    numeric = [{k: v for k, v in row[0].items() if k != "source"} for row in rows]
    cells = [{k: v for k, v in row[1].items() if k != "source"} for row in rows]
    used = [r for c in conds for r in c.runs]
    footer = " ".join(
        [DEFINITIONS, spread_note(summaries), common_footer(runs, "compare", used, root)]
    ).strip()
    title = "Reweighting methods: test SI-SDRi (dB) per method (Table 1's layout)"
    return TableOut("compare", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def tensorboard_scalars(run: Run, tag: str) -> np.ndarray:
    """Every logged value of a scalar in the run's ``tb/`` (empty when it has none)."""
    from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
        EventAccumulator,
    )

    folder = Path(run.path) / "tb"
    if not folder.is_dir():
        return np.array([])
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return np.array([])
    return np.array([e.value for e in events.Scalars(tag)])


def health_table(conds: Sequence[Condition]) -> TableOut:
    """Per method: the mean over logged steps and seeds of the pmf's ESS and max weight."""
    numeric, cells = [], []
    for cond in conds:
        n_row: dict = {"method": cond.label, "runs": len(cond.runs)}
        c_row: dict = {"method": cond.label, "runs": str(len(cond.runs))}
        for tag in HEALTH_TAGS:
            per_run = [tensorboard_scalars(r, f"pmf/{tag}") for r in cond.runs]
            means = [v.mean() for v in per_run if v.size]
            value = float(np.mean(means)) if means else float("nan")
            spread = float(np.std(means)) if means else float("nan")
            n_row.update({tag: value, f"{tag}_spread": spread})
            n_row["logged_steps"] = sum(v.size for v in per_run)
            digits = 3 if tag == "max_weight" else 2
            c_row[tag] = format_spread(value, spread, digits) if means else MISSING
        c_row["logged steps"] = str(n_row["logged_steps"])
        numeric.append(n_row)
        cells.append(c_row)
    footer = (
        "The pmf each method trained with, from the runs' TensorBoard scalars `pmf/ess` "
        "(effective sample size 1 / sum p^2) and `pmf/max_weight`: the mean over the logged "
        "steps of a run (every `weighting.health_every` steps), then over its seeds; ± is the "
        "population std across seeds. Uniform weighting has ESS = the items per batch."
    )
    title = "The pmf's health per method"
    return TableOut("compare_health", title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)


def compare_tables(runs: Sequence[Run], opts: Options) -> list[TableOut]:
    """The method table, its intervals, the paired comparisons and the pmf's health."""
    conds = conditions(runs, "compare")
    tables = [
        compare_table(runs, conds, common_root(runs)),
        interval_table(conds, "method", opts, "compare_ci", "Methods with bootstrap intervals"),
        paired_table(conds, "method", opts, "compare_paired", "Each method against uniform"),
        health_table(conds),
    ]
    return [t for t in tables if t is not None] if conds else []
