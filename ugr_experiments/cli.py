"""Console scripts. ``ugr-train`` is ``python train.py`` from anywhere (editable installs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def conf_dir() -> Path:
    """The repository's ``conf/``; found next to the package in an editable install."""
    if not (CONF_DIR / "config.yaml").is_file():
        sys.exit(
            f"ugr-train: no config tree at {CONF_DIR}. Install the project editable "
            "(`pip install -e .` in a clone) or run `python train.py` from the repository root."
        )
    return CONF_DIR


def train_main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the root train.py
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> float:
        from ugr_experiments.train import run

        return run(cfg, Path(HydraConfig.get().runtime.output_dir))["test_sisdri_mean"]

    _main()
