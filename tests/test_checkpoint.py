"""Checkpoint files: atomic writes, weights-only data, checksums, damaged files named."""

from __future__ import annotations

import logging
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ugr_experiments.training import checkpoint as ckpt
from ugr_experiments.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    newest_resumable,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_digest,
)

PLAIN = (torch.Tensor, int, float, str, bool, type(None))


def small_state(step: int = 3, seed: int = 0) -> dict:
    """A checkpoint shaped like the trainer's: model, Adam, schedule, RNG, config text."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    return {
        "format": ckpt.FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "config": "seed: 0\ntrain:\n  epochs: 2\n",
        "train_state": {"epoch": 1, "batch": 2, "best": -float("inf"), "history": []},
        "epoch": 1,
        "batch": 2,
        "step": step,
    }


def plain_types(obj) -> set[type]:
    if isinstance(obj, dict):
        return {dict}.union(*(plain_types(k) | plain_types(v) for k, v in obj.items()))
    if isinstance(obj, list | tuple):
        return {list}.union(*(plain_types(x) for x in obj))
    return {torch.Tensor if isinstance(obj, torch.Tensor) else type(obj)}


def test_round_trip_is_weights_only_plain_data(tmp_path):
    state = small_state()
    path = save_checkpoint(state, tmp_path / "last.pt")
    raw = torch.load(path, weights_only=True)  # data, never code
    assert set(raw) == set(state) | {"digest"}
    assert plain_types(raw) <= {dict, list, *PLAIN}
    loaded = load_checkpoint(path)
    assert "digest" not in loaded
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["exp_avg"].equal(
        state["optimizer"]["state"][0]["exp_avg"]
    )
    assert state_digest(loaded) == state_digest(state)


def test_previous_checkpoint_is_kept(tmp_path):
    save_checkpoint(small_state(step=1), tmp_path / "last.pt", previous=tmp_path / "previous.pt")
    assert not (tmp_path / "previous.pt").exists()
    save_checkpoint(small_state(step=2), tmp_path / "last.pt", previous=tmp_path / "previous.pt")
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "previous.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]


def test_crash_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(small_state(step=1), tmp_path / "last.pt")

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is stopped in the middle of torch.save

    monkeypatch.setattr(ckpt.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(small_state(step=2), path, previous=tmp_path / "previous.pt")
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_truncated_checkpoint_is_named(tmp_path):
    path = save_checkpoint(small_state(), tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt is truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 50])
def test_empty_or_foreign_file_is_named(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"last\.pt is truncated or corrupt"):
        load_checkpoint(path)


def test_damaged_tensor_bytes_fail_the_checksum(tmp_path):
    state = {"model": {"w": torch.arange(4096, dtype=torch.float32)}, "step": 1}
    path = save_checkpoint(state, tmp_path / "last.pt")
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(np.float32(2048.0).tobytes())  # inside the tensor's storage
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["step"] == 1  # torch alone does not notice
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt: .*checksum"):
        load_checkpoint(path)


class NotData:
    """A class: unpickling it would run code."""


def test_a_pickled_object_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": NotData()}, path)
    with pytest.raises(CheckpointError, match="holds code objects .*refused for safety"):
        load_checkpoint(path)


def test_missing_file_is_a_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))
    assert again[:2] == expected[:2]
    assert np.array_equal(again[2], expected[2]) and torch.equal(again[3], expected[3])


def write_run(run_dir: Path, steps: dict[str, int]) -> Path:
    folder = run_dir / ckpt.CHECKPOINT_DIR
    for name, step in steps.items():
        save_checkpoint(small_state(step=step), folder / name)
    return folder


def test_newest_resumable_prefers_the_furthest_usable_checkpoint(tmp_path, caplog):
    assert newest_resumable(tmp_path) is None
    folder = write_run(tmp_path, {"last.pt": 7, "previous.pt": 6, "best.pt": 3})
    assert newest_resumable(tmp_path)[0].name == "last.pt"
    data = (folder / "last.pt").read_bytes()
    (folder / "last.pt").write_bytes(data[:100])
    with caplog.at_level(logging.WARNING):
        path, state = newest_resumable(tmp_path)
    assert (path.name, state["step"]) == ("previous.pt", 6)
    assert "last.pt is truncated or corrupt" in caplog.text


def test_no_usable_checkpoint_lists_every_file_and_why(tmp_path):
    folder = write_run(tmp_path, {"last.pt": 7, "previous.pt": 6})
    (folder / "last.pt").write_bytes(b"")
    save_checkpoint({"model": {}, "step": 6}, folder / "previous.pt")  # an older format
    with pytest.raises(CheckpointError) as err:
        newest_resumable(tmp_path)
    text = str(err.value)
    assert "last.pt is truncated or corrupt" in text
    assert "previous.pt cannot be resumed from" in text and "start a new run" in text


# ---------------------------------------------------------------------------------------------
# Issue 13: stale temporaries, code objects, file modes
# ---------------------------------------------------------------------------------------------


def test_resuming_removes_temporaries_left_by_a_killed_write(tmp_path):
    """SIGKILL mid-write leaves `.last.pt.<random>.tmp`; the next start removes them."""
    run_dir = tmp_path / "run"
    folder = write_run(run_dir, {"last.pt": 5})
    stale = [folder / ".last.pt.abc123.tmp", folder / ".previous.pt.4242.tmp"]
    stale.append(folder / ".best.pt.x9.tmp")
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = folder / "notes.tmp"  # not one of ours
    keep.write_text("mine")
    path, _ = newest_resumable(run_dir)
    assert path.name == "last.pt"
    assert not any(p.exists() for p in stale) and keep.exists()


class Evil:
    """Unpickling it would run a shell command."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unsafe",))


@pytest.mark.parametrize("payload", [Evil(), NotData()], ids=["blocked-module", "class"])
def test_code_objects_are_refused_for_safety_without_torch_advice(tmp_path, payload):
    path = tmp_path / "evil.pt"
    torch.save({"model": payload}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "holds code objects" in message and "refused for safety" in message
    assert "weights_only=False" not in message and "will likely succeed" not in message
    assert "corrupt" not in message


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_checkpoint(small_state(), tmp_path / "last.pt")
        save_checkpoint(small_state(step=4), path, previous=tmp_path / "previous.pt")
    finally:
        os.umask(old)
    for name in ("last.pt", "previous.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_new_run_also_removes_them(tmp_path):
    from ugr_experiments.training.resume import resume_checkpoint

    folder = tmp_path / "run" / ckpt.CHECKPOINT_DIR
    folder.mkdir(parents=True)
    (folder / ".last.pt.k1ll3d.tmp").write_bytes(b"the first write of a run, killed")
    assert resume_checkpoint({"resume": False}, tmp_path / "run") is None
    assert list(folder.iterdir()) == []
