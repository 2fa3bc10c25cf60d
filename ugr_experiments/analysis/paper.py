"""The paper's published numbers (PAPER.md 5) and its setting (PAPER.md 4), for side-by-side tables.

Tzinis, Bralios, Smaragdis, "Unified Gradient Reweighting for Model Biasing with
Applications to Source Separation", ICASSP 2021.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ugr_experiments.analysis.runs import get

CITATION = "Tzinis, Bralios, Smaragdis, ICASSP 2021"

# Table 1 (ESC-50, test SI-SDRi in dB): alpha -> mean, std, q1 q5 q10 q25 q50 q75 q90 q95 q99.
TABLE1: dict[Fraction, tuple[float, ...]] = {
    Fraction(0): (5.0, 9.0, -17.5, -6.9, -2.5, 0.0, 2.7, 9.5, 17.1, 22.0, 31.5),
    Fraction(1, 15): (4.6, 7.8, -14.7, -4.4, -1.4, 0.1, 2.4, 8.4, 15.2, 19.4, 29.0),
    Fraction(1, 10): (3.6, 6.0, -6.5, -2.2, -1.0, -0.1, 1.1, 6.1, 12.1, 16.1, 23.5),
    Fraction(1, 5): (3.0, 4.8, -2.8, -0.9, -0.3, 0.0, 0.6, 4.9, 9.8, 13.2, 19.8),
}

# Class biasing (speech + environmental mixtures, mean test SI-SDRi in dB, mean and +-):
# (gamma speech, gamma env) -> subset -> (mean, spread).
CLASS: dict[tuple[float, float], dict[str, tuple[float, float]]] = {
    (0.0, 0.0): {"speech": (12.2, 0.1), "environmental": (13.1, 0.1), "all": (12.7, 0.1)},
    (0.0, 3.0): {"speech": (11.8, 0.2), "environmental": (13.5, 0.1), "all": (12.6, 0.1)},
    (3.0, 0.0): {"speech": (12.7, 0.1), "environmental": (13.1, 0.1), "all": (12.9, 0.1)},
}

# The setting of PAPER.md 4 (with the [ours] choices of the Sudo rm -rf recipe), as config keys.
SETTING: dict[str, Any] = {
    "dataset.sample_rate": 8000,
    "dataset.segment_seconds": 4.0,
    "dataset.snr_db": [-5.0, 5.0],
    "dataset.n_test": 3000,
    "model.name": "sudormrf",
    "model.num_blocks": 16,
    "model.enc_num_basis": 512,
    "model.in_channels": 512,
    "model.out_channels": 128,
    "model.upsampling_depth": 5,
    "train.batch_size": 28,
    "train.epochs": 120,
    "optim.lr": 0.001,
    "eval.last_epochs": 10,
}
DATASET = {"robust": "esc50", "class": "cross", "compare": "esc50"}  # compare: beyond the paper


# Alphas match the paper's to 3 decimals: alpha=0.0667 (as a user types 1/15) is 1/15.
ALPHA_TOLERANCE = 5e-4


def table1_row(alpha: float) -> tuple[float, ...] | None:
    """The paper's Table 1 row for ``alpha`` (the same to 3 decimals), else None."""
    for key, row in TABLE1.items():
        if abs(float(key) - float(alpha)) < ALPHA_TOLERANCE:
            return row
    return None


def class_row(pair: tuple[float, float]) -> dict[str, tuple[float, float]] | None:
    """The paper's class-table row for ``(gamma speech, gamma env)``, else None."""
    return CLASS.get((float(pair[0]), float(pair[1])))


def _same(ours: Any, paper: Any) -> bool:
    """True when our config value equals the paper's (numbers to 1e-9)."""
    if isinstance(paper, list):
        return isinstance(ours, list) and [float(v) for v in ours] == paper
    if isinstance(paper, float | int) and isinstance(ours, float | int):
        return abs(float(ours) - float(paper)) < 1e-9
    return ours == paper


def setting_differences(cfg: dict[str, Any], kind: str) -> list[str]:
    """Where a run's config departs from the paper's setting: ``"key=ours (paper: x)"``."""
    diffs = []
    dataset = DATASET.get(kind)
    if dataset is not None and get(cfg, "dataset.name") != dataset:
        diffs.append(f"dataset.name={get(cfg, 'dataset.name')} (paper: {dataset})")
    for key, paper in SETTING.items():
        ours = get(cfg, key)
        if not _same(ours, paper):
            diffs.append(f"{key}={ours} (paper: {paper})")
    return diffs
