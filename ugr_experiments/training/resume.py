"""Resumable training: where the loop is, when it checkpoints, and how a run continues.

A run killed at any point loses at most the steps since its last checkpoint and then
continues as if nothing had happened: same weights, same history, same table, bit for bit on
the CPU. That holds because a checkpoint (``ugr_experiments.training.checkpoint``) holds
everything the rest of the run depends on:

- model, optimiser (Adam moments and step counts) and learning-rate schedule;
- :class:`TrainState`: the epoch, the batches of that epoch already trained on, the global
  step, the best validation score, the current run of non-finite steps, the epoch's training
  figures so far, and the rows of ``history.csv``;
- Python, NumPy and torch RNG states. The data pipeline needs no RNG state: an item is a
  pure function of (seed, split, epoch, index), so its position is (epoch, batch), and a
  resumed epoch starts its sampler at the first index not yet trained on
  (:class:`ResumableSampler`) instead of drawing and discarding batches.

``last.pt`` is written every ``checkpoint.every_steps`` steps, at every epoch end, when a
SIGINT or SIGTERM arrives, and when ``train.max_bad_steps`` non-finite steps in a row stop the
run; ``best.pt`` when the validation score improves. Re-running the same command with
``resume=true`` and the same ``hydra.run.dir`` continues from the newest usable checkpoint,
after checking that no key that changes the result differs (``config.RESUME_IGNORED`` lists
the keys that may). Per-epoch test rows (``eval.last_epochs``) go to ``test_epochs/`` so a
resumed run still averages them all; TensorBoard events after the checkpoint's step are
purged by the writer (``purge_step``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
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
    rng_state,
    save_checkpoint,
    set_rng_state,
)

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEST_EPOCHS_DIR = "test_epochs"
# pandas >= 3 reads floats back exactly by default (and deprecates the option).
EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint as ``train_state`` (plain values only)."""

    epoch: int = 0  # completed epochs, i.e. the 0-based index of the current one
    batch: int = 0  # batches of the current epoch already trained on
    step: int = 0  # optimiser steps so far, skipped (non-finite) ones included
    best: float = -math.inf  # best validation SI-SDRi so far
    best_epoch: int = -1  # its epoch (1-based), -1 before the first validation
    bad_in_row: int = 0  # the current run of non-finite steps
    losses: list[float] = field(default_factory=list)  # this epoch's weighted losses so far
    sisdris: list[float] = field(default_factory=list)  # this epoch's training SI-SDRi so far
    skipped: int = 0  # this epoch's non-finite (skipped) steps
    history: list[dict[str, Any]] = field(default_factory=list)  # rows of history.csv
    elapsed: float = 0.0  # training seconds spent before this process started
    started: float = field(default_factory=time.time, compare=False)  # not saved

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint (``elapsed`` includes this process's time)."""
        out = asdict(self)
        out.pop("started")
        out["elapsed"] = self.elapsed + time.time() - self.started
        out["history"] = [{k: _plain(v) for k, v in row.items()} for row in self.history]
        return out

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        """The state :meth:`to_dict` saved."""
        names = {f.name for f in fields(cls)} - {"started"}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def next_epoch(self) -> None:
        """The epoch is over: the next one starts at its first batch."""
        self.epoch += 1
        self.batch = 0
        self.losses, self.sisdris, self.skipped = [], [], 0


def _plain(value: Any) -> Any:
    """NumPy / torch scalars as Python numbers (a weights-only load refuses NumPy objects)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


class RunInterrupted(SystemExit):
    """A SIGINT or SIGTERM stopped the run after saving: exit status 0, no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(0)
        self.message = message


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row; the message says what to try."""


class ResumableSampler(torch.utils.data.Sampler[int]):
    """The indices of a split in order, from ``start`` on (this rank's share under DDP).

    Setting ``start = batches_done * global_batch`` resumes an epoch at its first batch not
    yet trained on. Rank ``r`` of ``world_size`` takes every ``world_size``-th index from
    ``start + r`` (``DistributedSampler`` without shuffling, minus the padding).
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = int(length), int(rank), int(world_size)
        self.start = 0

    def _indices(self) -> range:
        return range(self.start + self.rank, self.length, self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT/SIGTERM to the main process.

    A Ctrl-C or a cluster's SIGTERM reaches the whole process group; a worker killed by it
    would crash the main process before it could save its checkpoint.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Starting: a new run, or the continuation of one
# ---------------------------------------------------------------------------------------------


def resume_checkpoint(cfg: dict[str, Any], run_dir: str | Path) -> dict[str, Any] | None:
    """The checkpoint a run continues from, or None for a new run.

    Args:
        cfg: the plain, validated config of this run.
        run_dir: the run directory (``hydra.run.dir``).

    Raises:
        ConfigError: ``resume=false`` but the directory holds a run's checkpoints; or the
            config differs from the checkpoint's in keys that change the result (listed).
        CheckpointError: checkpoints exist but none is usable, or ``best.pt`` (needed by the
            final test) is damaged.
    """
    run_dir = Path(run_dir)
    if not cfg["resume"]:
        _refuse_to_overwrite(run_dir)
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
    differences = result_differences(yaml.safe_load(checkpoint["config"]), cfg)
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
    if cfg["eval"]["last_epochs"] or best_epoch < 1:
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
    cfg: dict[str, Any], checkpoint: dict[str, Any] | None, run_dir: str | Path
) -> dict[str, Any] | None:
    """``run.json`` of a run that already finished (a re-launched sweep skips it), else None."""
    info = Path(run_dir) / "run.json"
    if checkpoint is None or checkpoint["epoch"] < cfg["train"]["epochs"] or not info.is_file():
        return None
    log.info("%s already finished (run.json exists): nothing to resume", run_dir)
    return json.loads(info.read_text())


def restore(ctx: dict[str, Any], checkpoint: dict[str, Any] | None) -> TrainState:
    """Put the checkpoint's weights, optimiser, schedule and RNG states into the built run.

    Also rewrites ``history.csv`` to the checkpoint's rows (rows of epochs trained after the
    checkpoint would otherwise appear twice) and sets ``ctx["state"]``.

    Returns:
        The checkpoint's :class:`TrainState`, or a fresh one when ``checkpoint`` is None.
    """
    state = TrainState()
    if checkpoint is not None:
        unwrap(ctx["model"]).load_state_dict(checkpoint["model"])
        ctx["optimizer"].load_state_dict(checkpoint["optimizer"])
        ctx["scheduler"].load_state_dict(checkpoint["scheduler"])
        # The optimiser did step before the checkpoint: no "scheduler before optimizer" warning.
        ctx["optimizer"]._opt_called = True
        set_rng_state(checkpoint["rng"])
        state = TrainState.from_dict(checkpoint["train_state"])
        history = Path(ctx["run_dir"]) / "history.csv"
        if state.history and is_main(ctx):
            pd.DataFrame(state.history).to_csv(history, index=False)
        elif is_main(ctx):
            history.unlink(missing_ok=True)
    ctx["state"] = state
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
# During training
# ---------------------------------------------------------------------------------------------


def checkpoint_content(ctx: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to continue exactly, as plain data (see the module docstring)."""
    state: TrainState = ctx["state"]
    return {
        "format": FORMAT_VERSION,
        "model": unwrap(ctx["model"]).state_dict(),
        "optimizer": ctx["optimizer"].state_dict(),
        "scheduler": ctx["scheduler"].state_dict(),
        "rng": rng_state(),
        "config": yaml.safe_dump(ctx["cfg"], sort_keys=False),
        "train_state": state.to_dict(),
        "epoch": state.epoch,
        "batch": state.batch,
        "step": state.step,
        "valid_sisdri": state.history[-1]["valid_sisdri"] if state.history else math.nan,
    }


def is_main(ctx: dict[str, Any]) -> bool:
    """Whether this process writes files: always, except on DDP ranks other than 0."""
    runtime = ctx.get("rt")
    return runtime is None or bool(runtime.is_main)


def save_last(ctx: dict[str, Any]) -> Path:
    """Write ``last.pt`` atomically, keeping the one it replaces as ``previous.pt``.

    Under DDP only rank 0 writes (the ranks hold identical weights); all return the path.
    """
    folder = checkpoint_dir(ctx["run_dir"])
    if is_main(ctx):
        save_checkpoint(checkpoint_content(ctx), folder / LAST, previous=folder / PREVIOUS)
    return folder / LAST


def steps_per_epoch(ctx: dict[str, Any]) -> int:
    """Batches per training epoch (the split holds exactly that many batches)."""
    return len(ctx["data"]["train"]) // ctx["cfg"]["train"]["batch_size"]


def count_step(ctx: dict[str, Any], finite: bool) -> None:
    """Count a step as finite (ends a run of non-finite steps) or skipped."""
    state = ctx["state"]
    if bool(finite):  # a bool, or a () bool tensor
        state.bad_in_row = 0
    else:
        state.bad_in_row += 1
        state.skipped += 1


def after_step(ctx: dict[str, Any], finite: bool) -> None:
    """Bookkeeping after every optimiser step (``ctx["state"]`` already counts it).

    Counts non-finite (skipped) steps and stops the run after ``train.max_bad_steps`` in a
    row; writes ``last.pt`` every ``checkpoint.every_steps`` steps (not after an epoch's last
    batch: the epoch-end checkpoint follows); saves and exits when a signal has arrived.

    Raises:
        TrainingDiverged: too many non-finite steps in a row (after saving the last good
            weights: a skipped step changes nothing).
        RunInterrupted: a SIGINT or SIGTERM arrived (after saving).
    """
    state, cfg = ctx["state"], ctx["cfg"]
    count_step(ctx, finite)
    if not bool(finite) and state.bad_in_row >= cfg["train"]["max_bad_steps"]:
        raise TrainingDiverged(_diverged_message(ctx, save_last(ctx)))
    if _signalled(ctx):
        _interrupt(ctx, save_last(ctx))
    every = cfg["checkpoint"]["every_steps"]
    if every and state.step % every == 0 and state.batch < steps_per_epoch(ctx):
        save_last(ctx)


def _signalled(ctx: dict[str, Any]) -> bool:
    """Whether a stop signal arrived, on any rank: under DDP a SIGTERM can reach the ranks
    at different steps, and all must stop at the same one (else the others hang in a
    collective). One all-reduce under DDP; no sync in a single process."""
    flag = ctx.get("signal") is not None
    runtime = ctx.get("rt")
    if runtime is None or not runtime.distributed:
        return flag
    from ugr_experiments.training.distributed import any_rank

    return any_rank(flag, runtime)


def _diverged_message(ctx: dict[str, Any], path: Path) -> str:
    state, cfg = ctx["state"], ctx["cfg"]
    first = state.step - state.bad_in_row + 1
    return (
        f"{state.bad_in_row} non-finite losses or gradients in a row (steps {first}-"
        f"{state.step}, train.max_bad_steps={cfg['train']['max_bad_steps']}): training "
        f"stopped. No skipped step changed the weights; those after step {first - 1} are "
        f"saved in {path}. To fix: lower optim.lr (now {cfg['optim']['lr']}), keep "
        f"optim.grad_clip set (now {cfg['optim'].get('grad_clip')}), lower alpha (now "
        f"{cfg['alpha']}), or check the data for silent or broken audio; then start a new "
        "run, or continue this one with `resume=true train.max_bad_steps=<more>`"
    )


def end_epoch(ctx: dict[str, Any], valid: float) -> None:
    """After the epoch's validation: update the best score, write best.pt and last.pt.

    Exits (after saving) if a signal arrived during validation.

    Args:
        ctx: the run (``state``, model, optimiser, ...).
        valid: this epoch's mean validation SI-SDRi.
    """
    state: TrainState = ctx["state"]
    improved = valid > state.best
    if improved:
        state.best, state.best_epoch = valid, state.epoch + 1
    state.next_epoch()
    folder = checkpoint_dir(ctx["run_dir"])
    if improved and is_main(ctx):
        save_checkpoint(checkpoint_content(ctx), folder / BEST)
    path = save_last(ctx)
    if _signalled(ctx):
        _interrupt(ctx, path)


def _interrupt(ctx: dict[str, Any], path: Path) -> None:
    state = ctx["state"]
    sig = ctx.get("signal")
    name = signal.Signals(sig).name if sig is not None else "a stop signal on another rank"
    message = (
        f"{name}: stopped at epoch {state.epoch + 1}, batch {state.batch} (step {state.step}) "
        f"and saved {path}. Continue with the same command plus `resume=true "
        f"hydra.run.dir={ctx['run_dir']}`"
    )
    log.warning(message)
    raise RunInterrupted(message)


@contextmanager
def stop_on_signals(ctx: dict[str, Any]) -> Iterator[None]:
    """While training, SIGINT (Ctrl-C) and SIGTERM (pre-emption) save and exit cleanly.

    The handler only sets ``ctx["signal"]``; :func:`after_step` and :func:`end_epoch` act
    on it, so the step in progress finishes and the checkpoint is consistent. A second
    Ctrl-C stops at once. Outside the main thread (signals cannot be caught there) nothing
    is installed.
    """
    ctx["signal"] = None

    def handler(signum: int, frame: Any) -> None:
        if ctx["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        ctx["signal"] = signum
        log.warning("%s received: saving a checkpoint after this step", signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------
# Per-epoch test rows (eval.last_epochs > 0) survive a restart
# ---------------------------------------------------------------------------------------------


def save_test_rows(ctx: dict[str, Any], rows: pd.DataFrame) -> None:
    """Keep one evaluation epoch's test rows in ``test_epochs/epoch_NNNN.csv`` (atomically)."""
    if not is_main(ctx):
        return
    folder = Path(ctx["run_dir"]) / TEST_EPOCHS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch_{int(rows['epoch'].iloc[0]):04d}.csv"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    rows.to_csv(tmp, index=False)
    os.replace(tmp, path)


def load_test_rows(cfg: dict[str, Any], run_dir: str | Path, done: int) -> list[pd.DataFrame]:
    """The test rows of the evaluation epochs among the first ``done`` (read back exactly).

    Raises:
        CheckpointError: a file that the checkpoint's epoch implies is missing.
    """
    epochs, last = cfg["train"]["epochs"], cfg["eval"]["last_epochs"]
    rows = []
    for epoch in range(epochs - last + 1, done + 1) if last else ():
        path = Path(run_dir) / TEST_EPOCHS_DIR / f"epoch_{epoch:04d}.csv"
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: the test rows of epoch {epoch} were written before its "
                "checkpoint, so the run directory was changed by hand; start a new run"
            )
        # Empty fields only are missing values; floats are parsed back exactly.
        rows.append(pd.read_csv(path, keep_default_na=False, na_values=[""], **EXACT_FLOATS))
    return rows
