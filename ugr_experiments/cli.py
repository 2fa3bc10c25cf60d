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


def run_job(cfg: Any) -> float:
    """One Hydra job: train in Hydra's run directory; returns the mean test SI-SDRi.

    A bad value (``ValueError``, ``ConfigError`` among them) ends a single run with its
    message alone, not a traceback of our internals; ``HYDRA_FULL_ERROR=1`` shows the trace.
    In a multirun the error is raised, so that the job is recorded as failed and the others go on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ugr_experiments.training.loop import run

    hydra_cfg = HydraConfig.get()
    try:
        return run(cfg, Path(hydra_cfg.runtime.output_dir))["test_sisdri_mean"]
    except ValueError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        sys.exit(f"error: {err}")


def train_main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the root train.py
    import hydra

    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(run_job)()
