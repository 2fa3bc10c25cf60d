"""Resumable training: what a checkpoint holds, and how a run continues from one.

A run killed at any point loses at most the steps since its last checkpoint and then
continues as if nothing had happened: same weights, same history, same table, bit for bit on
the CPU. That holds because a checkpoint (``ugr_experiments.training.checkpoint``) holds
everything the rest of the run depends on:

- model, optimiser (Adam moments and step counts) and learning-rate schedule;
- ``training.state.TrainState``: the epoch, the batches of that epoch already trained on,
  the global step, the best validation score, the current run of non-finite steps, the
  epoch's training figures so far, and the rows of ``history.csv``;
- the weighting function's state (``Weighting.state_dict``: group DRO's group weights; empty
  for the stateless modes);
- Python, NumPy and torch RNG states. The data pipeline needs no RNG state: an item is a
  pure function of (seed, split, epoch, index), so its position is (epoch, batch), and a
  resumed epoch starts its sampler at the first index not yet trained on
  (``training.state.ResumableSampler``) instead of drawing and discarding batches.

What a checkpoint holds is assembled in one function, :func:`checkpoint_content`, and put
back in one function, :func:`restore`.

When checkpoints are written is decided in ``training.bookkeeping``. Re-running the same
command with ``resume=true`` and the same ``hydra.run.dir`` continues from the newest usable
checkpoint, after checking that no key that changes the result differs
(``config.RESUME_IGNORED`` lists the keys that may). Per-epoch test rows (``eval.last_epochs``)
go to ``test_epochs/`` so a resumed run still averages them all; TensorBoard events after
the checkpoint's step are purged by the writer (``purge_step``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from ugr_experiments.config import RESUME_IGNORED, ConfigError, result_differences
from ugr_experiments.training.checkpoint import (
    BEST,
    FORMAT_VERSION,
    LAST,
    PREVIOUS,
    CheckpointError,
    checkpoint_dir,
    load_checkpoint,
    newest_resumable,
    remove_stale_temporaries,
    rng_state,
    set_rng_state,
)
from ugr_experiments.training.distributed import Runtime
from ugr_experiments.training.parts import RunParts
from ugr_experiments.training.state import TrainState

log = logging.getLogger(__name__)

TEST_EPOCHS_DIR = "test_epochs"
# pandas >= 3 reads floats back exactly by default (and deprecates the option).
PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
EXACT_FLOATS: dict[str, Any] = {} if PANDAS_3 else {"float_precision": "round_trip"}


# ---------------------------------------------------------------------------------------------
# Starting: a new run, or the continuation of one
# ---------------------------------------------------------------------------------------------


def resume_checkpoint(
    cfg: dict[str, Any],
    run_dir: str | Path,
    data: dict[str, dict[str, str]] | None = None,
    on_cpu: bool = True,
) -> dict[str, Any] | None:
    """The checkpoint a run continues from, or None for a new run.

    Args:
        cfg: the plain, validated config of this run.
        run_dir: the run directory (``hydra.run.dir``).
        data: the manifests this run reads and their digests (``data.checks.check_data``);
            they must be the checkpoint's (checkpoints without them are not compared).
        on_cpu: the run trains on the CPU (``train.threads`` then changes the result).

    Raises:
        ConfigError: ``resume=false`` but the directory holds a run's checkpoints; or the
            config differs from the checkpoint's in keys that change the result (listed);
            or the data differs (both manifests named).
        CheckpointError: checkpoints exist but none is usable, or ``best.pt`` (needed by the
            final test) is damaged.
    """
    run_dir = Path(run_dir)
    if not cfg["resume"]:
        _refuse_to_overwrite(run_dir)
        remove_stale_temporaries(checkpoint_dir(run_dir))  # of a killed write; resume: below
        return None
    found = newest_resumable(run_dir)
    if found is None:
        log.warning(
            "resume=true but %s holds no checkpoint: starting a new run there (to continue an "
            "earlier run, pass its directory: hydra.run.dir=<run dir>)",
            run_dir,
        )
        return None
    path, checkpoint = found
    differences = result_differences(yaml.safe_load(checkpoint["config"]), cfg, on_cpu)
    differences += data_differences(checkpoint.get("data"), data or {})
    if differences:
        raise ConfigError(_differences_message(run_dir, path, checkpoint, differences))
    _check_best(cfg, run_dir, checkpoint)
    log.info(
        "resuming %s from %s: epoch %d, batch %d, step %d",
        run_dir,
        path.name,
        checkpoint["epoch"] + 1,
        checkpoint["batch"],
        checkpoint["step"],
    )
    return checkpoint


def _refuse_to_overwrite(run_dir: Path) -> None:
    names = [n for n in (LAST, PREVIOUS, BEST) if (checkpoint_dir(run_dir) / n).exists()]
    if names:
        raise ConfigError(
            f"resume=false but {run_dir} already holds a run's checkpoints ({', '.join(names)}): "
            "continue that run with the same command plus `resume=true`, or start a new run "
            "in another directory (hydra.run.dir=<new dir>)"
        )


def data_differences(
    saved: dict[str, dict[str, str]] | None, current: dict[str, dict[str, str]]
) -> list[str]:
    """``data.<group>: ...`` lines for each manifest whose rows differ from the checkpoint's.

    Only the digests count: a manifest that moved (``paths.manifests``) with the same rows is
    the same data. A checkpoint without digests (older versions) is not compared.
    """
    if saved is None:
        return []
    lines = []
    for group in sorted(set(saved) | set(current)):
        old, new = saved.get(group, {}), current.get(group, {})
        if old.get("digest") != new.get("digest"):
            lines.append(
                f"data.{group}: the checkpoint trained on {old.get('manifest', '(none)')} "
                f"(rows sha256 {old.get('digest', '-')[:12]}), this run reads "
                f"{new.get('manifest', '(none)')} (rows sha256 {new.get('digest', '-')[:12]}): "
                "other data"
            )
    return lines


def _differences_message(
    run_dir: Path, path: Path, checkpoint: dict[str, Any], differences: list[str]
) -> str:
    return (
        f"cannot resume {run_dir} from {path.name} (epoch {checkpoint['epoch'] + 1}, step "
        f"{checkpoint['step']}): the config differs in {len(differences)} key(s) that change "
        "the result:\n  - " + "\n  - ".join(differences) + "\nRe-run the command that started "
        f"the run (its config is {run_dir / 'config.yaml'}) with resume=true, or start a new "
        f"run in another directory. Keys that may differ: {', '.join(RESUME_IGNORED)}"
    )


def _check_best(cfg: dict[str, Any], run_dir: Path, checkpoint: dict[str, Any]) -> None:
    """The final test (eval.last_epochs=0) needs the best-validation weights: check them now."""
    best_epoch = checkpoint["train_state"]["best_epoch"]
    if cfg["eval"]["last_epochs"]:
        return
    if best_epoch < 1:
        if checkpoint["epoch"] >= cfg["train"]["epochs"]:
            raise CheckpointError(
                f"{run_dir} trained all its {checkpoint['epoch']} epoch(s) but no validation "
                "SI-SDRi was finite: there are no best-validation weights for the final test. "
                "Start a new run in another hydra.run.dir (e.g. with a lower optim.lr)"
            )
        return
    try:
        load_checkpoint(checkpoint_dir(run_dir) / BEST)
    except (CheckpointError, FileNotFoundError) as err:
        raise CheckpointError(
            f"{err}; it held the best-validation weights (epoch {best_epoch}) that the final "
            "test needs, so this run cannot finish as it would have: start a new run "
            "(another hydra.run.dir)"
        ) from err


def finished_run(
    checkpoint: dict[str, Any] | None, run_dir: str | Path, epochs: int
) -> dict[str, Any] | None:
    """``run.json`` of a run that already finished (a re-launched sweep skips it), else None.

    Args:
        checkpoint: the checkpoint the run continues from (None: a new run).
        run_dir: the run directory.
        epochs: the epochs the run trains (``train.epochs``).
    """
    info = Path(run_dir) / "run.json"
    if checkpoint is None or checkpoint["epoch"] < epochs or not info.is_file():
        return None
    log.info("%s already finished (run.json exists): nothing to resume", run_dir)
    return json.loads(info.read_text())


# ---------------------------------------------------------------------------------------------
# What a checkpoint holds: assembled in one place, restored in one place
# ---------------------------------------------------------------------------------------------


def checkpoint_content(parts: RunParts, state: TrainState) -> dict[str, Any]:
    """Everything needed to continue exactly, as plain data (see the module docstring)."""
    return {
        "format": FORMAT_VERSION,
        "model": unwrap(parts.model).state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "rng": rng_state(),
        "config": parts.config_text,
        "data": parts.data,
        "train_state": state.to_dict(),
        "weighting": parts.weighting.state_dict(),  # e.g. group DRO's q; {} when stateless
        "epoch": state.epoch,
        "batch": state.batch,
        "step": state.step,
        "valid_sisdri": state.history[-1]["valid_sisdri"] if state.history else math.nan,
    }


def restore(parts: RunParts, checkpoint: dict[str, Any] | None) -> TrainState:
    """Put the checkpoint's weights, optimiser, schedule and RNG states into the built run.

    Also rewrites ``history.csv`` to the checkpoint's rows (rows of epochs trained after the
    checkpoint would otherwise appear twice).

    Returns:
        The checkpoint's :class:`TrainState`, or a fresh one when ``checkpoint`` is None.
    """
    if checkpoint is None:
        return TrainState()
    unwrap(parts.model).load_state_dict(checkpoint["model"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    parts.scheduler.load_state_dict(checkpoint["scheduler"])
    # The optimiser did step before the checkpoint: no "scheduler before optimizer" warning.
    parts.optimizer._opt_called = True  # type: ignore[attr-defined]
    set_rng_state(checkpoint["rng"])
    parts.weighting.load_state_dict(checkpoint.get("weighting", {}))
    state = TrainState.from_dict(checkpoint["train_state"])
    history = parts.run_dir / "history.csv"
    if state.history and parts.runtime.is_main:
        pd.DataFrame(state.history).to_csv(history, index=False)
    elif parts.runtime.is_main:
        history.unlink(missing_ok=True)
    return state


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = next(
            (getattr(model, a) for a in ("module", "_orig_mod") if hasattr(model, a)), None
        )
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


# ---------------------------------------------------------------------------------------------
# Per-epoch test rows (eval.last_epochs > 0) survive a restart
# ---------------------------------------------------------------------------------------------


def save_test_rows(rows: pd.DataFrame, run_dir: Path, rt: Runtime) -> None:
    """Keep one evaluation epoch's test rows in ``test_epochs/epoch_NNNN.csv`` (atomically;
    rank 0 only)."""
    if not rt.is_main:
        return
    folder = run_dir / TEST_EPOCHS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch_{int(rows['epoch'].iloc[0]):04d}.csv"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    rows.to_csv(tmp, index=False)
    os.replace(tmp, path)


def load_test_rows(run_dir: Path, done: int, epochs: int, last_epochs: int) -> list[pd.DataFrame]:
    """The test rows of the evaluation epochs among the first ``done`` (read back exactly).

    Args:
        run_dir: the run directory.
        done: epochs completed (the checkpoint's epoch).
        epochs: the epochs the run trains (``train.epochs``).
        last_epochs: the number of final epochs tested (``eval.last_epochs``; 0: none).

    Raises:
        CheckpointError: a file that the checkpoint's epoch implies is missing.
    """
    rows = []
    for epoch in range(epochs - last_epochs + 1, done + 1) if last_epochs else ():
        path = run_dir / TEST_EPOCHS_DIR / f"epoch_{epoch:04d}.csv"
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: the test rows of epoch {epoch} were written before its "
                "checkpoint, so the run directory was changed by hand; start a new run"
            )
        # Empty fields only are missing values; floats are parsed back exactly.
        rows.append(pd.read_csv(path, keep_default_na=False, na_values=[""], **EXACT_FLOATS))
    return rows
