"""One training run: build, train with gradient reweighting, validate, checkpoint, test.

The loop follows DESIGN.md: the per-source losses ``(B, S)`` are never averaged by the model or
the loss; the only reduction of the batch is ``sum(p * L)`` with ``p`` the detached pmf of the
weighting function (PAPER.md 1).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ugr_experiments.analysis.tables import summarize, to_markdown, write_table
from ugr_experiments.config import check_paths, to_plain
from ugr_experiments.data import build_datasets, collate_mixtures
from ugr_experiments.inference.evaluate import audio_due, evaluate_rows, first_items, log_audio
from ugr_experiments.losses import neg_sisdri
from ugr_experiments.models import build_model
from ugr_experiments.training import distributed, resume
from ugr_experiments.training.checkpoint import load_checkpoint
from ugr_experiments.training.runinfo import run_info, write_json
from ugr_experiments.weighting import (
    Progress,
    Weighting,
    build_weighting,
    pmf,
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    scores = weighting.scores(units.detach(), classes, groups, progress)
    p = pmf(scores, rt.all_gather, rt.rank)  # detached softmax over the global batch
    total = weighted_loss(units, p, rt.world_size)  # x world size: DDP averages gradients
    optimizer.zero_grad(set_to_none=True)
    total.backward()  # even when non-finite: every DDP rank must join the gradient all-reduce
    norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), grad_clip if grad_clip else float("inf")
    )
    finite = distributed.step_if_finite(optimizer, total, norm, rt)  # all ranks skip together
    figures = distributed.global_mean(torch.stack([total.detach(), -loss.detach().mean()]), rt)
    return StepOutput(figures[0], figures[1], p, groups.reshape(-1), finite)


def make_loader(
    dataset: Any, batch_size: int, workers: int, drop_last: bool, sampler: Any = None
) -> DataLoader:
    # No shuffling: every item is already a random draw keyed by (seed, epoch, index).
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_mixtures,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=resume.ignore_stop_signals,  # a signal is the main process's to handle
        # Its own generator: each new iterator would otherwise draw from torch's global RNG,
        # and a resumed run (one more iterator) would not continue that RNG exactly.
        generator=torch.Generator(),
    )


def train_epoch(ctx: dict[str, Any], writer: SummaryWriter) -> dict[str, float]:
    """The rest of epoch ``state.epoch`` (all of it, or from a resumed mid-epoch batch).

    Advances ``ctx["state"]`` step by step and returns the epoch's mean training figures.
    """
    model, weighting, optimizer = ctx["train_model"], ctx["weighting"], ctx["optimizer"]
    cfg, state = ctx["cfg"], ctx["state"]
    ctx["data"]["train"].set_epoch(state.epoch)
    # Resuming mid-epoch starts at the first batch not yet trained on: items depend only on
    # (seed, epoch, index), so nothing is drawn and thrown away.
    ctx["train_sampler"].start = state.batch * cfg["train"]["batch_size"]
    model.train()
    bar = tqdm(
        ctx["train_loader"],
        desc=f"epoch {state.epoch + 1}/{cfg['train']['epochs']}",
        disable=not (cfg["train"]["progress"] and ctx["rt"].is_main),
        leave=False,
    )
    defer = defer_host_sync(ctx["device"])
    pending: list[tuple[StepOutput, int, int]] = []  # steps whose figures are still on device
    for batch in bar:
        out = train_step(
            model,
            batch,
            weighting,
            optimizer,
            Progress(state.step, state.epoch),
            cfg["optim"]["grad_clip"],
            ctx["device"],
            ctx["rt"],
        )
        state.step += 1
        state.batch += 1
        pending.append((out, state.step, state.batch))
        if not defer or sync_due(ctx):
            flush_steps(ctx, pending, writer, bar)
    flush_steps(ctx, pending, writer, bar)
    losses, sisdris = state.losses, state.sisdris
    return {
        "train_loss": float(np.mean(losses)) if losses else math.nan,
        "train_sisdri": float(np.mean(sisdris)) if sisdris else math.nan,
        "skipped_steps": state.skipped,
    }


def defer_host_sync(device: torch.device) -> bool:
    """On CUDA the step's figures stay on the device until a logging or checkpoint step, so
    the GPU never waits for the host; on the CPU reading them is free, so every step syncs."""
    return device.type == "cuda"


def sync_due(ctx: dict[str, Any]) -> bool:
    """Steps at which deferred figures are read: logging, pmf health, checkpoint, epoch end.

    The same on every rank (they depend only on the step), so DDP collectives stay matched.
    """
    state, cfg, health = ctx["state"], ctx["cfg"], ctx["weighting"].health_every
    every = cfg["checkpoint"]["every_steps"]
    return (
        state.step % cfg["train"]["log_every"] == 0
        or bool(health and state.step % health == 0)
        or bool(every and state.step % every == 0)
        or state.batch >= resume.steps_per_epoch(ctx)
    )


def flush_steps(
    ctx: dict[str, Any],
    pending: list[tuple[StepOutput, int, int]],
    writer: SummaryWriter,
    bar: tqdm,
) -> None:
    """The per-step bookkeeping of the ``pending`` steps, in order (one host sync for all).

    Only the newest step runs :func:`resume.after_step` (checkpoints, signals, the limit of
    non-finite steps): a checkpoint must hold the newest weights with the newest step.
    """
    state = ctx["state"]
    for i, (out, step, batch) in enumerate(pending):
        state.step, state.batch = step, batch
        finite = bool(out.finite)
        if finite:
            state.losses.append(float(out.loss))
            state.sisdris.append(float(out.sisdri))
            log_step(ctx, out, writer, bar)
        else:
            log.warning("non-finite loss or gradient at step %d: step skipped", step)
        if i == len(pending) - 1:
            resume.after_step(ctx, finite)  # counts skipped steps, checkpoints, obeys signals
        else:
            resume.count_step(ctx, finite)
    pending.clear()


def log_step(ctx: dict[str, Any], out: StepOutput, writer: SummaryWriter, bar: tqdm) -> None:
    """TensorBoard scalars every ``train.log_every`` steps, pmf health every ``health_every``."""
    state, optimizer, weighting = ctx["state"], ctx["optimizer"], ctx["weighting"]
    step, losses, sisdris = state.step, state.losses, state.sisdris
    if step % ctx["cfg"]["train"]["log_every"] == 0:
        writer.add_scalar("train/loss", losses[-1], step)
        writer.add_scalar("train/sisdri", sisdris[-1], step)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2f}", sisdri=f"{np.mean(sisdris[-20:]):.2f}")
    if weighting.health_every and step % weighting.health_every == 0:
        p, groups = distributed.global_pmf(out.p, out.groups, ctx["rt"])  # all ranks' items
        for key, value in pmf_health(p, groups, ctx["group_names"]).items():
            writer.add_scalar(f"pmf/{key}", value, step)


def build(
    cfg: dict[str, Any], run_dir: Path, rt: distributed.Runtime | None = None
) -> dict[str, Any]:
    """Everything a run needs, from plain config values (``rt``: the run's, if it has one)."""
    seed_everything(cfg["seed"])
    tr = cfg["train"]
    if tr.get("threads"):  # e.g. 1 per job when several jobs share the cores (joblib sweeps)
        torch.set_num_threads(tr["threads"])
    # torchrun / SLURM ranks
    rt = rt or distributed.setup(cfg["device"], tr.get("precision", "fp32"))
    device, local_batch = rt.device, distributed.per_rank_batch(tr["batch_size"], rt.world_size)
    steps = tr["steps_per_epoch"] or max(1, cfg["dataset"]["n_train"] // tr["batch_size"])
    data = build_datasets(cfg["dataset"], cfg["seed"], steps * tr["batch_size"])
    class_names, group_names = data["train"].class_names, data["train"].group_names
    # Weighting is built before the model: a gamma for a class the data lacks fails fast.
    weighting = build_weighting(cfg["weighting"], class_names, group_names)
    model_cfg = dict(cfg["model"])
    model = build_model(model_cfg.pop("name"), **model_cfg).to(device)
    opt = cfg["optim"]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"], fused=rt.fused
    )
    decay_every = opt.get("lr_decay_every") or 0
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=decay_every or 10**9, gamma=1.0 / opt.get("lr_decay_factor", 1.0)
    )
    ev = cfg["eval"]["batch_size"]
    sampler = resume.ResumableSampler(len(data["train"]), rt.rank, rt.world_size)
    train_model = distributed.wrap_model(model, rt, tr.get("compile", False))  # DDP, compile
    distributed.seed_rank(cfg["seed"], rt)  # after the shared init: a random stream per rank
    return {
        "cfg": cfg,
        "run_dir": run_dir,
        "device": device,
        "rt": rt,
        "data": data,
        "model": model,  # the plain module: evaluation and checkpoints
        "train_model": train_model,
        "weighting": weighting,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "group_names": group_names,
        "train_sampler": sampler,
        "train_loader": make_loader(data["train"], local_batch, tr["num_workers"], True, sampler),
        "valid_loader": make_loader(
            data["valid"], ev, tr["num_workers"], False, distributed.shard(data["valid"], rt)
        ),
        "test_loader": make_loader(
            data["test"], ev, tr["num_workers"], False, distributed.shard(data["test"], rt)
        ),
    }


def run(cfg: Any, run_dir: str | Path) -> dict[str, Any]:
    """Train, validate each epoch, test, and write the run directory's files (DESIGN.md 6).

    Args:
        cfg: the composed Hydra config (or an equivalent plain dict).
        run_dir: where every output goes; created if missing.

    Returns:
        The contents of ``run.json``.
    """
    start = time.time()
    cfg = to_plain(cfg)
    check_paths(cfg)
    rt = distributed.setup(cfg["device"], cfg["train"].get("precision", "fp32"))
    run_dir = distributed.shared_path(Path(run_dir), rt)  # every rank writes into rank 0's
    # resume=true: the newest usable checkpoint (config differences that change the result
    # are refused); None: a new run. See ugr_experiments/resume.py.
    checkpoint = resume.resume_checkpoint(cfg, run_dir)
    if (done := resume.finished_run(cfg, checkpoint, run_dir)) is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    if rt.is_main:  # under DDP, rank 0 writes the run directory's files
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ctx = build(cfg, run_dir, rt)
    state = resume.restore(ctx, checkpoint)  # where training is: epoch, batch, step, best, ...
    start -= state.elapsed
    model, epochs = ctx["model"], cfg["train"]["epochs"]
    last_epochs = cfg["eval"]["last_epochs"]
    log.info(
        "model: %s parameters on %s",
        f"{sum(p.numel() for p in model.parameters()):,}",
        ctx["device"],
    )
    # Events after the checkpoint's step (written before a crash) are hidden: no duplicates.
    writer = distributed.make_writer(run_dir / "tb", rt, purge_step=state.step + 1)
    test_rows = resume.load_test_rows(cfg, run_dir, state.epoch)  # eval.last_epochs so far
    with resume.stop_on_signals(ctx):  # SIGINT / SIGTERM: save a checkpoint and exit cleanly
        for epoch in range(state.epoch, epochs):
            stats = train_epoch(ctx, writer)
            ctx["scheduler"].step()
            valid = float(evaluate(ctx, "valid", epoch)["sisdri"].mean())
            writer.add_scalar("valid/sisdri", valid, state.step)
            if audio_due(cfg["train"].get("audio_every"), epoch):  # listen while training
                batch, rate = first_items(ctx["valid_loader"]), cfg["dataset"]["sample_rate"]
                log_audio(writer, model, batch, state.step, rate)
            state.history.append(
                {
                    "epoch": epoch + 1,
                    "step": state.step,
                    **stats,
                    "valid_sisdri": valid,
                    "lr": ctx["optimizer"].param_groups[0]["lr"],
                    "seconds": round(time.time() - start, 2),
                }
            )
            if rt.is_main:
                pd.DataFrame(state.history).to_csv(run_dir / "history.csv", index=False)
            log.info(
                "epoch %d/%d step %d: train loss %.3f, valid SI-SDRi %.2f dB",
                epoch + 1,
                epochs,
                state.step,
                stats["train_loss"],
                valid,
            )
            if last_epochs and epoch >= epochs - last_epochs:
                test_rows.append(evaluate(ctx, "test", epoch + 1))
                resume.save_test_rows(ctx, test_rows[-1])  # before the epoch's checkpoint
            resume.end_epoch(ctx, valid)  # best.pt when improved, last.pt (both atomic)
    if not last_epochs:
        distributed.barrier(rt)  # best.pt is complete on disk before any rank reads it
        best_state = load_checkpoint(run_dir / "checkpoints" / "best.pt", ctx["device"])
        model.load_state_dict(best_state["model"])
        test_rows = [
            evaluate(ctx, "test", state.best_epoch, progress=cfg["train"]["progress"], desc="test")
        ]
    writer.close()
    rows = pd.concat(test_rows, ignore_index=True)
    extra = {"best_epoch": state.best_epoch, "best_valid_sisdri": state.best, "steps": state.step}
    extra["world_size"] = rt.world_size  # processes (DDP ranks) that trained
    if not rt.is_main:  # every rank holds all the rows; rank 0 writes them
        return {**extra, "test_sisdri_mean": float(summarize(rows).loc["all", "mean"])}
    return finish(cfg, run_dir, rows, start, extra)


def evaluate(ctx: dict[str, Any], split: str, epoch: int, **kwargs: Any) -> pd.DataFrame:
    """The model's per-source rows on ``split``: under DDP each rank scores its shard and
    every rank receives all the rows, in item order (``distributed.gather_rows``)."""
    kwargs["progress"] = kwargs.get("progress", False) and ctx["rt"].is_main
    loader = ctx[f"{split}_loader"]
    rows = evaluate_rows(ctx["model"], loader, ctx["device"], epoch, **kwargs)
    return distributed.gather_rows(rows, ctx["rt"])


def finish(
    cfg: dict[str, Any], run_dir: Path, rows: pd.DataFrame, start: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write the per-source rows, the SI-SDRi table and run.json; print the table."""
    rows.to_csv(run_dir / "per_source_sisdri.csv", index=False)
    table = summarize(rows)
    write_table(table, run_dir)
    print(to_markdown(table, title="Test SI-SDRi (dB)"))
    info = run_info(cfg, start)
    info.update(extra)
    info["test_sisdri_mean"] = float(table.loc["all", "mean"])
    write_json(info, run_dir / "run.json")
    log.info("run directory: %s", run_dir)
    return info
