"""dataset.eval_seed: every training seed is scored on the same validation and test mixtures."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED_DATA, compose_config, write_shared_manifests

from ugr_experiments.config import ConfigError, to_plain, validate
from ugr_experiments.data import build_datasets


def _splits(dataset_cfg: dict, seed: int) -> dict:
    return build_datasets(dataset_cfg, seed, train_length=4)


def _same(a, b, n: int = 4) -> bool:
    return all(torch.equal(a[i]["mixture"], b[i]["mixture"]) for i in range(n))


def _synthetic(**extra) -> dict:
    cfg = to_plain(compose_config(["dataset.n_valid=4", "dataset.n_test=4"]))["dataset"]
    return {**cfg, **extra}


def test_eval_sets_are_fixed_across_training_seeds_and_training_data_is_not() -> None:
    cfg = _synthetic()
    assert cfg["eval_seed"] == 0  # the default of every dataset config
    a, b = _splits(cfg, seed=1), _splits(cfg, seed=2)
    assert _same(a["valid"], b["valid"]) and _same(a["test"], b["test"])
    assert not _same(a["train"], b["train"])
    assert not _same(a["valid"], a["test"])  # the two splits are still different draws


def test_another_eval_seed_draws_other_test_mixtures() -> None:
    a, b = _splits(_synthetic(), seed=1), _splits(_synthetic(eval_seed=5), seed=1)
    assert not _same(a["test"], b["test"])
    assert _same(a["train"], b["train"])  # the training stream is the run seed's alone


def test_null_eval_seed_follows_the_run_seed() -> None:
    cfg = _synthetic(eval_seed=None)
    assert not _same(_splits(cfg, 1)["test"], _splits(cfg, 2)["test"])
    assert _same(_splits(cfg, 3)["test"], _splits(_synthetic(eval_seed=3), 9)["test"])


@pytest.mark.skipif(not (SHARED_DATA / "esc50_mini").is_dir(), reason="no ../shared/data")
def test_corpus_test_items_are_the_same_for_every_seed(tmp_path) -> None:
    manifests = write_shared_manifests(tmp_path)
    overrides = ["dataset=cross", f"paths.manifests={manifests}", "dataset.n_test=4"]
    cfg = to_plain(compose_config([*overrides, "dataset.segment_seconds=0.5"]))["dataset"]
    a, b = _splits(cfg, seed=7), _splits(cfg, seed=8)
    assert _same(a["test"], b["test"])
    assert [a["test"][i]["info"] for i in range(4)] == [b["test"][i]["info"] for i in range(4)]


@pytest.mark.parametrize("value", [-1, 1.5, "abc"])
def test_bad_eval_seed_is_refused_with_the_fix(value) -> None:
    with pytest.raises(ConfigError, match=r"dataset.eval_seed must be an integer >= 0 or null"):
        validate(to_plain(compose_config([f"dataset.eval_seed={value}"])))
