"""Pieces shared by the paper's tables: options, the table object, footers, paired rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ugr_experiments.analysis import paper
from ugr_experiments.analysis.report import (
    Condition,
    Paired,
    baseline_of,
    duplicate_runs,
    kind_of,
    paired_comparison,
)
from ugr_experiments.analysis.runs import Run, short_name
from ugr_experiments.analysis.tables import (
    PERCENTILES,
    STAT_COLUMNS,
    format_interval,
    write_cells,
)

STAT_HEADERS = ["mean", "std"] + [str(q) for q in PERCENTILES]
SUBSETS = (("speech", "Speech"), ("environmental", "Env."), ("all", "Combined"))
# Config keys that are expected to differ between the runs of one table.
_VARYING = (
    "seed",
    "alpha",
    "weighting",
    "gamma_pair",
    "gamma_pairs",
    "schedule",
    "schedules",
    "method",
    "methods",
)
_IGNORED = ("paths", "device", "train.progress", "train.num_workers", "eval.batch_size")

DEFINITIONS = (
    "Test SI-SDRi in dB over all source estimates (2 per mixture). Each statistic is computed "
    "per evaluation epoch, averaged over the evaluation epochs of a run (`epochs`), then over "
    "the runs of a row (`runs`, one per seed). n: test source estimates per evaluation epoch "
    "(averaged over the runs). std: population std (ddof=0); 1 ... 99: percentiles (numpy, "
    "linear interpolation)."
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
    """What the ``±`` of a table means, given its rows' summaries."""
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
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
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


def duplicate_note(runs: Sequence[Run], kind: str, root: Path | None) -> str:
    """A warning naming the runs of ``kind`` that repeat a (condition, seed), or ``""``."""
    dups = duplicate_runs(runs, kind)
    if not dups:
        return ""
    items = [
        f"{short_name(dup, root)} repeats {short_name(kept, root)} ({cond.label}, seed {dup.seed})"
        for cond, dup, kept in dups
    ]
    return (
        f"Warning: {len(dups)} duplicate run(s), the same condition and seed as another run "
        "(a sweep copied twice?), each counted once: " + "; ".join(items) + "."
    )


def common_footer(runs: Sequence[Run], kind: str, used: Sequence[Run], root: Path | None) -> str:
    """Duplicate runs, config differences between the used runs, and the runs left out."""
    parts = [duplicate_note(runs, kind, root)]
    diffs = config_differences(used)
    if diffs:
        parts.append("Warning: the runs also differ in " + "; ".join(diffs) + ".")
    parts.append(excluded_note(runs, kind, root))
    return " ".join(p for p in parts if p)


def paper_note(used: Sequence[Run], kind: str, shown: bool) -> str:
    """Where the paper's rows come from and how our setting differs from the paper's."""
    if not shown:
        return "No row of this experiment matches a row of the paper's table."
    diffs = paper.setting_differences(used[0].config, kind) if used else []
    text = f"Rows marked paper: the published numbers ({paper.CITATION})."
    if diffs:
        text += " Our setting differs from the paper's in: " + "; ".join(diffs) + "."
    else:
        text += " Our setting matches the paper's (PAPER.md 4)."
    return text


def star(low: float, high: float) -> str:
    """``"*"`` where an interval excludes 0, else ``""``."""
    return "*" if low > 0 or high < 0 else ""


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
            c_row[f"Δ{head}"] = format_interval(d, lo, hi) + star(lo, hi)
        numeric.append(n_row)
        cells.append(c_row)
    return numeric, cells, notes


def _paired_head(cond: Condition, base: Condition, res: Paired, key_name: str) -> tuple[dict, dict]:
    """The leading columns of a paired row: condition, baseline, seeds, items, better, p."""
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
        f"Paired comparison with {what} on the same test items (every run is scored on the "
        "test mixtures drawn from `dataset.eval_seed`, whatever its training seed; checked by "
        "file, offset and SNR; runs are paired by seed). Δ: the statistic's difference "
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
    """Every condition against the baseline, all statistics (None without a baseline)."""
    base = baseline_of(conds)
    if base is None or len(conds) < 2:
        return None
    numeric, cells, notes = paired_rows(conds, base, key_name, opts)
    if not numeric:
        return None
    footer = paired_footer(opts, f"{key_name} = {base.label}", notes)
    return TableOut(stem, title, pd.DataFrame(numeric), pd.DataFrame(cells), footer)
