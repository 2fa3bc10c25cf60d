"""The training loop end to end, on tiny configs (fast) and as the README types it (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, TINY, compose_config

from ugr_experiments.analysis.tables import PERCENTILES
from ugr_experiments.training.checkpoint import load_checkpoint
from ugr_experiments.training.loop import run


def check_run_dir(run_dir, epochs_evaluated: int = 1) -> pd.DataFrame:
    rows = pd.read_csv(run_dir / "per_source_sisdri.csv")
    assert list(rows.columns[:4]) == ["epoch", "mixture", "source", "class"]
    assert rows["epoch"].nunique() == epochs_evaluated
    assert (rows["sisdri"] - (rows["sisdr"] - rows["input_sisdr"])).abs().max() < 1e-4
    table = pd.read_csv(run_dir / "sisdri_table.csv", index_col=0)
    assert table.index[0] == "all"
    assert [f"q{q}" for q in PERCENTILES] == [c for c in table.columns if c.startswith("q")]
    per_epoch = rows.groupby("epoch")["sisdri"].mean().mean()
    assert table.loc["all", "mean"] == pytest.approx(per_epoch, abs=1e-6)
    assert "population" in (run_dir / "sisdri_table.md").read_text()
    info = json.loads((run_dir / "run.json").read_text())
    assert {"git_commit", "versions", "device", "seed", "wall_seconds"} <= set(info)
    return rows


def test_tiny_run_writes_every_output(tmp_path):
    info = run(compose_config(TINY + ["train.epochs=2"]), tmp_path)
    rows = check_run_dir(tmp_path)
    assert len(rows) == 4 * 2  # n_test mixtures x 2 sources
    assert set(rows["group"]) <= {"speech", "environmental"}
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2] and list(history["step"]) == [2, 4]
    assert info["steps"] == 4
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and yaml.safe_load(state["config"])["seed"] == 0
    assert any((tmp_path / "tb").iterdir())


def test_last_epochs_protocol_averages_per_epoch_statistics(tmp_path):
    run(compose_config(TINY + ["train.epochs=3", "eval.last_epochs=2"]), tmp_path)
    rows = check_run_dir(tmp_path, epochs_evaluated=2)
    assert sorted(rows["epoch"].unique()) == [2, 3]


def test_training_moves_weights_and_is_seeded(tmp_path):
    cfg = TINY + ["weighting=robust", "alpha=1/15"]
    run(compose_config(cfg), tmp_path / "a")
    run(compose_config(cfg), tmp_path / "b")
    a = pd.read_csv(tmp_path / "a" / "per_source_sisdri.csv")
    b = pd.read_csv(tmp_path / "b" / "per_source_sisdri.csv")
    pd.testing.assert_frame_equal(a, b)  # same seed, same CPU: same numbers
    saved = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    torch.manual_seed(0)
    from ugr_experiments.models import build_model

    spec = {
        k.split(".")[1]: int(v) for k, v in (o.split("=") for o in TINY if o.startswith("model."))
    }
    fresh = build_model("sudormrf", num_sources=2, **spec).state_dict()
    assert any(not torch.equal(saved[k], fresh[k]) for k in fresh)


@pytest.mark.parametrize("weighting", ["uniform", "curriculum", "class"])
def test_each_weighting_mode_trains(tmp_path, weighting):
    extra = ["weighting.gamma.speech=3"] if weighting == "class" else []
    run(compose_config(TINY + [f"weighting={weighting}"] + extra), tmp_path)
    check_run_dir(tmp_path)


def _train_py(args: list[str], tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_readme_fraction_alpha_command(tmp_path):
    """`python train.py weighting=robust alpha=1/15` (shrunk): one run dir, no nesting."""
    out = _train_py(
        ["weighting=robust", "alpha=1/15", *TINY, f"hydra.run.dir={tmp_path}/run"], tmp_path
    )
    assert "Test SI-SDRi" in out.stdout
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["weighting"]["alpha"] == pytest.approx(1 / 15)
    check_run_dir(tmp_path / "run")


@pytest.mark.slow
def test_readme_multirun_sweep_makes_one_dir_per_job(tmp_path):
    _train_py(
        ["-m", "weighting=robust", "alpha=0,1/10,0.2", *TINY, f"hydra.sweep.dir={tmp_path}/sweep"],
        tmp_path,
    )
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    alphas = [yaml.safe_load((p / "config.yaml").read_text())["alpha"] for p in jobs]
    assert alphas == pytest.approx([0.0, 0.1, 0.2])
    for job in jobs:
        check_run_dir(job)


@pytest.mark.slow
def test_quick_start_default_run_reaches_5_db(tmp_path):
    """The README's quick start, `python train.py` with the defaults, unchanged."""
    out = _train_py([f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=1200)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    print(out.stdout[-2000:], f"wall {info['wall_seconds']} s")
    assert info["test_sisdri_mean"] >= 5.0
    check_run_dir(tmp_path / "run")


def test_deferred_host_sync_gives_the_same_run(tmp_path, monkeypatch):
    """On CUDA the figures of a step are read only at logging/checkpoint steps (no sync in
    between). Forced on here: the run, its checkpoints and its logs must not change."""
    import ugr_experiments.training.loop as train_module

    cfg = TINY + [
        "train.epochs=2",
        "train.steps_per_epoch=5",
        "train.log_every=3",
        "checkpoint.every_steps=4",
        "weighting=robust",
        "alpha=0.2",
    ]
    run(compose_config(cfg), tmp_path / "plain")
    calls = []

    def deferred(device):
        calls.append(device)
        return True

    monkeypatch.setattr(train_module, "defer_host_sync", deferred)
    run(compose_config(cfg), tmp_path / "deferred")
    assert calls
    for name in ("per_source_sisdri.csv", "sisdri_table.csv"):
        assert (tmp_path / "plain" / name).read_bytes() == (
            tmp_path / "deferred" / name
        ).read_bytes()
    a, b = (pd.read_csv(tmp_path / d / "history.csv") for d in ("plain", "deferred"))
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    last_a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    last_b = load_checkpoint(tmp_path / "deferred" / "checkpoints" / "last.pt")
    assert all(torch.equal(last_a["model"][k], last_b["model"][k]) for k in last_a["model"])
