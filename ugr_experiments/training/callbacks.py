"""Hydra callbacks. ``RecordFailure`` leaves a trace of a failed job in its run directory;
``KeepRunDir`` lets a refused single run take back what Hydra wrote before the job started.

Hydra's basic sweeper (and the joblib and submitit launchers) run every job of a sweep and
re-raise the first failure only after the others have finished, so one failing job does not
lose the results of the rest. What the failed job leaves behind is a run directory without
``per_source_sisdri.csv``; with this callback it also holds ``failure.json``::

    {"status": "failed", "error": "ConfigError: alpha must be >= 0 ...", "traceback": "...",
     "overrides": ["alpha=-1", "seed=0"], "finished": "2026-01-01T12:00:00+0000"}

``scripts/make_tables.py`` lists such runs as failed (with the error) instead of dropping
them. ``conf/config.yaml`` enables it for every run and sweep::

    hydra:
      callbacks:
        record_failure:
          _target_: ugr_experiments.training.callbacks.RecordFailure
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

FAILURE_FILE = "failure.json"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def failure_record(error: BaseException, overrides: list[str]) -> dict[str, Any]:
    """The JSON-ready description of a failed job.

    Args:
        error: the exception the job raised.
        overrides: the job's command-line overrides (what makes it differ from its siblings).
    """
    return {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        "overrides": list(overrides),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_failure(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/failure.json`` (through a temporary file and a rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / FAILURE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


class RecordFailure(Callback):
    """On a failed job, write ``failure.json`` (error, traceback, overrides) in its run dir."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Called by Hydra after every job, completed or failed."""
        if job_return.status != JobStatus.FAILED:
            return
        if job_return.hydra_cfg is None:  # not started by Hydra: no run directory to write to
            return
        error = job_return._return_value  # the exception (return_value would re-raise it)
        run_dir = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        write_failure(run_dir, failure_record(error, list(job_return.overrides or [])))


@dataclass
class RunDirSnapshot:
    """What Hydra is about to write in a run directory, as it was before the job.

    Attributes:
        files: each file Hydra writes (``.hydra/*.yaml``, the job's log) and its bytes
            before the job, or None where it did not exist.
        new_folders: the folders Hydra will create for them, deepest first.
    """

    files: dict[Path, bytes | None]
    new_folders: list[Path]

    @classmethod
    def take(cls, config: Any) -> RunDirSnapshot:
        """The state of ``config``'s ``hydra.run.dir`` before Hydra writes into it."""
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
        subdir = OmegaConf.select(config, "hydra.output_subdir")
        names = [f"{subdir}/{n}" for n in HYDRA_FILES] if subdir else []
        names.append(f"{OmegaConf.select(config, 'hydra.job.name', default='train')}.log")
        files = {run_dir / n: _read(run_dir / n) for n in names}
        folders = {folder for path in files for folder in path.parents if not folder.exists()}
        return cls(files, sorted(folders, key=lambda p: len(p.parts), reverse=True))

    def restore(self) -> None:
        """Put every file back as it was; remove the folders Hydra created, if left empty."""
        for path, content in self.files.items():
            if content is None:
                path.unlink(missing_ok=True)
            elif _read(path) != content:
                path.write_bytes(content)
        for folder in self.new_folders:
            try:
                folder.rmdir()  # only if empty: nothing but Hydra's files was written there
            except OSError:
                pass


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


_SNAPSHOTS: list[RunDirSnapshot] = []


class KeepRunDir(Callback):
    """Before a single run, remember what Hydra will write in its run directory, so that a
    command refused before any work leaves an existing run as it was, and a refused new run
    leaves no folder (``ugr_experiments.cli.run_job`` calls :func:`restore_run_dir`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Called by Hydra before it creates the run directory of a single run."""
        _SNAPSHOTS.clear()
        _SNAPSHOTS.append(RunDirSnapshot.take(config))


def restore_run_dir() -> None:
    """Undo what Hydra wrote for this single run (no-op in a sweep or outside Hydra)."""
    while _SNAPSHOTS:
        _SNAPSHOTS.pop().restore()
