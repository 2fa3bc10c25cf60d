"""Experiment conditions: group runs by what they vary, and compare them (make_tables.py).

A *condition* is a set of runs that differ only in their seed: one alpha of the robust sweep,
one (gamma speech, gamma env) pair of the class sweep, one schedule of the curriculum
comparison. What a run is comes from its saved config, never from its directory name:

- ``robust``: ``weighting.name`` robust (its ``alpha``) or uniform (alpha 0);
- ``class``: ``weighting.name`` class, or a ``gamma_pair`` root key (class_bias presets);
- ``curriculum``: ``weighting.name`` curriculum, or a ``schedule`` root key (curriculum
  presets, whose uniform runs are the curriculum's baseline, not a robust alpha 0);
- ``compare``: a ``method`` root key (compare_methods presets: uniform, robust, cvar,
  group DRO, ... as named by their weighting config).

Point estimates follow DESIGN.md: statistics per evaluation epoch, averaged over the epochs
(``tables.summarize``), then over the runs of a condition (``tables.combine``). The spread
is the std across runs (seeds) where a condition has several, else across evaluation epochs.
Intervals and paired comparisons resample test items (``ugr_experiments.analysis.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from ugr_experiments.analysis import stats
from ugr_experiments.analysis.runs import Run, get
from ugr_experiments.analysis.tables import combine, summarize, summarize_spread

KINDS = ("robust", "class", "curriculum", "compare")
ALL = "all"
# Columns that say which test item a row is; paired runs must agree on them.
ITEM_ID = ("file", "offset", "snr_db")


@dataclass
class Condition:
    """The runs of one table row (complete runs only), with a sortable key and a label."""

    kind: str
    key: Any
    label: str
    runs: list[Run]  # sorted by seed: intervals must not depend on folder names
    # (duplicate, kept): runs with the seed of a run already in the condition, left out
    duplicates: list[tuple[Run, Run]] = field(default_factory=list)

    @property
    def seeds(self) -> list[int | None]:
        """The seed of each run."""
        return [r.seed for r in self.runs]


def kind_of(cfg: dict[str, Any]) -> str | None:
    """``robust``, ``class``, ``curriculum``, ``compare`` or None (see the module docstring)."""
    name = get(cfg, "weighting.name")
    if "method" in cfg:
        return "compare"
    if "gamma_pair" in cfg or name == "class":
        return "class"
    if "schedule" in cfg or name == "curriculum":
        return "curriculum"
    if name in ("robust", "uniform"):
        return "robust"
    return None


def alpha_label(alpha: float) -> str:
    """``1/15`` for the paper's fractions, else the number (``0.3``)."""
    frac = Fraction(alpha).limit_denominator(100)
    if abs(float(frac) - alpha) < 1e-9 and frac.denominator <= 20:
        return str(frac)
    return f"{alpha:g}"


def _number(value: Any) -> float:
    """A number or fraction string as a float (NaN if it is neither)."""
    try:
        return float(Fraction(str(value))) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


def robust_key(cfg: dict[str, Any]) -> tuple[float, str]:
    """``(alpha, label)`` of a robust or uniform run (uniform is alpha 0)."""
    alpha = 0.0 if get(cfg, "weighting.name") == "uniform" else _number(get(cfg, "weighting.alpha"))
    return alpha, alpha_label(alpha)


def class_key(cfg: dict[str, Any]) -> tuple[tuple[float, float], str]:
    """``((gamma speech, gamma env), label)`` of a class-weighting run."""
    gamma = get(cfg, "weighting.gamma", {}) or {}
    pair = (_number(gamma.get("speech", 0.0)), _number(gamma.get("environmental", 0.0)))
    return pair, f"({pair[0]:g}, {pair[1]:g})"


def curriculum_key(cfg: dict[str, Any]) -> tuple[tuple[int, str], str]:
    """``(sort key, label)`` of a curriculum-experiment run: uniform first."""
    w = cfg.get("weighting") or {}
    if w.get("name") != "curriculum":
        return (0, "uniform"), "uniform"
    label = (
        f"easy-first ({w.get('shape')}, beta0={_number(w.get('beta0')):g}, "
        f"{w.get('length')} {w.get('length_unit')})"
    )
    return (1, label), label


# compare_methods: rows in this order, each labelled by its weighting's hyper-parameters
METHOD_ORDER = ("uniform", "robust", "cvar", "group_dro", "tilted_groups")
METHOD_PARAMS = {
    "robust": ("alpha",),
    "curriculum": ("beta0", "shape", "length", "length_unit"),
    "class": ("gamma",),
    "cvar": ("fraction",),
    "group_dro": ("eta", "groups"),
    "tilted_groups": ("t_in", "t_out", "groups"),
}


def _shown(key: str, value: Any) -> str:
    """A hyper-parameter as a label shows it: ``1/5`` for alpha, ``0.75``, ``classes``."""
    number = _number(value) if isinstance(value, int | float | str) else float("nan")
    if np.isnan(number) or isinstance(value, bool):
        return str(value)
    return alpha_label(number) if key == "alpha" else f"{number:g}"


def method_key(cfg: dict[str, Any]) -> tuple[tuple[int, str], str]:
    """``(sort key, label)`` of a compare_methods run: ``cvar (fraction 0.75)``, uniform first."""
    w = cfg.get("weighting") or {}
    name = str(w.get("name"))
    params = ", ".join(f"{k} {_shown(k, w.get(k))}" for k in METHOD_PARAMS.get(name, ()))
    label = f"{name} ({params})" if params else name
    order = METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER)
    return (order, label), label


KEYS = {
    "robust": robust_key,
    "class": class_key,
    "curriculum": curriculum_key,
    "compare": method_key,
}


def _seed_order(run: Run) -> tuple[bool, int]:
    """Sort key of a run within its condition: by seed (a run without one last)."""
    return run.seed is None, run.seed if run.seed is not None else 0


def conditions(runs: Sequence[Run], kind: str) -> list[Condition]:
    """The complete runs of ``kind`` grouped by condition, sorted by key, runs by seed.

    A run whose (condition, seed) is already taken (a sweep copied twice under one folder)
    is counted once: the first in ``runs`` order is kept, the others are listed in
    ``Condition.duplicates``. Runs are sorted by seed, so the bootstrap, which draws for the
    runs in turn, gives the same intervals whatever the folders are called.
    """
    groups: dict[Any, Condition] = {}
    for run in runs:
        if not run.complete or kind_of(run.config) != kind:
            continue
        key, label = KEYS[kind](run.config)
        cond = groups.setdefault(key, Condition(kind, key, label, []))
        kept = next((r for r in cond.runs if r.seed == run.seed), None)
        if kept is not None:
            cond.duplicates.append((run, kept))
        else:
            cond.runs.append(run)
    for cond in groups.values():
        cond.runs.sort(key=_seed_order)
    return [groups[k] for k in sorted(groups)]


def duplicate_runs(runs: Sequence[Run], kind: str) -> list[tuple[Condition, Run, Run]]:
    """``(condition, duplicate, kept)`` for every run of ``kind`` counted once (see above)."""
    return [(c, dup, kept) for c in conditions(runs, kind) for dup, kept in c.duplicates]


def baseline_of(conds: Sequence[Condition]) -> Condition | None:
    """alpha 0, gamma (0, 0) or uniform: the condition every other one is compared with."""
    wanted = {
        "robust": 0.0,
        "class": (0.0, 0.0),
        "curriculum": (0, "uniform"),
        "compare": (0, "uniform"),
    }
    return next((c for c in conds if c.key == wanted[c.kind]), None)


# ---------------------------------------------------------------------------------------------
# Point estimates
# ---------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """A condition's statistics table (subsets x stats), its spread and what the spread is."""

    mean: pd.DataFrame
    spread: pd.DataFrame
    over: str  # "seeds" or "evaluation epochs"
    runs: int
    epochs: float


def summarize_condition(cond: Condition) -> Summary:
    """Per-run tables (per-epoch statistics averaged), then averaged over the runs."""
    tables = [summarize(r.test_rows) for r in cond.runs]
    mean, spread = combine(tables, count="runs")
    over = "seeds"
    if len(tables) == 1:
        spread, over = summarize_spread(cond.runs[0].test_rows), "evaluation epochs"
    epochs = float(np.mean([t.loc[ALL, "epochs"] for t in tables]))
    return Summary(mean, spread, over, len(tables), epochs)


# ---------------------------------------------------------------------------------------------
# Items, intervals and paired comparisons
# ---------------------------------------------------------------------------------------------


def item_matrix(rows: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Test SI-SDRi as items x evaluation epochs, index (mixture, source), sorted.

    Shape:
        rows (R rows) -> (n items, E epochs).
    """
    if group is not None:
        rows = rows[rows["group"] == group]
    if "epoch" not in rows.columns:
        rows = rows.assign(epoch=0)
    matrix = rows.pivot_table(index=["mixture", "source"], columns="epoch", values="sisdri")
    return matrix.sort_index()


def _identity(rows: pd.DataFrame) -> pd.DataFrame:
    """The item-identifying columns of the first evaluation epoch, by (mixture, source)."""
    present = [c for c in ITEM_ID if c in rows.columns]
    first = rows[rows["epoch"] == rows["epoch"].min()] if "epoch" in rows.columns else rows
    return first.set_index(["mixture", "source"])[present].sort_index()


def same_items(a: Run, b: Run) -> bool:
    """True when two runs were tested on the same items (same files, offsets and SNRs)."""
    ia, ib = _identity(a.test_rows), _identity(b.test_rows)
    if not ia.index.equals(ib.index) or list(ia.columns) != list(ib.columns):
        return False
    return bool((ia.astype(str) == ib.astype(str)).all().all())


def condition_interval(
    cond: Condition, group: str | None, n_boot: int, level: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, low and high of every statistic; items resampled within each run."""
    matrices = [item_matrix(r.test_rows, group).to_numpy() for r in cond.runs]
    replicates = stats.bootstrap(matrices, n_boot, np.random.default_rng(seed))
    low, high = stats.interval(replicates, level)
    return stats.run_averaged(matrices), low, high


@dataclass
class Paired:
    """``condition - baseline`` on shared test items."""

    difference: np.ndarray  # (11,) of STAT_COLUMNS
    low: np.ndarray
    high: np.ndarray
    p_mean: float  # sign-flip test of the mean per-item difference
    better: float  # share of items whose SI-SDRi rose
    items: int
    seeds: list[int | None]
    skipped: list[str]  # why some seeds could not be paired


def _pairs(cond: Condition, base: Condition) -> tuple[list[tuple[Run, Run]], list[str]]:
    """Runs of the two conditions with the same seed and the same test items."""
    by_seed = {r.seed: r for r in base.runs}
    pairs, skipped = [], []
    for run in cond.runs:
        other = by_seed.get(run.seed)
        if other is None:
            skipped.append(f"seed {run.seed}: no baseline run")
        elif not same_items(run, other):
            skipped.append(f"seed {run.seed}: test items differ from the baseline's")
        else:
            pairs.append((run, other))
    return pairs, skipped


def paired_comparison(
    cond: Condition, base: Condition, group: str | None, n_boot: int, level: float, seed: int
) -> Paired | None:
    """Paired bootstrap of every statistic's difference, and a sign-flip test of the mean.

    Returns:
        None where no seed has both runs on the same test items.
    """
    pairs, skipped = _pairs(cond, base)
    if not pairs:
        return None
    mats = [(item_matrix(a.test_rows, group), item_matrix(b.test_rows, group)) for a, b in pairs]
    arrays = [(a.to_numpy(), b.loc[a.index].to_numpy()) for a, b in mats]
    rng = np.random.default_rng(seed)
    point, replicates = stats.paired_bootstrap(arrays, n_boot, rng)
    low, high = stats.interval(replicates, level)
    per_item = np.concatenate([a.mean(1) - b.mean(1) for a, b in arrays])  # (n,)
    p = stats.sign_flip_pvalue(per_item, 10000, rng)
    seeds = [a.seed for a, _ in pairs]
    return Paired(point, low, high, p, float((per_item > 0).mean()), per_item.size, seeds, skipped)


# ---------------------------------------------------------------------------------------------
# Curriculum: progress needed to reach validation levels
# ---------------------------------------------------------------------------------------------


def first_reach(history: pd.DataFrame, level: float, column: str = "step") -> float:
    """The ``column`` (step or epoch) of the first validation at or above ``level``, else NaN."""
    hit = history[history["valid_sisdri"] >= level]
    return float(hit[column].iloc[0]) if len(hit) else float("nan")


def auto_levels(base: Condition, fractions: Sequence[float] = (0.5, 0.8, 0.95)) -> list[float]:
    """Levels a fraction of the way from the baseline's first to its best validation SI-SDRi.

    Averaged over the baseline's runs and rounded to 0.1 dB.
    """
    first = np.mean([r.valid_history["valid_sisdri"].iloc[0] for r in base.runs])
    best = np.mean([r.valid_history["valid_sisdri"].max() for r in base.runs])
    return [round(float(first + f * (best - first)), 1) for f in fractions]
