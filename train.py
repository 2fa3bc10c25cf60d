"""Train a separation model with unified gradient reweighting.

    python train.py                                # defaults: synthetic data, CPU-sized model
    python train.py weighting=robust alpha=1/15    # the paper's robust mode
    python train.py -m weighting=robust alpha=0,0.1,0.2 seed=0,1,2   # a sweep
    torchrun --standalone --nproc_per_node=8 train.py model=sudormrf_1x   # DDP, one run dir
    python train.py -m hydra/launcher=submitit_slurm alpha=0,0.1 ...      # SLURM (docs/cluster.md)

All logic lives in ``ugr_experiments.training.loop.run``; this file only hands it Hydra's config and
the run directory.
"""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads made
# steps several times slower; on a dedicated one spinning is faster, so a user's own setting
# wins (README, Benchmarks). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from ugr_experiments.cli import refuse_bad_output_dir, run_job  # noqa: E402


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    refuse_bad_output_dir(sys.argv[1:])  # before Hydra creates the folder
    main()
