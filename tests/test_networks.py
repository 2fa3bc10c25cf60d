"""Every network wherever a model is used: training (each weighting), resume, ugr-evaluate,
ugr-export / load_model, ugr-separate; Conv-TasNet with and without torchaudio."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import ROOT, TINY, compose_config, torchaudio_works
from test_resume import assert_same_run, crash_at_step
from test_train import check_run_dir

from ugr_experiments.inference import evaluate, export, separate
from ugr_experiments.models import TorchaudioUnavailableError, build_model
from ugr_experiments.models import convtasnet as convtasnet_module
from ugr_experiments.training.loop import run

NETS = ["sudormrf_improved_cpu", "sudormrf_gc_cpu"]
WEIGHTINGS = {
    "uniform": [],
    "robust": ["alpha=0.2"],
    "curriculum": [],
    "class": ["weighting.gamma.speech=3"],
}
# Conv-TasNet shrunk to train in seconds (its own keys: the Sudo rm -rf ones do not apply).
TINY_TASNET = [o for o in TINY if not o.startswith("model.")] + [
    "model.enc_num_feats=32",
    "model.msk_num_feats=16",
    "model.msk_num_hidden_feats=32",
    "model.msk_num_layers=2",
    "model.msk_num_stacks=1",
]


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
@pytest.mark.parametrize("net", NETS)
def test_each_network_trains_with_each_weighting(tmp_path, net, weighting):
    overrides = [f"model={net}", f"weighting={weighting}", *WEIGHTINGS[weighting]]
    run(compose_config(TINY + overrides), tmp_path)
    check_run_dir(tmp_path)


def test_multichannel_gc_is_refused_before_training():
    from ugr_experiments.config import ConfigError, to_plain

    with pytest.raises(ConfigError, match=r"model.in_audio_channels=2: .* mono"):
        to_plain(compose_config(["model=sudormrf_gc_cpu", "model.in_audio_channels=2"]))


def test_a_crashed_gc_run_resumes_bit_identically(tmp_path, monkeypatch):
    cfg = TINY + ["model=sudormrf_gc_cpu", "train.epochs=2", "train.steps_per_epoch=3"]
    cfg += ["checkpoint.every_steps=1", "weighting=robust", "alpha=0.1"]
    run(compose_config(cfg), tmp_path / "whole")
    with monkeypatch.context() as patch:
        crash_at_step(patch, 5)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(compose_config(cfg), tmp_path / "crashed")
    run(compose_config(cfg + ["resume=true"]), tmp_path / "crashed")
    assert_same_run(tmp_path / "whole", tmp_path / "crashed")


@pytest.fixture(scope="module", params=NETS)
def trained(request, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp(request.param)
    run(compose_config(TINY + [f"model={request.param}"]), run_dir)
    return run_dir


def test_evaluate_export_and_separate(trained, tmp_path):
    """`ugr-evaluate` reproduces the run's table; the export loads with its padding multiple
    and number of sources; `ugr-separate` writes one file per source, chunked on that grid."""
    evaluate.main([str(trained), "-o", str(tmp_path / "eval"), "--no-progress"])
    ours = pd.read_csv(tmp_path / "eval" / "sisdri_table.csv", index_col=0)
    theirs = pd.read_csv(trained / "sisdri_table.csv", index_col=0)
    pd.testing.assert_frame_equal(ours, theirs)
    export.main([str(trained), "-o", str(tmp_path / "model.pt")])
    loaded = export.load_model(tmp_path / "model.pt")
    assert loaded.num_sources == 2
    assert separate.model_multiple(loaded.model) == loaded.model.lcm == 10 * 2**2
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "mix.wav", 0.1 * rng.standard_normal(8000 * 5), 8000)
    args = [str(tmp_path / "model.pt"), str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out")]
    separate.main([*args, "--chunk-seconds", "2", "--no-progress"])
    for k in (1, 2):
        audio, rate = sf.read(tmp_path / "out" / f"mix_s{k}.wav")
        assert rate == 8000 and len(audio) == 8000 * 5 and np.isfinite(audio).all()


@pytest.mark.slow
def test_readme_improved_robust_command(tmp_path):
    """`python train.py model=sudormrf_improved_cpu weighting=robust alpha=0.2` (shrunk)."""
    args = ["model=sudormrf_improved_cpu", "weighting=robust", "alpha=0.2", "train.epochs=1"]
    args += ["train.steps_per_epoch=6", "dataset.segment_seconds=0.5", "dataset.n_valid=4"]
    args += ["dataset.n_test=4", "train.progress=false", f"hydra.run.dir={tmp_path}/run"]
    out = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Test SI-SDRi" in out.stdout
    check_run_dir(tmp_path / "run")


# ---------------------------------------------------------------------------------------------
# Conv-TasNet (torchaudio)
# ---------------------------------------------------------------------------------------------

PAIRS = r"`torch==2\.11\.0 torchaudio==2\.11\.0`, `torch==2\.9\.1 torchaudio==2\.9\.\*`"
INSTALL = 'pip install -e ".[torchaudio]"'


@pytest.mark.skipif(torchaudio_works(), reason="torchaudio is installed and works here")
def test_convtasnet_without_torchaudio_stops_before_any_work(tmp_path):
    out = subprocess.run(
        [sys.executable, "train.py", "model=convtasnet", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    message = out.stdout + out.stderr
    assert "model.name='convtasnet'" in message and INSTALL in message
    assert pytest.importorskip("re").search(PAIRS, message)
    assert "Traceback" not in message and "epoch" not in message
    assert not (tmp_path / "run" / "config.yaml").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(TorchaudioUnavailableError, match=PAIRS):
        build_model("convtasnet")


def test_a_torchaudio_for_another_torch_is_named(monkeypatch):
    versions = {"torch": "2.13.0+cpu", "torchaudio": "2.11.0"}
    monkeypatch.setattr(metadata, "version", versions.__getitem__)
    with pytest.raises(TorchaudioUnavailableError) as err:
        convtasnet_module.require_torchaudio()
    message = str(err.value)
    assert "torch 2.13.0+cpu with torchaudio 2.11.0 does not work" in message
    assert INSTALL in message


@pytest.mark.torchaudio
def test_convtasnet_is_torchaudios_network():
    model = build_model("convtasnet")
    assert sum(p.numel() for p in model.parameters()) == 4_984_881
    assert model.lcm == 8 and model.num_sources == 2
    small = build_model("convtasnet_cpu", num_sources=3)
    for length in (1, 999):
        assert small(torch.randn(2, length)).shape == (2, 3, length)


@pytest.mark.torchaudio
def test_convtasnet_train_py_writes_tables_and_exports(tmp_path):
    """`python train.py model=convtasnet ...` (shrunk), then ugr-export and load_model."""
    args = ["model=convtasnet", "weighting=robust", "alpha=0.2", *TINY_TASNET]
    out = subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Test SI-SDRi" in out.stdout
    check_run_dir(tmp_path / "run")
    export.main([str(tmp_path / "run"), "-o", str(tmp_path / "model.pt")])
    loaded = export.load_model(tmp_path / "model.pt")
    assert loaded.model(torch.randn(1, 1234)).shape == (1, 2, 1234)
