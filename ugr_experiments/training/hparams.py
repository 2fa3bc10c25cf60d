"""TensorBoard HParams: a run's hyper-parameters beside its final test figures.

At the end of a run, rank 0 writes one HParams session into the run's own ``tb/`` folder, so
``tensorboard --logdir <sweep dir>`` opens a sweep as one table (HPARAMS tab): one row per run,
one column per hyper-parameter, and the test SI-SDRi statistics as metrics to sort and plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ugr_experiments.training.collectives import Writer

# Weighting keys that tell runs of a sweep apart (conf/weighting/*.yaml); absent keys are left out.
WEIGHTING_KEYS = (
    "name",
    "alpha",
    "beta0",
    "shape",
    "length",
    "length_unit",
    "fraction",
    "eta",
    "t_in",
    "t_out",
    "groups",
)
# Root keys that name an entry of an experiment's table (conf/experiment/*.yaml), where present.
EXPERIMENT_KEYS = ("schedule", "gamma_pair")
# Columns of the ``all`` row of the test table logged as metrics (analysis.tables.summarize).
TEST_STATISTICS = ("mean", "std", "q1", "q5", "q50")
HParam = int | float | str | bool


def run_hparams(cfg: dict[str, Any], steps: int) -> dict[str, HParam]:
    """The hyper-parameters of a run, flat and keyed by config path (``weighting.gamma.speech``).

    Args:
        cfg: the run's plain config.
        steps: optimiser steps the run took.
    """
    weighting = cfg["weighting"]
    out: dict[str, HParam] = {"alpha": cfg["alpha"], "seed": cfg["seed"]}
    out.update({f"weighting.{k}": weighting[k] for k in WEIGHTING_KEYS if k in weighting})
    for cls, gamma in (weighting.get("gamma") or {}).items():
        out[f"weighting.gamma.{cls}"] = gamma
    out.update({key: cfg[key] for key in EXPERIMENT_KEYS if key in cfg})
    out.update({f"model.{k}": v for k, v in cfg["model"].items()})
    out["dataset.name"] = cfg["dataset"]["name"]
    out["optim.lr"] = cfg["optim"]["lr"]
    out["train.batch_size"] = cfg["train"]["batch_size"]
    out["steps"] = steps
    # HParams holds numbers, strings and booleans only: anything else (None, lists) as text.
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in out.items()}


def final_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``test/sisdri_<statistic>`` of the ``all`` row of the run's SI-SDRi table."""
    row = overall(table, TEST_STATISTICS)
    return {f"test/sisdri_{stat}": row[stat] for stat in TEST_STATISTICS}


def overall(table: pd.DataFrame, stats: Sequence[str]) -> dict[str, float]:
    """Columns ``stats`` of the ``all`` row of an SI-SDRi table (``analysis.tables.summarize``)
    as plain floats."""
    values = table.loc["all", list(stats)].to_numpy(dtype=float).reshape(-1)  # (len(stats),)
    return {stat: float(v) for stat, v in zip(stats, values, strict=True)}


def log_hparams(
    writer: Writer, hparams: dict[str, HParam], metrics: dict[str, float], step: int
) -> None:
    """Write one HParams session into ``writer``'s own folder (not a timestamped subfolder).

    ``run_name="."`` makes ``add_hparams`` write next to the run's scalars, so TensorBoard
    shows the session as the run itself; the metrics are also logged as scalars at ``step``.
    """
    writer.add_hparams(hparams, metrics, run_name=".", global_step=step)
