"""After every step and every epoch: count non-finite steps, save checkpoints when due, and stop
the run (after saving) on a stop signal or when training diverges.

``last.pt`` is written every ``checkpoint.every_steps`` steps, at every epoch end, when a
SIGINT or SIGTERM arrives, and when ``train.max_bad_steps`` non-finite steps in a row stop the
run; ``best.pt`` when the validation score improves. What a checkpoint holds is decided in one
place, ``training.resume.checkpoint_content``.

A non-finite validation score never improves on the best one. While no epoch has had a finite
score there are no best-validation weights for the final test, so such an epoch stops the run
(after its ``last.pt``) instead of training on to a test that cannot run; once a finite score
exists, a non-finite one is only warned about (the test uses ``best.pt``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ugr_experiments.training.checkpoint import (
    BEST,
    LAST,
    PREVIOUS,
    checkpoint_dir,
    save_checkpoint,
)
from ugr_experiments.training.collectives import any_rank
from ugr_experiments.training.parts import RunParts
from ugr_experiments.training.resume import checkpoint_content
from ugr_experiments.training.signals import RunInterrupted, StopRequest
from ugr_experiments.training.state import TrainState

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row, or no finite validation score; the message says
    what to try."""


def save_last(parts: RunParts, state: TrainState) -> Path:
    """Write ``last.pt`` atomically, keeping the one it replaces as ``previous.pt``.

    Under DDP only rank 0 writes (the ranks hold identical weights); all return the path.
    """
    folder = checkpoint_dir(parts.run_dir)
    if parts.runtime.is_main:
        save_checkpoint(checkpoint_content(parts, state), folder / LAST, previous=folder / PREVIOUS)
    return folder / LAST


def after_step(parts: RunParts, state: TrainState, stop: StopRequest, finite: bool) -> None:
    """Bookkeeping after every optimiser step (``state`` already counts the step itself).

    Counts non-finite (skipped) steps and stops the run after ``train.max_bad_steps`` in a
    row; writes ``last.pt`` every ``checkpoint.every_steps`` steps (not after an epoch's last
    batch: the epoch-end checkpoint follows); saves and exits when a signal has arrived.

    Raises:
        TrainingDiverged: too many non-finite steps in a row (after saving the last good
            weights: a skipped step changes nothing).
        RunInterrupted: a SIGINT or SIGTERM arrived (after saving).
    """
    settings = parts.settings
    state.count_step(finite)
    if not bool(finite) and state.bad_in_row >= settings.max_bad_steps:
        raise TrainingDiverged(_diverged_message(parts, state, save_last(parts, state)))
    if stop_requested(parts, stop):
        _interrupt(parts, state, stop, save_last(parts, state))
    every = settings.checkpoint_every
    if every and state.step % every == 0 and state.batch < settings.steps_per_epoch:
        save_last(parts, state)


def end_epoch(parts: RunParts, state: TrainState, stop: StopRequest, valid: float) -> None:
    """After the epoch's validation: update the best score, write best.pt and last.pt.

    Exits (after saving) if a signal arrived during validation.

    Args:
        parts: the run.
        state: where it is; moved on to the next epoch here.
        stop: the stop signal, if one arrived.
        valid: this epoch's mean validation SI-SDRi.
    """
    improved = valid > state.best  # False for nan
    if improved:
        state.best, state.best_epoch = valid, state.epoch + 1
    elif not math.isfinite(valid):
        log.warning("validation SI-SDRi of epoch %d is %s", state.epoch + 1, valid)
    state.next_epoch()
    if improved and parts.runtime.is_main:
        save_checkpoint(checkpoint_content(parts, state), checkpoint_dir(parts.run_dir) / BEST)
    path = save_last(parts, state)
    if not math.isfinite(valid) and state.best_epoch < 1:
        raise TrainingDiverged(_never_finite_message(parts, state, valid, path))
    if stop_requested(parts, stop):
        _interrupt(parts, state, stop, path)


def stop_requested(parts: RunParts, stop: StopRequest) -> bool:
    """Whether a stop signal arrived, on any rank: under DDP a SIGTERM can reach the ranks
    at different steps, and all must stop at the same one (else the others hang in a
    collective). One all-reduce under DDP; no sync in a single process."""
    return any_rank(stop.requested, parts.runtime)


def _diverged_message(parts: RunParts, state: TrainState, path: Path) -> str:
    settings = parts.settings
    first = state.step - state.bad_in_row + 1
    return (
        f"{state.bad_in_row} non-finite losses or gradients in a row (steps {first}-"
        f"{state.step}, train.max_bad_steps={settings.max_bad_steps}): training "
        f"stopped. No skipped step changed the weights; those after step {first - 1} are "
        f"saved in {path}. To fix: {_fixes(parts)}; then start a new run, or continue this one "
        "with `resume=true train.max_bad_steps=<more>`"
    )


def _fixes(parts: RunParts) -> str:
    settings = parts.settings
    return (
        f"lower optim.lr (now {settings.lr}), keep optim.grad_clip set (now "
        f"{settings.grad_clip}), lower alpha (now {settings.alpha}), or check the data for "
        "silent or broken audio"
    )


def _never_finite_message(parts: RunParts, state: TrainState, valid: float, path: Path) -> str:
    return (
        f"validation SI-SDRi of epoch {state.epoch} is {valid} and no epoch so far had a finite "
        "one: there are no best-validation weights to test, so training stopped (the weights "
        f"after epoch {state.epoch} are saved in {path}). To fix: {_fixes(parts)}; then start "
        "a new run in another hydra.run.dir"
    )


def _interrupt(parts: RunParts, state: TrainState, stop: StopRequest, path: Path) -> None:
    message = (
        f"{stop.describe()}: stopped at epoch {state.epoch + 1}, batch {state.batch} (step "
        f"{state.step}) and saved {path}. Continue with the same command plus `resume=true "
        f"hydra.run.dir={parts.run_dir}`"
    )
    log.warning(message)
    raise RunInterrupted(message)
