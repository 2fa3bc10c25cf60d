"""``train.num_workers``: an integer as it is, ``auto`` from the measured batch and step."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY, compose_config

from ugr_experiments.config import ConfigError, to_plain
from ugr_experiments.data import build_datasets
from ugr_experiments.models import build_model
from ugr_experiments.training import workers
from ugr_experiments.training.distributed import Runtime
from ugr_experiments.training.workers import resolve_workers, workers_needed


@pytest.mark.parametrize(
    ("load_s", "step_s", "cores", "expected"),
    [
        (0.01, 0.2, 2, 0),  # 5 % of a step: mixed in line, no worker process
        (0.0101, 0.2, 16, 1),  # just above: ceil(1.25 * 0.0505) = 1
        (0.3, 0.1, 16, 4),  # ceil(1.25 * 3) = 4
        (0.4, 0.1, 16, 5),  # ceil(1.25 * 4) = 5
        (0.4, 0.1, 4, 3),  # capped at cores - 1
        (0.4, 0.1, 1, 1),  # one core: still one worker
    ],
)
def test_workers_needed_by_hand(load_s, step_s, cores, expected):
    assert workers_needed(load_s, step_s, cores) == expected


def tiny_parts(overrides=()):
    cfg = to_plain(compose_config([*TINY, *overrides]))
    data = build_datasets(cfg["dataset"], cfg["seed"], 8)["train"]
    spec = dict(cfg["model"])
    model = build_model(spec.pop("name"), **spec)
    return cfg, data, model


def test_default_is_auto_and_integers_still_work():
    assert to_plain(compose_config([]))["train"]["num_workers"] == "auto"
    _, data, model = tiny_parts()
    assert resolve_workers(3, data, model, 2, Runtime()) == 3
    assert to_plain(compose_config(["train.num_workers=2"]))["train"]["num_workers"] == 2


def test_auto_measures_leaves_the_model_unchanged_and_says_why(caplog, monkeypatch):
    cfg, data, model = tiny_parts()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(workers, "usable_cores", lambda: 8)
    with caplog.at_level(logging.INFO, logger="ugr_experiments.training.workers"):
        n = resolve_workers("auto", data, model, 2, Runtime())
    assert 0 <= n <= 7
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert f"train.num_workers=auto: {n} worker(s)" in caplog.text


def test_auto_follows_the_rule_on_the_measured_times(monkeypatch):
    cfg, data, model = tiny_parts()
    monkeypatch.setattr(workers, "_time_step", lambda *a: 1e-6)  # data 'slower' than a step
    monkeypatch.setattr(workers, "usable_cores", lambda: 3)
    assert resolve_workers("auto", data, model, 2, Runtime()) == 2  # capped at cores - 1
    monkeypatch.setattr(workers, "_time_step", lambda *a: 1e6)  # a very long step
    assert resolve_workers("auto", data, model, 2, Runtime()) == 0


@pytest.mark.parametrize("bad", ["many", "-1", "1.5", "true"])
def test_bad_num_workers_name_the_key_and_the_choices(bad):
    from ugr_experiments.config import validate

    cfg = to_plain(compose_config(["train.num_workers=auto"]))
    cfg["train"]["num_workers"] = {"-1": -1, "1.5": 1.5, "true": True}.get(bad, bad)
    with pytest.raises(
        ConfigError,
        match=r"train.num_workers must be an integer >= 0 or auto, got .*\(e.g. train.num_",
    ):
        validate(cfg)
