"""Shared test helpers: the real config tree, shrunk for the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# As train.py does: idle OpenMP threads sleep, so tests that run two processes side by side
# (DDP, resume) do not stall each other. Set before torch is imported anywhere.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Overrides that make any run take seconds on 2 cores.
TINY = [
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.progress=false",
    "train.num_workers=0",  # no worker processes to start (auto would time a step first)
    "eval.batch_size=4",
    "dataset.segment_seconds=0.25",
    "dataset.n_valid=2",
    "dataset.n_test=4",
    "model.num_blocks=1",
    "model.upsampling_depth=2",
    "model.enc_num_basis=32",
    "model.in_channels=32",
    "model.out_channels=16",
]


def torchaudio_works() -> bool:
    """Whether a torchaudio matching the installed torch imports (the ``torchaudio`` marker)."""
    from ugr_experiments.models import TorchaudioUnavailableError
    from ugr_experiments.models.convtasnet import require_torchaudio

    try:
        require_torchaudio()
    except TorchaudioUnavailableError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``torchaudio`` skip where it is missing (CI runs them in a second env)."""
    marked = [item for item in items if item.get_closest_marker("torchaudio")]
    if marked and not torchaudio_works():
        skip = pytest.mark.skip(
            reason="needs torchaudio matching torch (CI: torch==2.11.0 torchaudio==2.11.0)"
        )
        for item in marked:
            item.add_marker(skip)


def assert_same_function(
    fast: torch.nn.Module,
    ref: torch.nn.Module,
    length: int,
    num_sources: int,
    unused: tuple[str, ...] | list[str] = (),
) -> None:
    """Outputs and every parameter's gradient of two models agree to float32 tolerance.

    Both get the same mixture (batch 2) and the same squared-error loss. Parameters whose
    name starts with one of ``unused`` must get no gradient in either model.
    """
    mix = torch.randn(2, length)
    target = torch.randn(2, num_sources, length)
    outs = []
    for model in (fast, ref):
        est = model(mix)  # (B, S, T)
        ((est - target) ** 2).mean().backward()
        outs.append(est)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    ref_grads = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        g_ref = ref_grads[name].grad
        if name.startswith(tuple(unused)):
            assert p.grad is None and g_ref is None, name
            continue
        assert p.grad is not None and g_ref is not None, name
        scale = g_ref.abs().max().item() + 1e-12
        torch.testing.assert_close(p.grad / scale, g_ref / scale, rtol=1e-4, atol=1e-4, msg=name)


def compose_config(overrides: list[str] | None = None):
    """Compose ``conf/config.yaml`` exactly as ``train.py`` does, with overrides."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def train_py(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` from the repository root, one thread, output captured."""
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def write_shared_manifests(out: Path) -> Path:
    """The README's manifest commands for the clips of ../shared/data, written into ``out``."""
    esc50 = ["data_prep.esc50", "--root", str(SHARED_DATA / "esc50_mini")]
    esc50 += ["--output", str(out / "esc50.csv"), "--train-folds", "1", "2", "3", "5"]
    esc50 += ["--heldout-folds", "4", "--heldout-split", "4:1:1"]
    speech = ["data_prep.speech", "--root", str(SHARED_DATA / "fsdd_speech")]
    speech += ["--output", str(out / "speech.csv"), "--no-progress"]
    for args in (esc50, speech):
        prep = subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert prep.returncode == 0, prep.stderr
    return out
