"""Data sets: a registry from the ``dataset.name`` config key to a builder of the three splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ugr_experiments.data.base import MixtureDataset, collate_mixtures, split_seed

SPLITS = ("train", "valid", "test")
Builder = Callable[[dict[str, Any], int, int, Sequence[str]], dict[str, MixtureDataset]]


def _synthetic(
    cfg: dict[str, Any], seed: int, train_length: int, splits: Sequence[str]
) -> dict[str, MixtureDataset]:
    from ugr_experiments.data.synthetic import build_synthetic_datasets

    built = build_synthetic_datasets(cfg, seed, train_length)  # cheap: nothing is read
    return {split: built[split] for split in splits}


def _corpus(
    cfg: dict[str, Any], seed: int, train_length: int, splits: Sequence[str]
) -> dict[str, MixtureDataset]:
    from ugr_experiments.data.corpus import build_corpus_datasets

    return build_corpus_datasets(cfg, seed, train_length, splits)


DATASETS: dict[str, Builder] = {
    "synthetic": _synthetic,
    "esc50": _corpus,
    "speech": _corpus,
    "cross": _corpus,
    "random_mix": _corpus,
}


def build_datasets(
    cfg: dict[str, Any], seed: int, train_length: int, splits: Sequence[str] = SPLITS
) -> dict[str, MixtureDataset]:
    """Build ``{"train", "valid", "test"}`` (or only ``splits``) from a plain ``dataset`` config.

    Args:
        cfg: the ``dataset`` config group as a plain dict (its ``name`` picks the builder).
        seed: the run's seed; it draws the training mixtures. Validation and test mixtures
            are drawn from ``cfg["eval_seed"]`` (the same for every run of a sweep, so runs
            are scored on the same items and comparisons are paired); without that key,
            from ``seed``.
        train_length: mixtures per training epoch (steps per epoch x batch size).
        splits: the splits to build; only their files need to exist (``ugr-evaluate`` builds
            the test split alone, so a manifest of test files is enough). A split's items do
            not depend on which other splits are built.
    """
    name = cfg.get("name")
    if name not in DATASETS:
        raise ValueError(
            f"unsupported dataset: {name!r}; choose from {sorted(DATASETS)} "
            f"(e.g. `python train.py dataset=synthetic`)"
        )
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {list(SPLITS)}")
    return DATASETS[name](cfg, seed, train_length, tuple(splits))


__all__ = [
    "DATASETS",
    "SPLITS",
    "MixtureDataset",
    "build_datasets",
    "collate_mixtures",
    "split_seed",
]
