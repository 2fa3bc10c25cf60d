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

from ugr_experiments.checkpoint import load_checkpoint, save_checkpoint
from ugr_experiments.config import to_plain
from ugr_experiments.data import build_datasets, collate_mixtures
from ugr_experiments.evaluate import evaluate_rows
from ugr_experiments.losses import neg_sisdri
from ugr_experiments.models import build_model
from ugr_experiments.runinfo import run_info, write_json
from ugr_experiments.tables import summarize, to_markdown, write_table
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
    finite: bool


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but CUDA is not available; use device=cpu or device=auto")
    return torch.device(name)


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    weighting: Weighting,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    grad_clip: float | None,
    device: torch.device,
) -> StepOutput:
    """Forward, per-source loss, reweighting, backward, (clip), Adam step."""
    mix = batch["mixture"].to(device)  # (B, T)
    ref = batch["sources"].to(device)  # (B, S, T)
    est = model(mix)  # (B, S, T)
    loss = neg_sisdri(est, ref, mix)  # (B, S): -SI-SDRi per source, PIT-aligned
    units, classes, groups = to_units(
        loss, batch["class_idx"].to(device), batch["group_idx"].to(device), weighting.unit
    )  # (N,) items: B*S sources or B mixtures
    p = pmf(weighting.scores(units.detach(), classes, groups, progress))  # detached softmax
    total = weighted_loss(units, p)
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(total))
    if finite:
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), grad_clip if grad_clip else float("inf")
        )
        finite = bool(torch.isfinite(norm))  # a non-finite gradient skips the step too
        if finite:
            optimizer.step()
    return StepOutput(total.detach(), -loss.detach().mean(), p, groups.reshape(-1), finite)


def make_loader(dataset: Any, batch_size: int, workers: int, drop_last: bool) -> DataLoader:
    # No shuffling: every item is already a random draw keyed by (seed, epoch, index).
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_mixtures,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
    )


def train_epoch(
    ctx: dict[str, Any], epoch: int, step: int, writer: SummaryWriter
) -> tuple[int, dict[str, float]]:
    """One epoch of steps; returns the new global step and the epoch's mean training figures."""
    model, weighting, optimizer = ctx["model"], ctx["weighting"], ctx["optimizer"]
    cfg, group_names = ctx["cfg"], ctx["group_names"]
    ctx["data"]["train"].set_epoch(epoch)
    model.train()
    losses, sisdris, skipped = [], [], 0
    bar = tqdm(
        ctx["train_loader"],
        desc=f"epoch {epoch + 1}/{cfg['train']['epochs']}",
        disable=not cfg["train"]["progress"],
        leave=False,
    )
    for batch in bar:
        out = train_step(
            model,
            batch,
            weighting,
            optimizer,
            Progress(step, epoch),
            cfg["optim"]["grad_clip"],
            ctx["device"],
        )
        step += 1
        if not out.finite:
            skipped += 1
            log.warning("non-finite loss or gradient at step %d: step skipped", step)
            continue
        losses.append(float(out.loss))
        sisdris.append(float(out.sisdri))
        if step % cfg["train"]["log_every"] == 0:
            writer.add_scalar("train/loss", losses[-1], step)
            writer.add_scalar("train/sisdri", sisdris[-1], step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            bar.set_postfix(
                loss=f"{np.mean(losses[-20:]):.2f}", sisdri=f"{np.mean(sisdris[-20:]):.2f}"
            )
        if weighting.health_every and step % weighting.health_every == 0:
            for key, value in pmf_health(out.p, out.groups, group_names).items():
                writer.add_scalar(f"pmf/{key}", value, step)
    stats = {
        "train_loss": float(np.mean(losses)) if losses else math.nan,
        "train_sisdri": float(np.mean(sisdris)) if sisdris else math.nan,
        "skipped_steps": skipped,
    }
    return step, stats


def build(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Everything a run needs, from plain config values."""
    seed_everything(cfg["seed"])
    device = pick_device(cfg["device"])
    tr = cfg["train"]
    steps = tr["steps_per_epoch"] or max(1, cfg["dataset"]["n_train"] // tr["batch_size"])
    data = build_datasets(cfg["dataset"], cfg["seed"], steps * tr["batch_size"])
    class_names, group_names = data["train"].class_names, data["train"].group_names
    # Weighting is built before the model: a gamma for a class the data lacks fails fast.
    weighting = build_weighting(cfg["weighting"], class_names, group_names)
    model_cfg = dict(cfg["model"])
    model = build_model(model_cfg.pop("name"), **model_cfg).to(device)
    opt = cfg["optim"]
    optimizer = torch.optim.Adam(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
    decay_every = opt.get("lr_decay_every") or 0
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=decay_every or 10**9, gamma=1.0 / opt.get("lr_decay_factor", 1.0)
    )
    ev = cfg["eval"]["batch_size"]
    return {
        "cfg": cfg,
        "device": device,
        "data": data,
        "model": model,
        "weighting": weighting,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "group_names": group_names,
        "train_loader": make_loader(data["train"], tr["batch_size"], tr["num_workers"], True),
        "valid_loader": make_loader(data["valid"], ev, tr["num_workers"], False),
        "test_loader": make_loader(data["test"], ev, tr["num_workers"], False),
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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ctx = build(cfg, run_dir)
    model, epochs = ctx["model"], cfg["train"]["epochs"]
    last_epochs = cfg["eval"]["last_epochs"]
    log.info(
        "model: %s parameters on %s",
        f"{sum(p.numel() for p in model.parameters()):,}",
        ctx["device"],
    )
    writer = SummaryWriter(str(run_dir / "tb"))
    history, test_rows, best, best_epoch, step = [], [], -math.inf, -1, 0
    for epoch in range(epochs):
        step, stats = train_epoch(ctx, epoch, step, writer)
        ctx["scheduler"].step()
        valid = float(
            evaluate_rows(model, ctx["valid_loader"], ctx["device"], epoch)["sisdri"].mean()
        )
        writer.add_scalar("valid/sisdri", valid, step)
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                **stats,
                "valid_sisdri": valid,
                "lr": ctx["optimizer"].param_groups[0]["lr"],
                "seconds": round(time.time() - start, 2),
            }
        )
        pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
        log.info(
            "epoch %d/%d step %d: train loss %.3f, valid SI-SDRi %.2f dB",
            epoch + 1,
            epochs,
            step,
            stats["train_loss"],
            valid,
        )
        state = {
            "model": model.state_dict(),
            "optimizer": ctx["optimizer"].state_dict(),
            "epoch": epoch + 1,
            "step": step,
            "valid_sisdri": valid,
            "config": yaml.safe_dump(cfg, sort_keys=False),
        }
        if valid > best:
            best, best_epoch = valid, epoch + 1
            save_checkpoint(state, run_dir / "checkpoints" / "best.pt")
        save_checkpoint(state, run_dir / "checkpoints" / "last.pt")
        if last_epochs and epoch >= epochs - last_epochs:
            test_rows.append(evaluate_rows(model, ctx["test_loader"], ctx["device"], epoch + 1))
    if not last_epochs:
        best_state = load_checkpoint(run_dir / "checkpoints" / "best.pt", ctx["device"])
        model.load_state_dict(best_state["model"])
        test_rows = [
            evaluate_rows(
                model,
                ctx["test_loader"],
                ctx["device"],
                best_epoch,
                progress=cfg["train"]["progress"],
                desc="test",
            )
        ]
    writer.close()
    return finish(
        cfg,
        run_dir,
        pd.concat(test_rows, ignore_index=True),
        start,
        {"best_epoch": best_epoch, "best_valid_sisdri": best, "steps": step},
    )


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
