"""Resuming: a killed run continues bit for bit; signals save and exit; bad steps are skipped.

Every interrupted run here is compared with one uninterrupted run of the same config
(``reference``): the final weights, optimiser state, RNG states, best checkpoint, history and
tables must be identical, bit for bit (the CPU is deterministic for a fixed thread count).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, TINY, compose_config

import ugr_experiments.training.loop as train_module
import ugr_experiments.training.parts as parts_module
from ugr_experiments.config import ConfigError, result_differences, to_plain
from ugr_experiments.models import build_model
from ugr_experiments.training.bookkeeping import TrainingDiverged
from ugr_experiments.training.checkpoint import (
    CheckpointError,
    check_resumable,
    load_checkpoint,
    save_checkpoint,
)
from ugr_experiments.training.loop import run, train_step
from ugr_experiments.training.resume import resume_checkpoint
from ugr_experiments.training.state import ResumableSampler
from ugr_experiments.weighting import Progress, build_weighting

# 2 epochs of 3 steps, a checkpoint after every step, every step logged to TensorBoard.
CFG = TINY + [
    "train.epochs=2",
    "train.steps_per_epoch=3",
    "checkpoint.every_steps=1",
    "train.log_every=1",
    "weighting=robust",
    "alpha=0.1",
]
TOTAL_STEPS = 6
OUTPUTS = ("per_source_sisdri.csv", "sisdri_table.csv", "sisdri_table.md")
# Wall-clock values and the config text (it records resume=true) may differ.
VOLATILE = {"elapsed", "seconds", "config"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted one must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference")
    run(compose_config(CFG), run_dir)
    return run_dir


def assert_equal_state(a: Any, b: Any, where: str = "") -> None:
    """Nested checkpoint contents are equal: tensors with torch.equal, the rest with ==."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            if key not in VOLATILE:
                assert_equal_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def assert_same_run(expected: Path, actual: Path) -> None:
    for name in OUTPUTS:
        assert (actual / name).read_bytes() == (expected / name).read_bytes(), name
    history = [pd.read_csv(d / "history.csv").drop(columns="seconds") for d in (expected, actual)]
    pd.testing.assert_frame_equal(*history, check_exact=True)
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(d / "checkpoints" / name) for d in (expected, actual))
        assert_equal_state(a, b, name)
        assert result_differences(yaml.safe_load(a["config"]), yaml.safe_load(b["config"])) == []


def crash_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the training loop die (like SIGKILL: no saving) when it starts step ``step``."""
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise RuntimeError("simulated crash")
        return train_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crashing)


def crashed_run(run_dir: Path, monkeypatch: pytest.MonkeyPatch, step: int = 6) -> Path:
    """A run of CFG that died at the start of ``step`` (checkpoint of step - 1 on disk)."""
    with monkeypatch.context() as patch:
        crash_at_step(patch, step)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(compose_config(CFG), run_dir)
    return run_dir


def train_py(args: list[str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, **kwargs)


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, ok: Any) -> dict[str, Any]:
    """Poll ``last.pt`` (atomic: always whole) until ``ok(state)``; fail if the run ends first."""
    path = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if path.exists():
            state = load_checkpoint(path)
            if ok(state):
                return state
        assert proc.poll() is None, "the run ended before the checkpoint to wait for"
        time.sleep(0.01)
    raise AssertionError("no checkpoint in time")


# ---------------------------------------------------------------------------------------------
# Killed, interrupted, crashed: the same result
# ---------------------------------------------------------------------------------------------


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, reference):
    """`python train.py ...`, SIGKILL in epoch 2, then the same command plus resume=true."""
    kill_then_resume(tmp_path, CFG, reference)


# group DRO: its state (the group weights q) must be saved and restored too
DRO_CFG = [*CFG[:-2], "weighting=group_dro", "weighting.eta=0.5"]


def test_sigkill_then_resume_is_bit_identical_with_group_dro(tmp_path):
    reference = tmp_path / "reference"
    run(compose_config(DRO_CFG), reference)
    log_q = load_checkpoint(reference / "checkpoints" / "last.pt")["weighting"]["log_q"]
    assert log_q.unique().numel() > 1  # q moved away from uniform
    kill_then_resume(tmp_path, DRO_CFG, reference)


def kill_then_resume(tmp_path: Path, cfg: list[str], reference: Path) -> None:
    """Run ``cfg`` with train.py, SIGKILL it in epoch 2, resume it; it must equal ``reference``."""
    run_dir = tmp_path / "run"
    args = [*cfg, f"hydra.run.dir={run_dir}"]
    with open(tmp_path / "first.log", "w") as out:
        proc = train_py(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for_checkpoint(run_dir, proc, lambda s: s["epoch"] == 1 and s["batch"] >= 1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    # The kill lands a moment after the checkpoint seen above: usually mid-epoch 2, but on a
    # busy machine the run may have reached the epoch's end (best.pt, then last.pt) by then.
    # Resume continues from the newest usable checkpoint, whichever file holds it.
    saved = [run_dir / "checkpoints" / n for n in ("last.pt", "previous.pt", "best.pt")]
    killed_at = max((load_checkpoint(p) for p in saved if p.exists()), key=lambda c: c["step"])
    assert killed_at["epoch"] >= 1 and not (run_dir / "run.json").exists()
    resumed = subprocess.run(
        [sys.executable, "train.py", *args, "resume=true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    logged = resumed.stdout + resumed.stderr
    assert f"batch {killed_at['batch']}, step {killed_at['step']}" in logged
    assert_same_run(reference, run_dir)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()  # the events written after the checkpoint, then again, count once
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, TOTAL_STEPS + 1))


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path, reference):
    """SIGTERM to the whole process group (as a cluster sends it), DataLoader workers too."""
    run_dir = tmp_path / "run"
    args = [*CFG, "train.num_workers=1", f"hydra.run.dir={run_dir}"]
    with open(tmp_path / "first.log", "w") as out:
        proc = train_py(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_checkpoint(run_dir, proc, lambda s: s["step"] >= 2)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    log_text = (tmp_path / "first.log").read_text()
    assert "SIGTERM: stopped at epoch" in log_text and "resume=true" in log_text
    assert "Traceback" not in log_text
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    check_resumable(state, run_dir / "last.pt")
    assert 2 <= state["step"] < TOTAL_STEPS and not (run_dir / "run.json").exists()
    # num_workers does not change the result: the resumed run equals the reference.
    run(compose_config(CFG + ["resume=true"]), run_dir)
    assert_same_run(reference, run_dir)


def test_sigint_saves_after_the_step_then_resume_is_identical(tmp_path, reference, monkeypatch):
    """Ctrl-C in the middle of a step: the step finishes, is saved, the run exits 0."""
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the step runs
        return train_step(*args, **kwargs)

    # Whatever handler the test process started with (a background job starts with SIGINT
    # ignored) must be back in place after the run.
    before = signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "train_step", interrupted)
        with pytest.raises(SystemExit) as stop:
            run(compose_config(CFG), tmp_path)
    assert stop.value.code == 0
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    run(compose_config(CFG + ["resume=true"]), tmp_path)
    assert_same_run(reference, tmp_path)


def test_truncated_last_checkpoint_is_named_and_the_previous_one_used(
    tmp_path, reference, monkeypatch, caplog
):
    crashed_run(tmp_path, monkeypatch, step=6)
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])  # a disk that lost the end of the file
    with caplog.at_level(logging.INFO):
        run(compose_config(CFG + ["resume=true", "train.progress=true"]), tmp_path)
    assert f"{last} is truncated or corrupt" in caplog.text
    assert "from previous.pt: epoch 2, batch 1, step 4" in caplog.text
    assert_same_run(reference, tmp_path)


def test_per_epoch_test_rows_survive_a_crash(tmp_path, monkeypatch):
    """eval.last_epochs=2: rows of epochs tested before the crash are read back exactly."""
    cfg = CFG + ["eval.last_epochs=2"]
    run(compose_config(cfg), tmp_path / "a")
    with monkeypatch.context() as patch:
        crash_at_step(patch, 5)  # after epoch 1's test rows, in epoch 2
        with pytest.raises(RuntimeError):
            run(compose_config(cfg), tmp_path / "b")
    run(compose_config(cfg + ["resume=true"]), tmp_path / "b")
    rows = pd.read_csv(tmp_path / "b" / "per_source_sisdri.csv")
    assert sorted(rows["epoch"].unique()) == [1, 2]
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ---------------------------------------------------------------------------------------------
# What a resume refuses
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> Path:
    """A run that died in epoch 2, at step 6 (copied by each test that changes it)."""
    with pytest.MonkeyPatch.context() as patch:
        return crashed_run(tmp_path_factory.mktemp("crashed"), patch)


def test_a_changed_config_is_refused_with_the_differences(crashed):
    cfg = to_plain(compose_config(CFG + ["resume=true", "alpha=0.2", "train.batch_size=4"]))
    with pytest.raises(ConfigError) as err:
        resume_checkpoint(cfg, crashed)
    text = str(err.value)
    assert "differs in 3 key(s)" in text
    assert "alpha: 0.1 in the checkpoint, 0.2 now" in text
    assert "weighting.alpha: 0.1 in the checkpoint, 0.2 now" in text
    assert "train.batch_size: 2 in the checkpoint, 4 now" in text


def test_keys_that_do_not_change_the_result_may_differ(crashed):
    harmless = ["train.progress=true", "train.num_workers=2", "train.log_every=5", "device=cpu"]
    harmless += ["eval.batch_size=2", "checkpoint.every_steps=7", "train.max_bad_steps=3"]
    cfg = to_plain(compose_config(CFG + ["resume=true", *harmless]))
    assert resume_checkpoint(cfg, crashed)["step"] == 5


def test_a_new_run_never_overwrites_a_runs_checkpoints(crashed):
    with pytest.raises(ConfigError, match=r"resume=false but .* holds a run's checkpoints"):
        run(compose_config(CFG), crashed)


def test_resume_in_an_empty_directory_starts_a_new_run(tmp_path):
    assert resume_checkpoint(to_plain(compose_config(CFG + ["resume=true"])), tmp_path) is None


def test_damaged_best_checkpoint_is_a_clear_error(crashed, tmp_path):
    run_dir = shutil.copytree(crashed, tmp_path / "run")
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match=r"best\.pt is truncated .*best-validation weights"):
        run(compose_config(CFG + ["resume=true"]), run_dir)


def test_all_checkpoints_damaged_is_a_clear_error(crashed, tmp_path):
    run_dir = shutil.copytree(crashed, tmp_path / "run")
    for path in (run_dir / "checkpoints").iterdir():
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        run(compose_config(CFG + ["resume=true"]), run_dir)
    assert all(name in str(err.value) for name in ("last.pt", "previous.pt", "best.pt"))


def test_a_finished_run_is_not_run_again(reference, tmp_path):
    run_dir = shutil.copytree(reference, tmp_path / "run")
    before = (run_dir / "history.csv").stat().st_mtime_ns
    info = run(compose_config(CFG + ["resume=true"]), run_dir)
    assert info["steps"] == TOTAL_STEPS
    assert (run_dir / "history.csv").stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------------------
# Non-finite steps
# ---------------------------------------------------------------------------------------------


def tiny_model_and_batch() -> tuple[torch.nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    spec = dict(out_channels=8, in_channels=16, num_blocks=1, upsampling_depth=2)
    model = build_model("sudormrf", enc_num_basis=16, num_sources=2, **spec)
    sources = torch.randn(2, 2, 800)
    batch = {
        "mixture": sources.sum(1),
        "sources": sources,
        "class_idx": torch.zeros(2, 2, dtype=torch.long),
        "group_idx": torch.zeros(2, 2, dtype=torch.long),
    }
    return model, batch


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> bool:
    weighting = build_weighting({"name": "robust", "alpha": 0.1}, ["a"], ["speech"])
    out = train_step(model, batch, weighting, optimizer, Progress(0, 0), 5.0, torch.device("cpu"))
    return bool(out.finite)


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def clone(obj: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda x: x.clone() if isinstance(x, torch.Tensor) else x, obj
    )


@pytest.mark.parametrize("poison", ["nan_input", "nan_gradient"])
def test_a_non_finite_step_changes_nothing(poison):
    """Weights and Adam state are untouched, and the next good step is exactly a clean one."""
    model, batch = tiny_model_and_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert step(model, optimizer, batch)  # Adam has state now
    before = clone(snapshot(model, optimizer))
    bad = dict(batch)
    if poison == "nan_input":
        bad["mixture"] = batch["mixture"].clone()
        bad["mixture"][0, 100] = math.nan  # a crafted batch: a corrupt sample
        hook = None
    else:  # finite loss, non-finite gradient
        hook = next(model.parameters()).register_hook(lambda g: g * math.inf)
    assert not step(model, optimizer, bad)
    if hook is not None:
        hook.remove()
    assert_equal_state(before, snapshot(model, optimizer))
    assert step(model, optimizer, batch)
    clean_model, _ = tiny_model_and_batch()
    clean_opt = torch.optim.Adam(clean_model.parameters(), lr=1e-3)
    clean_model.load_state_dict(before["model"])
    clean_opt.load_state_dict(before["optimizer"])
    assert step(clean_model, clean_opt, batch)
    assert_equal_state(snapshot(clean_model, clean_opt), snapshot(model, optimizer))


def poison_items(monkeypatch: pytest.MonkeyPatch, bad: set[tuple[int, int]]) -> None:
    """Training items ``(epoch, index)`` in ``bad`` get a NaN sample in their mixture."""
    real = parts_module.build_datasets

    def build(cfg: dict, seed: int, length: int) -> dict:
        data = real(cfg, seed, length)
        train, make = data["train"], data["train"].make

        def make_bad(index: int, rng: Any) -> dict:
            item = make(index, rng)
            if (train.epoch, index) in bad:
                item["mixture"] = item["mixture"].clone()
                item["mixture"][10] = math.nan
            return item

        train.make = make_bad
        return data

    monkeypatch.setattr(parts_module, "build_datasets", build)


def test_isolated_bad_batches_are_skipped_and_counted(tmp_path, monkeypatch, caplog):
    poison_items(monkeypatch, {(0, 2), (1, 0)})  # step 2 of epoch 1, step 1 of epoch 2
    with caplog.at_level(logging.WARNING):
        run(compose_config(TINY + ["train.epochs=2", "train.steps_per_epoch=3"]), tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["skipped_steps"]) == [1, 1]
    assert "non-finite loss or gradient at step 2: step skipped" in caplog.text
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert int(state["optimizer"]["state"][0]["step"]) == 4  # 6 steps, 2 skipped


def test_too_many_bad_steps_in_a_row_stop_with_the_last_good_weights(tmp_path, monkeypatch):
    poison_items(monkeypatch, {(0, 2), (0, 4)})  # steps 2 and 3
    cfg = TINY + ["train.steps_per_epoch=4", "train.max_bad_steps=2", "checkpoint.every_steps=1"]
    with pytest.raises(TrainingDiverged) as err:
        run(compose_config(cfg), tmp_path)
    text = str(err.value)
    assert "2 non-finite losses or gradients in a row (steps 2-3" in text
    assert "train.max_bad_steps=2" in text and "lower optim.lr" in text
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (last["step"], last["train_state"]["bad_in_row"]) == (3, 2)
    assert int(last["optimizer"]["state"][0]["step"]) == 1  # only step 1 changed the weights
    previous = load_checkpoint(tmp_path / "checkpoints" / "previous.pt")  # after bad step 2
    assert_equal_state(previous["model"], last["model"])


# ---------------------------------------------------------------------------------------------
# The sampler that resumes an epoch mid-way
# ---------------------------------------------------------------------------------------------


def test_sampler_starts_at_the_first_batch_not_trained_on():
    sampler = ResumableSampler(12)
    assert list(sampler) == list(range(12))
    sampler.start = 2 * 4  # two batches of 4 done
    assert list(sampler) == [8, 9, 10, 11] and len(sampler) == 4


def test_sampler_ranks_share_each_global_batch():
    ranks = [ResumableSampler(12, rank=r, world_size=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.start = 4  # one global batch of 4 done
    assert [list(s) for s in ranks] == [[4, 6, 8, 10], [5, 7, 9, 11]]


def test_train_state_checkpoint_holds_plain_values_only(reference):
    state = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert state["train_state"]["step"] == TOTAL_STEPS and state["epoch"] == 2
    assert len(state["train_state"]["history"]) == 2
    save_checkpoint(state, reference.parent / "again.pt")  # saves and loads weights-only
    assert_equal_state(state, load_checkpoint(reference.parent / "again.pt"))


@pytest.mark.slow
def test_readme_sweep_resume_finishes_only_what_is_left(tmp_path):
    """`python train.py -m ... resume=true hydra.sweep.dir=<dir>`: finished jobs are skipped."""
    sweep = [sys.executable, "train.py", "-m", "weighting=robust", "alpha=0,0.1", *TINY]
    sweep.append(f"hydra.sweep.dir={tmp_path}")
    first = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    tables = {job: (tmp_path / job / OUTPUTS[0]).read_bytes() for job in ("0", "1")}
    (tmp_path / "1" / "run.json").unlink()  # job 1 was killed during its final test
    again = subprocess.run([*sweep, "resume=true"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stdout + again.stderr
    assert (tmp_path / "1" / "run.json").exists()
    for job, table in tables.items():
        assert (tmp_path / job / OUTPUTS[0]).read_bytes() == table
