"""The paper's claims as verdicts, computed from the runs' per-source rows.

Each experiment of the paper makes a few claims (PAPER.md 5). This module states them as
tests with a fixed rule, written down before any result was seen (``docs/criteria.md``), and
returns one :class:`Verdict` per claim: our estimate, its 95% interval and whether the claim
holds. Everything is computed from ``per_source_sisdri.csv`` of each run:

- a statistic of a run is computed per evaluation epoch and averaged over the epochs; a
  paired difference is ``condition - baseline`` per seed, averaged over the seeds;
- its interval is a percentile bootstrap over the test items (mixture, source). When every
  run was scored on the same items (``dataset.eval_seed``), one resample of the items serves
  every seed and both conditions; otherwise each seed's items are resampled on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ugr_experiments.analysis import stats
from ugr_experiments.analysis.report import (
    Condition,
    auto_levels,
    baseline_of,
    conditions,
    first_reach,
    item_matrix,
    same_items,
)
from ugr_experiments.analysis.runs import Run
from ugr_experiments.analysis.tables import STAT_COLUMNS

N_BOOT = 2000
LEVEL = 0.95
BOOT_SEED = 0
# Below this mean test SI-SDRi the baseline has not learned enough to show any effect.
MIN_BASELINE_DB = 2.5
# Bootstrap replicates computed at once (memory: chunk x seeds x items x epochs floats).
_CHUNK = 50
COLUMNS = ("claim", "paper", "ours", "ci_low", "ci_high", "holds")
MEAN, STD, Q1, Q5 = (STAT_COLUMNS.index(c) for c in ("mean", "std", "q1", "q5"))


@dataclass(frozen=True)
class Verdict:
    """One claim: the paper's figure, ours with its interval, and whether the claim holds."""

    claim: str
    paper: str
    ours: float
    ci_low: float
    ci_high: float
    holds: bool


@dataclass(frozen=True)
class Paired:
    """``condition - baseline`` of every statistic: estimate and percentile interval, (11,)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


# ---------------------------------------------------------------------------------------------
# Paired differences over shared test items
# ---------------------------------------------------------------------------------------------


def _matrices(
    cond: Condition, base: Condition, group: str | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per shared seed (in seed order), the (items, epochs) matrices of both, rows aligned."""
    by_seed = {r.seed: r for r in base.runs}
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for run in cond.runs:  # in seed order (report.conditions)
        other = by_seed.get(run.seed)
        if other is None or run.rows is None or other.rows is None:
            continue
        a, b = item_matrix(run.rows, group), item_matrix(other.rows, group)
        shared = a.index.intersection(b.index)
        pairs.append((a.loc[shared].to_numpy(), b.loc[shared].to_numpy()))
    if not pairs:
        raise ValueError(f"{cond.label} and {base.label} share no seed: nothing to pair")
    return pairs


def _same_items(cond: Condition, base: Condition) -> bool:
    """True when every run of both conditions was scored on the same test items."""
    runs = [*cond.runs, *base.runs]
    return all(same_items(runs[0], r) for r in runs[1:])


def paired(
    cond: Condition, base: Condition, group: str | None = None, n_boot: int = N_BOOT
) -> Paired:
    """Every statistic's paired difference ``cond - base`` with its bootstrap interval."""
    pairs = _matrices(cond, base, group)
    rng = np.random.default_rng(BOOT_SEED)
    sizes = {a.shape[0] for a, _ in pairs}
    if _same_items(cond, base) and len(sizes) == 1:
        point, replicates = joint_paired_bootstrap(pairs, n_boot, rng)
    else:
        point, replicates = stats.paired_bootstrap(pairs, n_boot, rng)
    low, high = stats.interval(replicates, LEVEL)
    return Paired(point, low, high)


def joint_paired_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Like ``stats.paired_bootstrap``, but one resample of the items serves every pair.

    Valid when the pairs (seeds) share their test items: the interval then reflects the
    finite test set once, not once per seed.

    Shape:
        pairs: [((n, E_a), (n, E_b))] -> ((11,), (n_boot, 11)).
    """
    a = np.stack([p[0] for p in pairs])  # (seeds, n, E_a)
    b = np.stack([p[1] for p in pairs])  # (seeds, n, E_b)
    point = (stats.epoch_averaged(a) - stats.epoch_averaged(b)).mean(0)
    replicates = np.empty((n_boot, len(STAT_COLUMNS)))
    for start in range(0, n_boot, _CHUNK):
        count = min(_CHUNK, n_boot - start)
        index = rng.integers(0, a.shape[1], size=(count, a.shape[1]))  # (count, n)
        diff = stats.epoch_averaged(a[:, index]) - stats.epoch_averaged(b[:, index])
        replicates[start : start + count] = diff.mean(0)  # (seeds, count, 11) -> (count, 11)
    return point, replicates


def condition_mean(cond: Condition) -> tuple[float, float, float]:
    """Mean test SI-SDRi of a condition (seeds averaged) with its bootstrap interval."""
    matrices = [item_matrix(r.rows).to_numpy() for r in cond.runs if r.rows is not None]
    rng = np.random.default_rng(BOOT_SEED)
    replicates = stats.bootstrap(matrices, N_BOOT, rng)
    low, high = stats.interval(replicates, LEVEL)
    return float(stats.run_averaged(matrices)[MEAN]), float(low[MEAN]), float(high[MEAN])


# ---------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------


def _excludes(low: float, high: float, sign: int) -> bool:
    """Whether the interval lies wholly on the side of 0 that ``sign`` names."""
    return bool(low > 0) if sign > 0 else bool(high < 0)


def _signed(label: str, d: Paired, column: int, sign: int, paper: str) -> Verdict:
    est, low, high = float(d.estimate[column]), float(d.low[column]), float(d.high[column])
    holds = (est > 0 if sign > 0 else est < 0) and _excludes(low, high, sign)
    return Verdict(label, paper, est, low, high, holds)


def baseline_verdict(base: Condition, paper: str) -> Verdict:
    """The baseline learned enough: its mean test SI-SDRi reaches :data:`MIN_BASELINE_DB`."""
    mean, low, high = condition_mean(base)
    claim = f"baseline {base.label} learned (mean test SI-SDRi >= {MIN_BASELINE_DB:g} dB)"
    return Verdict(claim, paper, mean, low, high, mean >= MIN_BASELINE_DB)


def _find(conds: Sequence[Condition], key: object) -> Condition | None:
    return next((c for c in conds if c.key == key), None)


def _close(conds: Sequence[Condition], alpha: float) -> Condition | None:
    return next((c for c in conds if math.isclose(c.key, alpha, abs_tol=5e-4)), None)


def robust_verdicts(runs: Sequence[Run]) -> list[Verdict]:
    """Table 1's claims: at alpha 1/5 the distribution narrows, its lower tail rises."""
    conds = conditions(runs, "robust")
    base, top = baseline_of(conds), _close(conds, 0.2)
    if base is None or top is None:
        raise ValueError("the robust verdicts need complete runs at alpha 0 and alpha 1/5")
    d = paired(top, base)
    mean = Verdict(
        "mean decreases or stays at alpha=1/5",
        "5.0 -> 3.0 (-2.0)",
        float(d.estimate[MEAN]),
        float(d.low[MEAN]),
        float(d.high[MEAN]),
        not _excludes(float(d.low[MEAN]), float(d.high[MEAN]), +1),
    )
    verdicts = [
        baseline_verdict(base, "5.0"),
        _signed("std decreases at alpha=1/5", d, STD, -1, "9.0 -> 4.8 (-4.2)"),
        _signed("q1 increases at alpha=1/5", d, Q1, +1, "-17.5 -> -2.8 (+14.7)"),
        _signed("q5 increases at alpha=1/5", d, Q5, +1, "-6.9 -> -0.9 (+6.0)"),
        mean,
    ]
    middle = [c for c in (_close(conds, 1 / 15), _close(conds, 0.1)) if c is not None]
    if middle:
        verdicts.append(between_verdict(base, top, middle))
    return verdicts


def between_verdict(base: Condition, top: Condition, middle: Sequence[Condition]) -> Verdict:
    """Intermediate alphas: std, q1 and q5 lie between those of alpha 0 and alpha 1/5.

    ``ours`` counts the (alpha, statistic) pairs that lie between; the interval columns show
    the widest paired interval (against alpha 0) among them.
    """
    ends = paired(top, base)
    inside, widest = 0, (math.nan, math.nan)
    for cond in middle:
        d = paired(cond, base)
        for column in (STD, Q1, Q5):
            lo, hi = sorted((0.0, float(ends.estimate[column])))
            inside += int(lo <= float(d.estimate[column]) <= hi)
            width = float(d.high[column] - d.low[column])
            if math.isnan(widest[0]) or width > widest[1] - widest[0]:
                widest = (float(d.low[column]), float(d.high[column]))
    total = 3 * len(middle)
    labels = " and ".join(c.label for c in middle)
    claim = f"alpha {labels} lie between alpha 0 and 1/5 (std, q1, q5; count of {total})"
    return Verdict(claim, f"{total} of {total}", float(inside), *widest, inside == total)


def class_verdicts(runs: Sequence[Run]) -> list[Verdict]:
    """The class table's claims: raising a class's gamma raises that class's mean."""
    conds = conditions(runs, "class")
    base = baseline_of(conds)
    if base is None:
        raise ValueError("the class verdicts need complete runs at gamma (0, 0)")
    verdicts = [baseline_verdict(base, "12.7")]
    cases = (
        ((0.0, 3.0), "environmental", "env", "13.1 -> 13.5 (+0.4)", "12.7 -> 12.6 (-0.1)"),
        ((3.0, 0.0), "speech", "speech", "12.2 -> 12.7 (+0.5)", "12.7 -> 12.9 (+0.2)"),
    )
    for key, group, short, paper_gain, paper_all in cases:
        cond = _find(conds, key)
        if cond is None:
            continue
        gain = paired(cond, base, group)
        both = paired(cond, base, None)
        verdicts.append(_signed(f"{cond.label} raises {short} mean", gain, MEAN, +1, paper_gain))
        change = float(both.estimate[MEAN])
        verdicts.append(
            Verdict(
                f"{cond.label} changes the combined mean by less than the {short} gain "
                "(ours: d combined)",
                paper_all,
                change,
                float(both.low[MEAN]),
                float(both.high[MEAN]),
                abs(change) < float(gain.estimate[MEAN]),
            )
        )
    return verdicts


def steps_to_levels(run: Run, levels: Sequence[float]) -> np.ndarray:
    """Steps to each validation level; a level never reached counts as one epoch past the end."""
    history = run.history
    assert history is not None
    last = float(history["step"].iloc[-1])
    epoch_steps = float(history["step"].iloc[0])
    steps = np.array([first_reach(history, level, "step") for level in levels])
    return np.where(np.isnan(steps), last + epoch_steps, steps)


def seed_savings(cond: Condition, base: Condition, levels: Sequence[float]) -> np.ndarray:
    """Per shared seed (in seed order): baseline steps minus ``cond`` steps, level-averaged."""
    by_seed = {r.seed: r for r in base.runs}
    savings = []
    for run in cond.runs:  # in seed order (report.conditions)
        other = by_seed.get(run.seed)
        if other is not None:
            diff = steps_to_levels(other, levels) - steps_to_levels(run, levels)
            savings.append(float(diff.mean()))
    return np.array(savings)


def curriculum_verdicts(runs: Sequence[Run]) -> list[Verdict]:
    """The curriculum's claims: easy-first reaches validation levels sooner, ends no worse."""
    conds = [
        c for c in conditions(runs, "curriculum") if all(r.history is not None for r in c.runs)
    ]
    base = baseline_of(conds)
    if base is None or len(conds) < 2:
        raise ValueError("the curriculum verdicts need complete uniform and easy-first runs")
    levels = auto_levels(base)
    verdicts = [baseline_verdict(base, "not given (plot only)")]
    for cond in (c for c in conds if c is not base):
        savings = seed_savings(cond, base, levels)
        rng = np.random.default_rng(BOOT_SEED)
        boots = rng.choice(savings, size=(N_BOOT, savings.size)).mean(1)
        low, high = stats.interval(boots[:, None], LEVEL)
        est = float(savings.mean())
        shown = ", ".join(f"{v:g}" for v in levels)
        verdicts.append(
            Verdict(
                f"{cond.label} reaches validation levels {shown} dB in fewer steps (mean saving)",
                "fewer steps (plot only)",
                est,
                float(low[0]),
                float(high[0]),
                est > 0 and float(low[0]) > 0,
            )
        )
        d = paired(cond, base)
        lo, hi = float(d.low[MEAN]), float(d.high[MEAN])
        verdicts.append(
            Verdict(
                f"{cond.label} ends no worse (d test mean)",
                "no worse (plot only)",
                float(d.estimate[MEAN]),
                lo,
                hi,
                not _excludes(lo, hi, -1),
            )
        )
    return verdicts


# compare_methods (docs/criteria.md, addendum on other reweighting methods)
WORST_CLASSES = 5


def _method(conds: Sequence[Condition], name: str) -> Condition | None:
    """The condition of the weighting ``name`` (the first, if several)."""
    return next((c for c in conds if c.runs[0].config["weighting"]["name"] == name), None)


def worst_classes(base: Condition, count: int = WORST_CLASSES) -> list[str]:
    """The ``count`` classes of target source with the lowest mean test SI-SDRi under
    ``base`` (per-class mean of each run, averaged over its seeds); ties by name."""
    means = pd.concat([r.test_rows.groupby("class")["sisdri"].mean() for r in base.runs], axis=1)
    ranked = means.mean(axis=1).reset_index(name="sisdri")
    return list(ranked.sort_values(["sisdri", "class"])["class"][:count])


def only_classes(cond: Condition, classes: Sequence[str]) -> Condition:
    """``cond`` with each run's test rows restricted to the target sources of ``classes``."""
    runs = [replace(r, rows=r.test_rows[r.test_rows["class"].isin(classes)]) for r in cond.runs]
    return Condition(cond.kind, cond.key, cond.label, runs)


def compare_verdicts(runs: Sequence[Run]) -> list[Verdict]:
    """compare_methods: robust and CVaR narrow the distribution and raise its lower tail;
    whether CVaR and robust differ in q1; group DRO raises the worst classes."""
    conds = conditions(runs, "compare")
    base = baseline_of(conds)
    if base is None:
        raise ValueError("the compare_methods verdicts need complete uniform runs")
    verdicts = [baseline_verdict(base, "not in the paper")]
    robust, cvar, dro = (_method(conds, n) for n in ("robust", "cvar", "group_dro"))
    for cond in (c for c in (robust, cvar) if c is not None):
        d = paired(cond, base)
        verdicts.append(_signed(f"{cond.label}: std decreases", d, STD, -1, "not in the paper"))
        verdicts.append(_signed(f"{cond.label}: q1 increases", d, Q1, +1, "not in the paper"))
    if robust is not None and cvar is not None:
        d = paired(cvar, robust)
        est, lo, hi = float(d.estimate[Q1]), float(d.low[Q1]), float(d.high[Q1])
        claim = f"{cvar.label} and {robust.label} differ in q1 (cvar minus robust)"
        verdicts.append(Verdict(claim, "no direction", est, lo, hi, lo > 0 or hi < 0))
    if dro is not None:
        worst = worst_classes(base)
        d = paired(only_classes(dro, worst), only_classes(base, worst))
        claim = f"{dro.label} raises the {len(worst)} worst classes ({', '.join(worst)}) mean"
        verdicts.append(_signed(claim, d, MEAN, +1, "not in the paper"))
        d = paired(dro, base)
        lo, hi = float(d.low[MEAN]), float(d.high[MEAN])
        claim = f"{dro.label}: mean decreases or stays"
        verdicts.append(
            Verdict(claim, "not in the paper", float(d.estimate[MEAN]), lo, hi, lo <= 0)
        )
    return verdicts


VERDICTS = {
    "robust": robust_verdicts,
    "class": class_verdicts,
    "curriculum": curriculum_verdicts,
    "compare": compare_verdicts,
}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def to_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim, columns :data:`COLUMNS`."""
    return pd.DataFrame([asdict(v) for v in verdicts], columns=list(COLUMNS))


def write_verdicts(verdicts: Sequence[Verdict], path: Path) -> Path:
    """``verdicts.csv`` (claim, paper, ours, ci_low, ci_high, holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_frame(verdicts).to_csv(path, index=False)
    return path


def to_markdown(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table (numbers to 2 decimals, dB or steps)."""
    lines = ["| claim | paper | ours | 95% interval | holds |", "|---|---|---|---|---|"]
    for v in verdicts:
        interval = "" if math.isnan(v.ci_low) else f"[{v.ci_low:.2f}, {v.ci_high:.2f}]"
        lines.append(
            f"| {v.claim} | {v.paper} | {v.ours:.2f} | {interval} | {'yes' if v.holds else 'no'} |"
        )
    return "\n".join(lines)
