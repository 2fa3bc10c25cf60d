"""One training run: build, train with gradient reweighting, validate, checkpoint, test.

The loop follows DESIGN.md: the per-source losses ``(B, S)`` are never averaged by the model or
the loss; the only reduction of the batch is ``sum(p * L)`` with ``p`` the detached pmf of the
weighting function (PAPER.md 1).

A run is two objects: ``RunParts`` (what it is made of, built once from the config by
``training.parts.build_parts``) and ``TrainState`` (where it is, ``training.state``). The
functions below take the parts they use; checkpoints, signals and divergence are handled after
each step and epoch by ``training.bookkeeping``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from ugr_experiments.analysis.tables import summarize, to_markdown, write_table
from ugr_experiments.config import check_paths, to_plain
from ugr_experiments.data.checks import check_data
from ugr_experiments.data.manifest import record_manifests
from ugr_experiments.inference.evaluate import audio_due, evaluate_rows, first_items, log_audio
from ugr_experiments.losses import neg_sisdri
from ugr_experiments.training import bookkeeping, collectives, distributed, resume
from ugr_experiments.training.checkpoint import BEST, checkpoint_dir, load_checkpoint
from ugr_experiments.training.collectives import Writer
from ugr_experiments.training.hparams import final_metrics, log_hparams, overall, run_hparams
from ugr_experiments.training.parts import RunParts, build_parts
from ugr_experiments.training.runinfo import run_info, write_json
from ugr_experiments.training.signals import StopRequest, stop_on_signals
from ugr_experiments.training.state import TrainState
from ugr_experiments.weighting import (
    Progress,
    Weighting,
    batch_pmf,
    pmf_health,
    to_units,
    weighted_loss,
)

log = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What one optimiser step reports (tensors stay on the device until a logging step)."""

    loss: torch.Tensor  # weighted loss, scalar
    sisdri: torch.Tensor  # mean training SI-SDRi of the batch, scalar
    p: torch.Tensor  # the pmf, (N,)
    groups: torch.Tensor  # group of each weighted item, (N,)
    finite: torch.Tensor  # () bool, True when the step was taken (all ranks agree)


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    weighting: Weighting,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    grad_clip: float | None,
    device: torch.device,
    rt: distributed.Runtime | None = None,
) -> StepOutput:
    """Forward, per-source loss, reweighting, backward, (clip), Adam step.

    Under DDP (``rt``) ``batch`` is this rank's slice of the global batch and ``model`` the
    DDP module; the returned figures are the global batch's. No host-device sync on CUDA.
    """
    rt = rt or distributed.Runtime(device=device)
    mix = batch["mixture"].to(device, non_blocking=True)  # (B, T)
    ref = batch["sources"].to(device, non_blocking=True)  # (B, S, T)
    with distributed.autocast(rt):  # bf16 on CUDA with train.precision=bf16
        est = model(mix)  # (B, S, T)
    loss = neg_sisdri(est.float(), ref, mix)  # (B, S): -SI-SDRi per source, PIT-aligned
    units, classes, groups = to_units(
        loss, batch["class_idx"].to(device), batch["group_idx"].to(device), weighting.unit
    )  # (N,) items: B*S sources or B mixtures
    # softmax(F) over the global batch (all ranks' items), detached; a stateful F updates once
    p = batch_pmf(weighting, units.detach(), classes, groups, progress, rt.all_gather, rt.rank)
    total = weighted_loss(units, p, rt.world_size)  # x world size: DDP averages gradients
    optimizer.zero_grad(set_to_none=True)
    total.backward()  # even when non-finite: every DDP rank must join the gradient all-reduce
    norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), grad_clip if grad_clip else float("inf")
    )
    finite = collectives.step_if_finite(optimizer, total, norm, rt)  # all ranks skip together
    figures = collectives.global_mean(torch.stack([total.detach(), -loss.detach().mean()]), rt)
    return StepOutput(figures[0], figures[1], p, groups.reshape(-1), finite)


def train_epoch(
    parts: RunParts, state: TrainState, stop: StopRequest, writer: Writer
) -> dict[str, float]:
    """The rest of epoch ``state.epoch`` (all of it, or from a resumed mid-epoch batch).

    Advances ``state`` step by step and returns the epoch's mean training figures.
    """
    settings = parts.settings
    parts.train_set.set_epoch(state.epoch)
    # Resuming mid-epoch starts at the first batch not yet trained on: items depend only on
    # (seed, epoch, index), so nothing is drawn and thrown away.
    parts.train_sampler.start = state.batch * settings.batch_size
    parts.train_model.train()
    bar = tqdm(
        parts.train_loader,
        desc=f"epoch {state.epoch + 1}/{settings.epochs}",
        disable=not (settings.progress and parts.runtime.is_main),
        leave=False,
    )  # yields this rank's batches: mixture (B/W, T), sources (B/W, S, T)
    defer = defer_host_sync(parts.device)
    pending: list[tuple[StepOutput, int, int]] = []  # steps whose figures are still on device
    for batch in bar:
        progress = Progress(state.step, state.epoch)
        out = train_step(
            parts.train_model,
            batch,
            parts.weighting,
            parts.optimizer,
            progress,
            settings.grad_clip,
            parts.device,
            parts.runtime,
        )
        state.step += 1
        state.batch += 1
        pending.append((out, state.step, state.batch))
        if not defer or sync_due(parts, state):
            flush_steps(parts, state, stop, pending, writer, bar)
    flush_steps(parts, state, stop, pending, writer, bar)
    return {
        "train_loss": float(np.mean(state.losses)) if state.losses else math.nan,
        "train_sisdri": float(np.mean(state.sisdris)) if state.sisdris else math.nan,
        "skipped_steps": state.skipped,
    }


def defer_host_sync(device: torch.device) -> bool:
    """On CUDA the step's figures stay on the device until a logging or checkpoint step, so
    the GPU never waits for the host; on the CPU reading them is free, so every step syncs."""
    return device.type == "cuda"


def sync_due(parts: RunParts, state: TrainState) -> bool:
    """Steps at which deferred figures are read: logging, pmf health, checkpoint, epoch end.

    The same on every rank (they depend only on the step), so DDP collectives stay matched.
    """
    settings, health = parts.settings, parts.weighting.health_every
    every = settings.checkpoint_every
    return (
        state.step % settings.log_every == 0
        or bool(health and state.step % health == 0)
        or bool(every and state.step % every == 0)
        or state.batch >= settings.steps_per_epoch
    )


def flush_steps(
    parts: RunParts,
    state: TrainState,
    stop: StopRequest,
    pending: list[tuple[StepOutput, int, int]],
    writer: Writer,
    bar: tqdm,
) -> None:
    """The per-step bookkeeping of the ``pending`` steps, in order (one host sync for all).

    Only the newest step runs :func:`bookkeeping.after_step` (checkpoints, signals, the limit
    of non-finite steps): a checkpoint must hold the newest weights with the newest step.
    """
    for i, (out, step, batch) in enumerate(pending):
        state.step, state.batch = step, batch
        finite = bool(out.finite)
        if finite:
            state.losses.append(float(out.loss))
            state.sisdris.append(float(out.sisdri))
            log_step(parts, state, out, writer, bar)
        else:
            log.warning("non-finite loss or gradient at step %d: step skipped", step)
        if i == len(pending) - 1:
            bookkeeping.after_step(parts, state, stop, finite)  # checkpoints, signals
        else:
            state.count_step(finite)
    pending.clear()


def log_step(
    parts: RunParts, state: TrainState, out: StepOutput, writer: Writer, bar: tqdm
) -> None:
    """TensorBoard scalars every ``train.log_every`` steps, pmf health every ``health_every``."""
    step, losses, sisdris = state.step, state.losses, state.sisdris
    if step % parts.settings.log_every == 0:
        writer.add_scalar("train/loss", losses[-1], step)
        writer.add_scalar("train/sisdri", sisdris[-1], step)
        writer.add_scalar("train/lr", parts.optimizer.param_groups[0]["lr"], step)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2f}", sisdri=f"{np.mean(sisdris[-20:]):.2f}")
    health = parts.weighting.health_every
    if health and step % health == 0:
        p, groups = collectives.global_pmf(out.p, out.groups, parts.runtime)  # all ranks' items
        for key, value in pmf_health(p, groups, parts.group_names).items():
            writer.add_scalar(f"pmf/{key}", value, step)
        for key, value in parts.weighting.diagnostics().items():  # e.g. group DRO's q/<group>
            writer.add_scalar(f"weighting/{key}", value, step)


class RunStart(NamedTuple):
    """What :func:`start_run` established before any work."""

    cfg: dict[str, Any]  # plain and validated
    runtime: distributed.Runtime
    run_dir: Path  # rank 0's under DDP
    data: dict[str, dict[str, str]]  # manifests read and their digests
    checkpoint: dict[str, Any] | None  # to continue from; None: a new run


def start_run(cfg: Any, run_dir: Path) -> RunStart:
    """Every check that can refuse a run, before anything is written: config values, paths,
    every audio file the run reads, and (``resume=true``) the checkpoint and its config and data.
    """
    cfg = to_plain(cfg)
    check_paths(cfg)
    cfg["dataset"] = record_manifests(cfg["dataset"])  # absolute paths + digests (ugr-evaluate)
    data = check_data(cfg["dataset"])  # every file of the splits used; manifest digests
    rt = distributed.setup(cfg["device"], cfg["train"].get("precision", "fp32"))
    run_dir = collectives.shared_path(run_dir, rt)  # every rank writes into rank 0's
    # resume=true: the newest usable checkpoint (config or data differences that change the
    # result are refused); None: a new run. See ugr_experiments/training/resume.py.
    checkpoint = resume.resume_checkpoint(cfg, run_dir, data, rt.device.type == "cpu")
    return RunStart(cfg, rt, run_dir, data, checkpoint)


def run(
    cfg: Any, run_dir: str | Path, on_accept: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Train, validate each epoch, test, and write the run directory's files (DESIGN.md 6).

    Args:
        cfg: the composed Hydra config (or an equivalent plain dict).
        run_dir: where every output goes; created if missing.
        on_accept: called once every check has passed, before the run directory is first
            written (the entry point records Hydra's files then: a refused command leaves an
            existing run as it was).

    Returns:
        The contents of ``run.json``.
    """
    start = time.time()
    with stop_on_signals(Path(run_dir)) as stop:  # SIGINT / SIGTERM in every phase
        cfg, rt, run_dir, data, checkpoint = start_run(cfg, Path(run_dir))
        if (done := resume.finished_run(checkpoint, run_dir, cfg["train"]["epochs"])) is not None:
            return done
        if on_accept is not None:
            on_accept()
        run_dir.mkdir(parents=True, exist_ok=True)
        if rt.is_main:  # under DDP, rank 0 writes the run directory's files
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        parts = build_parts(cfg, run_dir, rt, data)
        state = resume.restore(parts, checkpoint)  # where training is: epoch, batch, step, ...
        start -= state.elapsed
        n_params = sum(p.numel() for p in parts.model.parameters())
        log.info("model: %s parameters on %s", f"{n_params:,}", parts.device)
        # Events after the checkpoint's step (written before a crash) are hidden: no duplicates.
        writer = collectives.make_writer(run_dir / "tb", rt, purge_step=state.step + 1)
        rows = train_and_test(parts, state, writer, start, stop)
        return report(cfg, parts, state, writer, rows, start)


def report(
    cfg: dict[str, Any],
    parts: RunParts,
    state: TrainState,
    writer: Writer,
    rows: pd.DataFrame,
    start: float,
) -> dict[str, Any]:
    """The table of the test rows, TensorBoard's HParams, and (rank 0) the run's files."""
    rt = parts.runtime
    extra = {"best_epoch": state.best_epoch, "best_valid_sisdri": state.best, "steps": state.step}
    extra["world_size"] = rt.world_size  # processes (DDP ranks) that trained
    table = summarize(rows)
    if rt.is_main:  # one HParams session per run: a sweep opens as one table in TensorBoard
        log_hparams(writer, run_hparams(cfg, state.step), final_metrics(table), state.step)
    writer.close()
    if not rt.is_main:  # every rank holds all the rows; rank 0 writes them
        return {**extra, "test_sisdri_mean": overall(table, ["mean"])["mean"]}
    return finish(cfg, parts.run_dir, rows, table, start, extra)


def train_and_test(
    parts: RunParts, state: TrainState, writer: Writer, start: float, stop: StopRequest
) -> pd.DataFrame:
    """Every epoch left, then the test rows: the best-validation weights' (default), or each
    of the last ``eval.last_epochs`` epochs' (read back from disk for epochs before a resume).
    """
    settings = parts.settings
    test_rows = resume.load_test_rows(
        parts.run_dir, state.epoch, settings.epochs, settings.last_epochs
    )
    with stop.training():  # SIGINT / SIGTERM: finish the step, save a checkpoint, exit cleanly
        for epoch in range(state.epoch, settings.epochs):
            stats = train_epoch(parts, state, stop, writer)
            parts.scheduler.step()
            valid = validate(parts, state, writer, epoch)
            record_epoch(parts, state, {**stats, "valid_sisdri": valid}, start)
            if settings.last_epochs and epoch >= settings.epochs - settings.last_epochs:
                test_rows.append(evaluate(parts, parts.test_loader, epoch + 1))
                resume.save_test_rows(test_rows[-1], parts.run_dir, parts.runtime)  # before .pt
            bookkeeping.end_epoch(parts, state, stop, valid)  # best.pt if improved, last.pt
    if not settings.last_epochs:
        collectives.barrier(parts.runtime)  # best.pt is complete on disk before any rank reads
        best = load_checkpoint(checkpoint_dir(parts.run_dir) / BEST, parts.device)
        parts.model.load_state_dict(best["model"])
        progress = settings.progress
        test_rows = [evaluate(parts, parts.test_loader, state.best_epoch, progress, "test")]
    return pd.concat(test_rows, ignore_index=True)


def validate(parts: RunParts, state: TrainState, writer: Writer, epoch: int) -> float:
    """The epoch's mean validation SI-SDRi (logged), and a few clips to listen to when due."""
    valid = float(evaluate(parts, parts.valid_loader, epoch)["sisdri"].mean())
    writer.add_scalar("valid/sisdri", valid, state.step)
    if audio_due(parts.settings.audio_every, epoch):  # listen while training
        batch, rate = first_items(parts.valid_loader), parts.settings.sample_rate
        log_audio(writer, parts.model, batch, state.step, rate)
    return valid


def record_epoch(
    parts: RunParts, state: TrainState, figures: dict[str, float], start: float
) -> None:
    """Append the epoch's row to ``state.history`` and ``history.csv``, and log it."""
    epochs = parts.settings.epochs
    state.history.append(
        {
            "epoch": state.epoch + 1,
            "step": state.step,
            **figures,
            "lr": parts.optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - start, 2),
        }
    )
    if parts.runtime.is_main:
        pd.DataFrame(state.history).to_csv(parts.run_dir / "history.csv", index=False)
    log.info(
        "epoch %d/%d step %d: train loss %.3f, valid SI-SDRi %.2f dB",
        state.epoch + 1,
        epochs,
        state.step,
        figures["train_loss"],
        figures["valid_sisdri"],
    )


def evaluate(
    parts: RunParts, loader: DataLoader, epoch: int, progress: bool = False, desc: str = "eval"
) -> pd.DataFrame:
    """The model's per-source rows of ``loader``'s split: under DDP each rank scores its shard
    and every rank receives all the rows, in item order (``collectives.gather_rows``)."""
    progress = progress and parts.runtime.is_main
    rows = evaluate_rows(parts.model, loader, parts.device, epoch, progress=progress, desc=desc)
    return collectives.gather_rows(rows, parts.runtime)


def finish(
    cfg: dict[str, Any],
    run_dir: Path,
    rows: pd.DataFrame,
    table: pd.DataFrame,
    start: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write the per-source rows, the SI-SDRi table and run.json; print the table."""
    rows.to_csv(run_dir / "per_source_sisdri.csv", index=False)
    write_table(table, run_dir)
    print(to_markdown(table, title="Test SI-SDRi (dB)"))
    info = run_info(cfg, start)
    info.update(extra)
    info["test_sisdri_mean"] = overall(table, ["mean"])["mean"]
    write_json(info, run_dir / "run.json")
    log.info("run directory: %s", run_dir)
    return info
