"""The README stays true: every `python train.py` / `torchrun` command in it composes and
validates, and its CPU-sized commands on ../shared/data run as written (slow)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA, compose_config

from ugr_experiments.config import to_plain

README = (ROOT / "README.md").read_text()


def bash_lines() -> list[str]:
    """Commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def train_overrides(line: str) -> list[str] | None:
    """The Hydra overrides of a train.py command (first value of each sweep), or None."""
    words = shlex.split(line.replace("&&", ";").split(";")[-1])
    if "train.py" not in words:
        return None
    overrides = []
    for word in words[words.index("train.py") + 1 :]:
        if word == "-m" or "=" not in word or "<" in word or word.startswith("hydra"):
            continue
        key, value = word.split("=", 1)
        first = value.split(",")[0] if "[" not in value else value
        overrides.append(f"{key}={first}")
    return overrides


TRAIN_COMMANDS = [line for line in bash_lines() if train_overrides(line) is not None]


def test_readme_has_the_documented_commands():
    assert 'pip install -e ".[dev]" && python train.py' in README
    assert len(TRAIN_COMMANDS) >= 8


@pytest.mark.parametrize("line", TRAIN_COMMANDS)
def test_readme_train_command_composes_and_validates(line):
    overrides = train_overrides(line)
    cfg = to_plain(compose_config(overrides))
    for override in overrides:
        key = override.split("=")[0].lstrip("+")
        if "." in key and not key.startswith("weighting.terms"):
            node = cfg
            for part in key.split("."):
                node = node[part]


def test_readme_launcher_configs_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=submitit_slurm"], return_hydra_config=True
        )
    assert "submitit" in cfg.hydra.launcher._target_.lower()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the repo")
def test_readme_shared_data_commands_run_as_written(tmp_path):
    """The README's block for ../shared/data, run from a copy of the repo's layout."""
    block = next(
        b
        for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
        if "../shared/data/esc50_mini" in b
    )
    env_bin = Path(sys.executable).parent
    manifests = tmp_path / "manifests"
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if not line:
            continue
        words = shlex.split(line.replace("manifests/", f"{manifests}/"))
        if words[0] == "python":
            words[0] = sys.executable
        elif (env_bin / words[0]).exists():
            words[0] = str(env_bin / words[0])
        else:
            words = [
                sys.executable,
                "-m",
                "data_prep." + words[0].removeprefix("ugr-prep-"),
                *words[1:],
            ]
        if "train.py" in words:
            words += [
                f"paths.manifests={manifests}",
                f"hydra.run.dir={tmp_path}/run",
                "train.progress=false",
            ]
        if "scripts/bench_data.py" in words:
            at = words.index("scripts/bench_data.py") + 1
            words[at:at] = [f"paths.manifests={manifests}"]
        out = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{line}\n{out.stderr[-3000:]}"
    assert (tmp_path / "run" / "sisdri_table.csv").is_file()
