"""Console scripts. ``ugr-train`` is ``python train.py`` from anywhere (editable installs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def conf_dir() -> Path:
    """The repository's ``conf/``; found next to the package in an editable install."""
    if not (CONF_DIR / "config.yaml").is_file():
        sys.exit(
            f"ugr-train: no config tree at {CONF_DIR}. Install the project editable "
            "(`pip install -e .` in a clone) or run `python train.py` from the repository root."
        )
    return CONF_DIR


def refuse_bad_output_dir(argv: list[str]) -> None:
    """Exit with the message (status 1) if the run or sweep folder of ``argv`` cannot be made
    or written: checked before Hydra creates it (``config.rundir``)."""
    from ugr_experiments.config.rundir import output_dir_problem

    problem = output_dir_problem(argv)
    if problem:
        sys.exit(f"error: {problem}")


def run_job(cfg: Any) -> float:
    """One Hydra job: train in Hydra's run directory; returns the mean test SI-SDRi.

    A failure whose message says what to do (a bad value or ``ConfigError``, bad audio files,
    unusable checkpoints, a diverged run) ends a single run with that message alone and
    status 1, not a traceback of our internals; ``HYDRA_FULL_ERROR=1`` shows the trace. In a
    multirun the error is raised, so that the job is recorded as failed and the others go on.
    A single run that ends before its checks have passed (refused, or stopped by a signal)
    takes back the files Hydra wrote for it (``training.callbacks.KeepRunDir``).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ugr_experiments.training.bookkeeping import TrainingDiverged
    from ugr_experiments.training.callbacks import restore_run_dir
    from ugr_experiments.training.checkpoint import CheckpointError
    from ugr_experiments.training.loop import run

    hydra_cfg = HydraConfig.get()
    accepted: list[bool] = []
    try:
        out = run(cfg, Path(hydra_cfg.runtime.output_dir), on_accept=lambda: accepted.append(True))
        return float(out["test_sisdri_mean"])
    except (ValueError, CheckpointError, TrainingDiverged) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        sys.exit(f"error: {err}")
    finally:
        if not accepted:
            restore_run_dir()


def train_main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the root train.py
    import hydra

    refuse_bad_output_dir(sys.argv[1:])
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(run_job)()
