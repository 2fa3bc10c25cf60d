"""Every failure ends clean, early and named; nothing is silently wrong (issue 13, part A).

A failure that says what to do ends a single run with one line (``error: ...``) and status 1;
a refused command leaves an existing run byte for byte as it was and a refused new run leaves
no folder; SIGINT and SIGTERM stop every phase of a run with status 0; a run's audio files
and, on resume, its data are checked before any work.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import ROOT, TINY, compose_config

import ugr_experiments.training.loop as loop_module
from ugr_experiments.config import ConfigError, result_differences, to_plain
from ugr_experiments.config.checks import ConfigError as CheckError
from ugr_experiments.config.models import IntKey, ModelKeys, register_model_keys
from ugr_experiments.config.rundir import output_dir_problem
from ugr_experiments.data.checks import DataError, check_data, manifest_digest
from ugr_experiments.data.manifest import write_manifest
from ugr_experiments.training.bookkeeping import TrainingDiverged
from ugr_experiments.training.checkpoint import CheckpointError
from ugr_experiments.training.loop import run

DIVERGE = ["optim.lr=1e8", "optim.grad_clip=null"]


def train_py(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "train.progress=false", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder``: its path and the SHA-256 of its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(folder))] = digest
    return out


def assert_one_line_error(out: subprocess.CompletedProcess, message: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "Traceback" not in text and "HYDRA_FULL_ERROR" not in text, text[-3000:]
    assert f"error: {message}" in out.stderr, out.stderr[-3000:]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run written by `python train.py` (so it holds Hydra's files too)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    out = train_py([*TINY, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


# ---------------------------------------------------------------------------------------------
# Items 1-3: unusable checkpoints, divergence, validation that is never finite
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["all", "best"])
def test_unusable_checkpoints_end_in_one_line_and_leave_the_run(finished, tmp_path, damaged):
    run_dir = shutil.copytree(finished, tmp_path / "run")
    names = ["last.pt", "best.pt"] if damaged == "all" else ["best.pt"]
    for name in names:
        os.truncate(run_dir / "checkpoints" / name, 1000)
    before = tree(run_dir)
    out = train_py([*TINY, "resume=true", f"hydra.run.dir={run_dir}"])
    message = "no usable checkpoint in" if damaged == "all" else "checkpoint "
    assert_one_line_error(out, message)
    assert "best.pt is truncated" in out.stderr
    assert tree(run_dir) == before


@pytest.mark.slow
def test_a_diverged_run_ends_in_one_line(tmp_path):
    out = train_py([*TINY, *DIVERGE, "train.max_bad_steps=1", f"hydra.run.dir={tmp_path}/r"])
    assert_one_line_error(out, "1 non-finite losses or gradients in a row")
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file()


def test_validation_never_finite_stops_after_the_epoch_keeping_last_pt(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_module, "validate", lambda *args: math.nan)
    with pytest.raises(TrainingDiverged, match="no epoch so far had a finite one") as err:
        run(compose_config(TINY + ["train.epochs=3"]), tmp_path)
    assert "validation SI-SDRi of epoch 1 is nan" in str(err.value)
    assert "lower optim.lr" in str(err.value)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "checkpoints" / "best.pt").exists()
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1  # stopped early, not at the end


def test_a_non_finite_score_after_a_finite_one_is_only_warned_about(tmp_path, monkeypatch, caplog):
    scores = iter([1.0, math.nan])
    monkeypatch.setattr(loop_module, "validate", lambda *args: next(scores))
    with caplog.at_level(logging.WARNING):
        info = run(compose_config(TINY + ["train.epochs=2"]), tmp_path)
    assert info["best_epoch"] == 1 and "validation SI-SDRi of epoch 2 is nan" in caplog.text


def test_resuming_a_run_without_finite_validation_is_refused_cleanly(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "validate", lambda *args: math.nan)
        with pytest.raises(TrainingDiverged):
            run(compose_config(TINY), tmp_path)
    with pytest.raises(CheckpointError, match="no validation SI-SDRi was finite"):
        run(compose_config(TINY + ["resume=true"]), tmp_path)


@pytest.mark.slow
def test_never_finite_validation_ends_in_one_line(tmp_path):
    args = [*TINY, *DIVERGE, "train.max_bad_steps=50", f"hydra.run.dir={tmp_path}/r"]
    out = train_py(args)
    assert_one_line_error(out, "validation SI-SDRi of epoch 1 is nan")
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------------------------------------
# Item 4: the output folder, checked before Hydra creates it
# ---------------------------------------------------------------------------------------------


def test_output_dir_problems_name_the_key_and_the_fix(tmp_path):
    (tmp_path / "file").write_text("x")
    problem = output_dir_problem([f"hydra.run.dir={tmp_path}/file"])
    assert problem and "hydra.run.dir=" in problem and "is an existing file" in problem
    problem = output_dir_problem(["-m", f"hydra.sweep.dir={tmp_path}/file/sub"])
    assert problem and "hydra.sweep.dir=" in problem and "which is a file" in problem
    assert output_dir_problem([f"hydra.run.dir={tmp_path}/new/run"]) is None
    assert output_dir_problem(["hydra.run.dir=out/${now:%H}"]) is None
    assert output_dir_problem([f"hydra.sweep.dir={tmp_path}/file"]) is None  # not a sweep


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_dir_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    problem = output_dir_problem([f"hydra.run.dir={locked}/run"])
    assert problem and "cannot be written" in problem and "chmod u+w" in problem


@pytest.mark.slow
def test_an_output_dir_that_is_a_file_ends_in_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    out = train_py([f"hydra.run.dir={tmp_path}/file"])
    assert_one_line_error(out, f"hydra.run.dir={tmp_path}/file is an existing file")


# ---------------------------------------------------------------------------------------------
# Item 5: model keys are checked before any work, per model name
# ---------------------------------------------------------------------------------------------


def test_a_bad_model_size_stops_before_the_run_dir_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"model.num_blocks must be an integer in \[1, 128\]"):
        run(compose_config(TINY + ["model.num_blocks=0"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_model_registers_its_own_keys(monkeypatch):
    """A new model declares its keys, bounds and padding under its name; they are checked."""
    from torch import nn

    from ugr_experiments import models as networks
    from ugr_experiments.config import models

    class ToyModel(nn.Module):
        def __init__(self, width: int = 8) -> None:
            super().__init__()

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setitem(networks.REGISTRY, "toy_model", networks.ModelEntry(ToyModel))
    keys = ModelKeys({"width": IntKey(1, 64, 8)}, {"width": 8}, lambda s: 1000 * s["width"])
    register_model_keys(["toy_model"], keys)
    sudormrf_keys = ["out_channels", "in_channels", "num_blocks", "upsampling_depth"]
    sudormrf_keys += ["enc_kernel_size", "enc_num_basis", "num_sources"]
    base = ["model.name=toy_model", *(f"~model.{k}" for k in sudormrf_keys)]
    with pytest.raises(CheckError, match=r"model.width must be an integer in \[1, 64\], got 65"):
        to_plain(compose_config([*base, "+model.width=65"]))
    with pytest.raises(CheckError, match="at least 20000 are needed .*toy_model's padding"):
        to_plain(compose_config([*base, "+model.width=20"]))  # a 1 s segment: 8000 samples
    assert to_plain(compose_config([*base, "+model.width=4"]))["model"]["width"] == 4
    with pytest.raises(CheckError, match="model.depth is not an option of model 'toy_model'"):
        to_plain(compose_config([*base, "+model.depth=4"]))


# ---------------------------------------------------------------------------------------------
# Item 7: SIGINT and SIGTERM in every phase
# ---------------------------------------------------------------------------------------------


def signal_in(monkeypatch: pytest.MonkeyPatch, name: str, signum: int, arg: Any = None) -> None:
    """Send ``signum`` to this process when the loop calls ``name`` (with ``arg`` among its
    arguments, if given), then call it."""
    real = getattr(loop_module, name)

    def sending(*args: Any, **kwargs: Any) -> Any:
        if arg is None or arg in args:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, name, sending)


def test_sigint_during_start_up_exits_cleanly(tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as patch:
        signal_in(patch, "build_parts", signal.SIGINT)
        with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as stop:
            run(compose_config(TINY), tmp_path)
    assert stop.value.code == 0
    assert "SIGINT outside training" in caplog.text and "resume=true" in caplog.text
    run(compose_config(TINY + ["resume=true"]), tmp_path)
    assert (tmp_path / "run.json").is_file()


def test_sigint_during_the_final_test_exits_cleanly_and_resume_only_tests(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        signal_in(patch, "evaluate", signal.SIGINT, arg="test")
        with pytest.raises(SystemExit) as stop:
            run(compose_config(TINY), tmp_path)
    assert stop.value.code == 0 and not (tmp_path / "run.json").exists()
    last = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    run(compose_config(TINY + ["resume=true"]), tmp_path)
    assert (tmp_path / "run.json").is_file()
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == last  # nothing retrained


@pytest.mark.slow
@pytest.mark.parametrize("phase,function", [("start-up", "build_parts"), ("test", "evaluate")])
def test_sigterm_outside_training_exits_with_status_0(tmp_path, phase, function):
    """A SIGTERM at start-up or in the final test (no step to finish): saved state is kept."""
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from conftest import TINY, compose_config
import ugr_experiments.training.loop as loop
real = loop.{function}
def killing(*args, **kwargs):
    if {phase!r} == "start-up" or "test" in args:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
loop.{function} = killing
loop.run(compose_config(TINY), {str(tmp_path)!r})
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SIGTERM outside training" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run.json").exists()
    assert (tmp_path / "checkpoints" / "last.pt").is_file() == (phase == "test")


# ---------------------------------------------------------------------------------------------
# Items 8 and 9: the audio files, and on resume the data, checked before any work
# ---------------------------------------------------------------------------------------------


def tiny_corpus(folder: Path) -> Path:
    """Two ESC-50-like classes, two 0.5 s files each per split; returns the manifests folder."""
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "valid", "test"):
        for cls in ("dog", "rain"):
            for k in range(2):
                rel = f"audio/{split}_{cls}_{k}.wav"
                (folder / "corpus" / "audio").mkdir(parents=True, exist_ok=True)
                wave = 0.1 * rng.standard_normal(4000).astype("float32")
                sf.write(folder / "corpus" / rel, wave, 8000)
                rows.append([rel, cls, "environmental", split, 0.5, 8000, 4000, 1])
    columns = ["path", "class", "group", "split", "duration", "sample_rate", "frames", "channels"]
    table = pd.DataFrame(rows, columns=columns)
    write_manifest(folder / "manifests" / "esc50.csv", table, folder / "corpus")
    return folder / "manifests"


def corpus_overrides(manifests: Path) -> list[str]:
    return TINY + ["dataset=esc50", f"paths.manifests={manifests}", "dataset.n_train=4"]


def test_bad_audio_files_are_named_with_their_count_and_the_fix(tmp_path, monkeypatch):
    from ugr_experiments.data import checks

    manifests = tiny_corpus(tmp_path)
    audio = tmp_path / "corpus" / "audio"
    (audio / "test_dog_0.wav").unlink()
    (audio / "test_rain_0.wav").write_bytes(b"")
    (audio / "valid_dog_1.wav").write_bytes(b"not audio at all" * 10)
    sf.write(audio / "train_rain_1.wav", np.zeros(3000, dtype="float32") + 0.1, 8000)
    dataset = to_plain(compose_config(corpus_overrides(manifests)))["dataset"]
    with pytest.raises(DataError) as err:
        check_data(dataset)
    text = str(err.value)
    assert "dataset.manifests.environmental: 4 of the 12 audio files" in text
    assert f"{audio / 'test_dog_0.wav'}: missing" in text
    assert f"{audio / 'test_rain_0.wav'}: empty" in text
    assert f"{audio / 'valid_dog_1.wav'}: unreadable" in text
    assert "train_rain_1.wav: changed since the manifest was written (3000 frames" in text
    assert "ugr-prep-esc50 --root <ESC-50 folder> --output" in text
    monkeypatch.setattr(checks, "SHOWN_FILES", 1)
    with pytest.raises(DataError, match=r"\.\.\. and 3 more"):
        check_data(dataset)


def test_a_missing_audio_file_stops_the_run_before_any_work(tmp_path):
    manifests = tiny_corpus(tmp_path)
    (tmp_path / "corpus" / "audio" / "test_dog_1.wav").unlink()
    with pytest.raises(DataError, match="test_dog_1.wav: missing"):
        run(compose_config(corpus_overrides(manifests)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_compares_the_data_not_the_manifest_path(tmp_path, monkeypatch):
    manifests = tiny_corpus(tmp_path)
    cfg = corpus_overrides(manifests) + ["train.epochs=2"]
    real, calls = loop_module.train_step, {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "train_step", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(compose_config(cfg), tmp_path / "run")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(manifests / "esc50.csv", moved / "esc50.csv")
    other = tmp_path / "other"
    other.mkdir()
    lines = (manifests / "esc50.csv").read_text().splitlines(keepends=True)
    (other / "esc50.csv").write_text("".join(lines[:-1]))  # one test file fewer
    assert manifest_digest(other / "esc50.csv") != manifest_digest(manifests / "esc50.csv")
    with pytest.raises(ConfigError) as err:
        run(compose_config(cfg + ["resume=true", f"paths.manifests={other}"]), tmp_path / "run")
    text = str(err.value)
    assert f"data.environmental: the checkpoint trained on {manifests / 'esc50.csv'}" in text
    assert f"this run reads {other / 'esc50.csv'}" in text
    info = run(compose_config(cfg + ["resume=true", f"paths.manifests={moved}"]), tmp_path / "run")
    assert info["steps"] == 4


def test_train_threads_change_the_result_on_the_cpu_only():
    base = to_plain(compose_config())
    other = to_plain(compose_config(["train.threads=1"]))
    assert result_differences(base, other) == ["train.threads: None in the checkpoint, 1 now"]
    assert result_differences(base, other, on_cpu=False) == []


# ---------------------------------------------------------------------------------------------
# Item 10: a refused command leaves an existing run as it was, and a new one no folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["alpha=-1"], "alpha must be >= 0"),
        ([], "resume=false but"),
        (["seed=5", "resume=true"], "cannot resume"),
    ],
    ids=["bad value", "missing resume=true", "differing config"],
)
def test_a_refused_command_leaves_the_run_byte_identical(finished, tmp_path, args, message):
    run_dir = shutil.copytree(finished, tmp_path / "run")
    before = tree(run_dir)
    assert ".hydra/overrides.yaml" in before and "train.log" in before
    out = train_py([*TINY, *args, f"hydra.run.dir={run_dir}"])
    assert_one_line_error(out, message)
    assert tree(run_dir) == before


@pytest.mark.slow
def test_a_refused_new_run_leaves_no_folder(tmp_path):
    out = train_py(["alpha=-1", f"hydra.run.dir={tmp_path}/new/run"])
    assert_one_line_error(out, "alpha must be >= 0")
    assert not (tmp_path / "new").exists()
