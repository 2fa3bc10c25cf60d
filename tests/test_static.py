"""Static checks: ruff (lint and format) on the repository, mypy on the package.

The tools and the stubs mypy needs are in the ``dev`` extra; their settings are in
``pyproject.toml`` (``[tool.ruff]``, ``[tool.mypy]``). Each runs from the repository root
with the interpreter running the tests, so the checks see the installed environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECKS = {
    "ruff check": ["ruff", "check", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    "mypy": ["mypy"],  # files and options: [tool.mypy] in pyproject.toml
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_static_check_passes(name: str) -> None:
    command = [sys.executable, "-m", *CHECKS[name]]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"`{' '.join(CHECKS[name])}` exited with {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
