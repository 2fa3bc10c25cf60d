"""``run.json``: what produced a run (commit, versions, device, seed, wall time)."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = (
    "torch",
    "numpy",
    "hydra-core",
    "omegaconf",
    "pandas",
    "soundfile",
    "soxr",
    "torchaudio",
)


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_info(cfg: dict[str, Any], start: float) -> dict[str, Any]:
    device = "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "git_commit": git_commit(),
        "versions": package_versions(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "seed": cfg["seed"],
        "wall_seconds": round(time.time() - start, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
