"""Uncertainty of SI-SDRi statistics: bootstrap intervals over test items, paired comparisons.

The unit of resampling is the *test item*, a (mixture, source) pair of one run's test set.
An item evaluated at several epochs keeps its epochs together (a row of a ``(n, E)``
matrix), so the bootstrap reproduces the table's own protocol: statistics per evaluation
epoch, averaged over the epochs, then over the runs (seeds). Each run's items are resampled
on their own (runs made with ``dataset.eval_seed=null`` have a test set per seed;
``analysis.verdicts`` resamples shared items jointly where every run has the same ones).

The statistics are those of :data:`ugr_experiments.analysis.tables.STAT_COLUMNS`: mean, population
std and the percentiles 1 ... 99 (numpy's linear interpolation).

A *paired* comparison takes two runs evaluated on the same test items (same seed and data
set, different weighting) and resamples the items once for both, so that the interval of a
difference reflects how consistently the items move, not how spread they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ugr_experiments.analysis.tables import PERCENTILES, STAT_COLUMNS

__all__ = [
    "bootstrap",
    "epoch_averaged",
    "gaussian_kde",
    "interval",
    "kde_bandwidth",
    "paired_bootstrap",
    "run_averaged",
    "sign_flip_pvalue",
    "statistics",
]

# Bootstrap replicates computed at once (bounds memory: chunk x items x epochs floats).
_CHUNK = 50


def statistics(values: np.ndarray) -> np.ndarray:
    """Mean, population std and the percentiles of ``values`` along the last axis.

    Shape:
        values (..., n) -> (..., 11), columns in the order of ``STAT_COLUMNS``.
    """
    values = np.asarray(values, dtype=np.float64)
    quantiles = np.moveaxis(np.percentile(values, PERCENTILES, axis=-1), 0, -1)
    first = np.stack([values.mean(-1), values.std(-1)], axis=-1)
    return np.concatenate([first, quantiles], axis=-1)


def epoch_averaged(items: np.ndarray) -> np.ndarray:
    """Statistics over the items at each evaluation epoch, averaged over the epochs.

    Shape:
        items (..., n, E) -> (..., 11).
    """
    return statistics(np.swapaxes(np.asarray(items, dtype=np.float64), -1, -2)).mean(-2)


def run_averaged(runs: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`epoch_averaged` of each run's ``(n, E)`` item matrix, averaged over the runs."""
    if not runs:
        raise ValueError("run_averaged needs at least one (items x epochs) matrix")
    return np.mean([epoch_averaged(m) for m in runs], axis=0)


def _check(matrix: np.ndarray) -> np.ndarray:
    """An ``(items, epochs)`` float matrix, or a ValueError naming the shape."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(f"expected an (items, epochs) matrix, got shape {matrix.shape}")
    return matrix


def bootstrap(
    runs: Sequence[np.ndarray], n_boot: int = 1000, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Bootstrap replicates of :func:`run_averaged`, resampling each run's items.

    Args:
        runs: one ``(n_r, E_r)`` matrix per run (items x evaluation epochs).
        n_boot: number of replicates.
        rng: the random generator (seed it for reproducible intervals).

    Shape:
        -> (n_boot, 11).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    matrices = [_check(m) for m in runs]
    total = np.zeros((n_boot, len(STAT_COLUMNS)))
    for matrix in matrices:
        n = matrix.shape[0]
        for start in range(0, n_boot, _CHUNK):
            count = min(_CHUNK, n_boot - start)
            index = rng.integers(0, n, size=(count, n))
            total[start : start + count] += epoch_averaged(matrix[index])  # (count, n, E)
    return total / len(matrices)


def paired_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Difference ``stat(a) - stat(b)`` and its bootstrap replicates, items resampled jointly.

    Args:
        pairs: per run pair (e.g. per seed), the matrices of the two runs on the *same* items
            in the same row order: ``a`` is ``(n, E_a)``, ``b`` is ``(n, E_b)``.
        n_boot: number of replicates.
        rng: the random generator.

    Returns:
        ``(difference, replicates)``: (11,) and (n_boot, 11), averaged over the pairs.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    checked = [(_check(a), _check(b)) for a, b in pairs]
    for a, b in checked:
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"paired runs must share their items; got {a.shape[0]} vs {b.shape[0]}"
            )
    point = np.mean([epoch_averaged(a) - epoch_averaged(b) for a, b in checked], axis=0)
    total = np.zeros((n_boot, len(STAT_COLUMNS)))
    for a, b in checked:
        n = a.shape[0]
        for start in range(0, n_boot, _CHUNK):
            count = min(_CHUNK, n_boot - start)
            index = rng.integers(0, n, size=(count, n))
            total[start : start + count] += epoch_averaged(a[index]) - epoch_averaged(b[index])
    return point, total / len(checked)


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval: the ``(1 -+ level) / 2`` quantiles of the replicates.

    Shape:
        replicates (n_boot, k) -> ((k,), (k,)).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r} (e.g. 0.95)")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return low, high


def sign_flip_pvalue(
    differences: np.ndarray, n_perm: int = 10000, rng: np.random.Generator | None = None
) -> float:
    """Two-sided p-value of "the mean paired difference is 0" by random sign flips.

    Under the null hypothesis each item's difference is as likely to have either sign; the
    p-value is the share of sign-flipped means at least as far from 0 as the observed one,
    counting the observed assignment itself (so it is never 0).

    Shape:
        differences (n,) -> scalar.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    d = np.asarray(differences, dtype=np.float64).reshape(-1)
    observed = abs(d.mean())
    hits = 0
    step = max(1, 2_000_000 // max(d.size, 1))  # about 16 MB of signs at a time
    for start in range(0, n_perm, step):
        count = min(step, n_perm - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(count, d.size))
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def kde_bandwidth(values: np.ndarray) -> float:
    """Silverman's rule: ``0.9 min(std, IQR / 1.34) n^(-1/5)`` (std alone if the IQR is 0)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    iqr = np.subtract(*np.percentile(values, [75, 25])) / 1.34
    scale = min(std, iqr) if iqr > 0 else std
    if scale <= 0:
        raise ValueError("cannot estimate a density of constant values (zero spread)")
    return float(0.9 * scale * values.size ** (-0.2))


def gaussian_kde(
    values: np.ndarray, grid: np.ndarray, bandwidth: float | None = None
) -> np.ndarray:
    """Gaussian kernel density estimate of ``values`` at the points of ``grid``.

    Args:
        values: the samples.
        grid: where to evaluate the density.
        bandwidth: the kernel's std; default :func:`kde_bandwidth`.

    Shape:
        values (n,), grid (G,) -> (G,); integrates to 1 over the real line.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    grid = np.asarray(grid, dtype=np.float64)
    h = kde_bandwidth(values) if bandwidth is None else float(bandwidth)
    density = np.zeros_like(grid)
    step = max(1, 4_000_000 // max(grid.size, 1))
    for start in range(0, values.size, step):
        z = (grid[:, None] - values[None, start : start + step]) / h  # (G, chunk)
        density += np.exp(-0.5 * z**2).sum(axis=1)
    return density / (values.size * h * np.sqrt(2.0 * np.pi))
