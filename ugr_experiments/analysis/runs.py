"""Find run directories, read what they hold, and say which finished.

A *run directory* is one that ``train.py`` (or Hydra, for a job that failed before training)
wrote: it holds ``config.yaml`` (the resolved config ``ugr_experiments.training.loop.run`` saves) or
``.hydra/config.yaml`` (the composed config Hydra saves before the job starts). Everything a
table needs is read from these files, never from directory names:

- ``config.yaml`` (or ``.hydra/config.yaml``, resolved here): what the run was;
- ``per_source_sisdri.csv``: present only when the run finished its test evaluation;
- ``history.csv``: per-epoch validation SI-SDRi (convergence curves, progress of a run);
- ``run.json``: seed, wall time, device;
- ``failure.json``: written by
  :class:`ugr_experiments.training.callbacks.RecordFailure` for a failed job.

Status: ``complete`` (per-source rows present), ``failed`` (``failure.json``, or a ``run.json``
whose ``status`` is ``failed``), ``incomplete`` otherwise (still running, killed, or stopped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from ugr_experiments.config import ConfigError, get_key, parse_number
from ugr_experiments.config.plain import plain_dict

ROWS_FILE = "per_source_sisdri.csv"
FAILURE_FILE = "failure.json"
# Folders inside a run directory that never hold runs.
_SKIP_DIRS = {"checkpoints", "tb", ".hydra", "__pycache__"}

COMPLETE, FAILED, INCOMPLETE = "complete", "failed", "incomplete"


@dataclass
class Run:
    """One run directory and what it holds (``rows`` and ``history`` may be None)."""

    path: Path
    config: dict[str, Any]
    status: str
    detail: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    rows: pd.DataFrame | None = None
    history: pd.DataFrame | None = None

    @property
    def seed(self) -> int | None:
        """The run's seed (from its config)."""
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int | float) else None

    @property
    def complete(self) -> bool:
        """True when the run has its per-source test rows."""
        return self.status == COMPLETE

    @property
    def test_rows(self) -> pd.DataFrame:
        """``rows`` of a run known to have them (a complete run loaded with its rows)."""
        if self.rows is None:
            raise ValueError(f"{self.path}: no per-source test rows loaded")
        return self.rows

    @property
    def valid_history(self) -> pd.DataFrame:
        """``history`` of a run known to have one (``history.csv``)."""
        if self.history is None:
            raise ValueError(f"{self.path}: no validation history (history.csv)")
        return self.history


def is_run_dir(path: Path) -> bool:
    """True for a directory holding a saved config (ours or Hydra's) or a failure record."""
    return any(
        (path / name).is_file()
        for name in ("config.yaml", ".hydra/config.yaml", FAILURE_FILE, ROWS_FILE)
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or below ``paths`` (sorted, without duplicates).

    Raises:
        FileNotFoundError: naming a path that does not exist.
    """
    found: set[Path] = set()
    for start in map(Path, paths):
        if not start.exists():
            raise FileNotFoundError(f"no such run or sweep directory: {start}")
        stack = [start]
        while stack:
            here = stack.pop()
            if is_run_dir(here):
                found.add(here.resolve())
                continue  # a run holds no runs
            stack += [p for p in here.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS]
    return sorted(found)


def get(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``, or ``default`` (None) where a key is missing."""
    return get_key(cfg, dotted, default)


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (empty for anything else)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _resolved(cfg: dict[str, Any]) -> dict[str, Any]:
    """Hydra's composed config, resolved where possible (``alpha`` fractions parsed first)."""
    cfg = dict(cfg)
    try:
        cfg["alpha"] = parse_number(cfg.get("alpha", 0.0), "alpha")
    except ConfigError:
        pass  # left as written: the run failed on it, the listing shows it
    try:
        return plain_dict(OmegaConf.create(cfg), resolve=True)
    except Exception:  # noqa: BLE001 - any resolution error: keep the unresolved config
        return cfg


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config: ``config.yaml``, else Hydra's ``.hydra/config.yaml``."""
    if (run_dir / "config.yaml").is_file():
        return _read_yaml(run_dir / "config.yaml")
    if (run_dir / ".hydra" / "config.yaml").is_file():
        return _resolved(_read_yaml(run_dir / ".hydra" / "config.yaml"))
    return {}


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or ``{}`` when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _progress(history: pd.DataFrame | None, cfg: dict[str, Any]) -> str:
    """``"stopped after epoch 3 of 8"`` (or ``"no epoch finished"``)."""
    total = get(cfg, "train.epochs", "?")
    if history is None or len(history) == 0:
        return f"no epoch finished (of {total})"
    return f"stopped after epoch {int(history['epoch'].iloc[-1])} of {total}"


def _status(
    run_dir: Path, info: dict[str, Any], history: pd.DataFrame | None, cfg: dict[str, Any]
) -> tuple[str, str]:
    """``(status, detail)`` of a run directory (see the module docstring)."""
    failure = _read_json(run_dir / FAILURE_FILE)
    if failure or info.get("status") == FAILED:
        record = failure or info
        return FAILED, str(record.get("error", "failed (no error recorded)")).splitlines()[0]
    if (run_dir / ROWS_FILE).is_file():
        return COMPLETE, ""
    return INCOMPLETE, _progress(history, cfg)


def load_run(run_dir: str | Path, with_rows: bool = True) -> Run:
    """Read one run directory (see the module docstring)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    info = _read_json(run_dir / "run.json")
    history = None
    if (run_dir / "history.csv").is_file():
        history = pd.read_csv(run_dir / "history.csv")
    status, detail = _status(run_dir, info, history, cfg)
    rows = None
    if status == COMPLETE and with_rows:
        rows = pd.read_csv(run_dir / ROWS_FILE)
        if len(rows) == 0:
            status, detail = INCOMPLETE, f"{ROWS_FILE} is empty"
    return Run(run_dir, cfg, status, detail, info, rows, history)


def load_runs(paths: Sequence[str | Path], with_rows: bool = True) -> list[Run]:
    """Every run at or below ``paths``, complete or not (see :func:`load_run`)."""
    return [load_run(p, with_rows) for p in find_run_dirs(paths)]


def common_root(runs: Sequence[Run]) -> Path | None:
    """The deepest folder containing every run (to print short relative names)."""
    if not runs:
        return None
    parts = [r.path.parts for r in runs]
    shared = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        shared.append(column[0])
    root = Path(*shared) if shared else None
    if root is not None and len(runs) == 1:
        root = root.parent
    return root


def short_name(run: Run, root: Path | None) -> str:
    """The run directory relative to ``root`` (or the full path)."""
    if root is None:
        return str(run.path)
    try:
        return str(run.path.relative_to(root)) or "."
    except ValueError:
        return str(run.path)


def wall_seconds(run: Run) -> float:
    """The run's wall time from ``run.json`` (or the last ``history.csv`` row), else NaN."""
    if "wall_seconds" in run.info:
        return float(run.info["wall_seconds"])
    if run.history is not None and len(run.history) and "seconds" in run.history:
        return float(run.history["seconds"].iloc[-1])
    return math.nan
