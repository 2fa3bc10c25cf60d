"""Data sets: a registry from the ``dataset.name`` config key to a builder of the three splits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ugr_experiments.data.base import MixtureDataset, collate_mixtures, split_seed

Builder = Callable[[dict[str, Any], int, int], dict[str, MixtureDataset]]


def _synthetic(cfg: dict[str, Any], seed: int, train_length: int) -> dict[str, MixtureDataset]:
    from ugr_experiments.data.synthetic import build_synthetic_datasets

    return build_synthetic_datasets(cfg, seed, train_length)


def _corpus(cfg: dict[str, Any], seed: int, train_length: int) -> dict[str, MixtureDataset]:
    from ugr_experiments.data.corpus import build_corpus_datasets

    return build_corpus_datasets(cfg, seed, train_length)


DATASETS: dict[str, Builder] = {
    "synthetic": _synthetic,
    "esc50": _corpus,
    "speech": _corpus,
    "cross": _corpus,
    "random_mix": _corpus,
}


def build_datasets(cfg: dict[str, Any], seed: int, train_length: int) -> dict[str, MixtureDataset]:
    """Build ``{"train", "valid", "test"}`` from a plain ``dataset`` config dict.

    Args:
        cfg: the ``dataset`` config group as a plain dict (its ``name`` picks the builder).
        seed: the run's seed; it draws the training mixtures. Validation and test mixtures
            are drawn from ``cfg["eval_seed"]`` (the same for every run of a sweep, so runs
            are scored on the same items and comparisons are paired); without that key,
            from ``seed``.
        train_length: mixtures per training epoch (steps per epoch x batch size).
    """
    name = cfg.get("name")
    if name not in DATASETS:
        raise ValueError(
            f"unsupported dataset: {name!r}; choose from {sorted(DATASETS)} "
            f"(e.g. `python train.py dataset=synthetic`)"
        )
    return DATASETS[name](cfg, seed, train_length)


__all__ = ["DATASETS", "MixtureDataset", "build_datasets", "collate_mixtures", "split_seed"]
