"""The real config tree: every option composes and builds; bad values stop before training."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY, compose_config, torchaudio_works

from ugr_experiments.config import ConfigError, parse_number, to_plain
from ugr_experiments.data import build_datasets
from ugr_experiments.models import build_model
from ugr_experiments.weighting import build_weighting


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("text,value", [("1/15", 1 / 15), ("0.2", 0.2), (0.1, 0.1), ("3", 3.0)])
def test_parse_number_accepts_numbers_and_fractions(text, value):
    assert parse_number(text, "alpha") == pytest.approx(value)


@pytest.mark.parametrize("bad", ["abc", "1/0", True, "nan", "1/x"])
def test_parse_number_rejects_with_key_and_fix(bad):
    with pytest.raises(ConfigError, match="alpha"):
        parse_number(bad, "alpha")


def test_alpha_fraction_flows_into_robust_weighting():
    cfg = to_plain(compose_config(["weighting=robust", "alpha=1/15"]))
    assert cfg["alpha"] == pytest.approx(1 / 15)
    assert cfg["weighting"]["alpha"] == pytest.approx(1 / 15)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["weighting=robust", "alpha=-0.1"], r"alpha must be >= 0.*got -0.1"),
        (["weighting=robust", "alpha=abc"], r"alpha must be a number or a fraction.*'abc'"),
        (["train.batch_size=0"], r"train.batch_size must be an integer >= 1, got 0"),
        (["optim.lr=-1"], r"optim.lr must be > 0"),
        (["dataset.snr_db=[5,-5]"], r"dataset.snr_db must be \[low, high\]"),
        (["device=tpu"], r"device must be one of auto, cpu, cuda; got 'tpu'"),
        (["eval.last_epochs=99"], r"eval.last_epochs=99 exceeds train.epochs"),
    ],
)
def test_bad_values_are_refused_with_a_message(overrides, match):
    with pytest.raises(ConfigError, match=match):
        to_plain(compose_config(overrides))


def test_every_group_option_composes_and_builds():
    """Each option of each group composes with the rest of the defaults and builds (shrunk)."""
    small_model = [o for o in TINY if o.startswith("model.")]
    for model in options("model"):
        if model.startswith("convtasnet") and not torchaudio_works():
            with pytest.raises(ConfigError, match=r"torchaudio.*torch==2\.11\.0 torchaudio"):
                to_plain(compose_config([f"model={model}"]))
            continue
        cfg = to_plain(compose_config([f"model={model}"]))
        spec = dict(cfg["model"])
        net = build_model(spec.pop("name"), **spec)
        assert sum(p.numel() for p in net.parameters()) > 0
    for weighting in options("weighting"):
        cfg = to_plain(compose_config([f"weighting={weighting}"]))
        build_weighting(cfg["weighting"], ["voice_low", "noise"], ["environmental", "speech"])
    cfg = to_plain(compose_config(small_model + ["dataset.segment_seconds=0.25"]))
    data = build_datasets(cfg["dataset"], 0, 4)
    spec = dict(cfg["model"])
    net = build_model(spec.pop("name"), **spec)
    assert net(data["test"][0]["mixture"][None]).shape == (1, 2, 2000)
    for optim in options("optim"):
        to_plain(compose_config([f"optim={optim}"]))


def test_real_corpus_dataset_options_compose():
    for dataset in options("dataset"):
        cfg = to_plain(compose_config([f"dataset={dataset}"]))
        assert cfg["dataset"]["name"] == dataset or dataset == "synthetic"
        assert cfg["dataset"]["sample_rate"] == 8000


@pytest.mark.parametrize(
    "override,needle",
    [
        ("weighting=robst", "weighting/robst"),
        ("model=sudormrf_2x", "model/sudormrf_2x"),
        ("dataset=wsj9", "dataset/wsj9"),
    ],
)
def test_unknown_group_option_lists_the_choices(override, needle):
    """Hydra names the missing option and lists the available ones; nothing trains."""
    out = subprocess.run(
        [sys.executable, "train.py", override],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert needle in out.stderr and "Available options" in out.stderr
    assert "epoch" not in out.stdout + out.stderr


def test_unknown_gamma_class_is_refused_before_training(tmp_path):
    from ugr_experiments.training.loop import run

    cfg = compose_config(TINY + ["weighting=class", "+weighting.gamma.birdsong=3"])
    with pytest.raises(ValueError, match="birdsong") as err:
        run(cfg, tmp_path / "run")
    assert "speech" in str(err.value) and "voice_low" in str(err.value)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_cpu_preset_runs_a_forward_pass_of_any_length():
    cfg = to_plain(compose_config())
    spec = dict(cfg["model"])
    net = build_model(spec.pop("name"), **spec)
    for length in (1000, 1237):
        assert net(torch.zeros(1, length)).shape == (1, 2, length)


def test_bad_value_ends_a_single_run_with_the_message_alone(tmp_path):
    """No traceback of our internals for a user's typo; exit status 1; nothing trained."""
    out = subprocess.run(
        [sys.executable, "train.py", "train.batch_size=abc", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error: train.batch_size must be an integer >= 1, got 'abc' (e.g. train.batch_size=8)"
    )
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
