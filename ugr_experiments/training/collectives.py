"""What the ranks of data-parallel training exchange: reduced flags and figures, gathered pmfs
and evaluation rows, rank 0's values; and the one-writer rule for files.

Every function is a no-op (returns its input) in a single process, so the loop calls them
unconditionally. Under DDP each one is a collective: all ranks must call it, in the same
order (the loop's decisions depend only on the step, so they do). See
``training.distributed`` for what a run means under ``W`` processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from ugr_experiments.training.checkpoint import save_checkpoint
from ugr_experiments.training.distributed import Runtime
from ugr_experiments.weighting import distributed_all_gather

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The train step's collectives
# ---------------------------------------------------------------------------------------------


def all_ranks_true(flag: Tensor, rt: Runtime) -> Tensor:
    """``flag`` AND-ed over all ranks, on the device (no host sync).

    Shape:
        flag () bool -> () bool.
    """
    if not rt.distributed:
        return flag
    value = flag.to(torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value.bool()


def any_rank(flag: bool, rt: Runtime) -> bool:
    """Whether ``flag`` is true on some rank (a host sync: for rare decisions, e.g. a SIGTERM
    that reached the ranks at different steps, so that all stop at the same step)."""
    if not rt.distributed:
        return flag
    value = torch.tensor([int(flag)], device=rt.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def step_if_finite(
    optimizer: torch.optim.Optimizer, total: Tensor, grad_norm: Tensor, rt: Runtime
) -> Tensor:
    """The optimiser step, taken only if the loss and gradient norm are finite on every rank.

    Optimisers that accept ``found_inf`` (fused Adam, as built on CUDA; the mechanism of
    ``torch.amp.GradScaler``) skip on the device, so the step needs no host-device sync; the
    others test the flag on the host, which costs nothing on the CPU.

    Returns:
        The reduced flag, a 0-dim bool tensor on the device: True when the step was taken.
    """
    ok = all_ranks_true(torch.isfinite(total.detach()) & torch.isfinite(grad_norm), rt)
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif bool(ok):
        optimizer.step()
    return ok


def global_mean(values: Tensor, rt: Runtime) -> Tensor:
    """The mean of ``values`` over ranks, on the device (no host sync).

    For the step's figures ``[W * sum_local p_i L_i, mean_local SI-SDRi]`` this gives the
    global batch's weighted loss ``sum_i p_i L_i`` and its mean SI-SDRi (equal slices).

    Shape:
        values (K,) -> (K,).
    """
    if not rt.distributed:
        return values
    out = values.detach().clone()
    dist.all_reduce(out)
    return out / rt.world_size


def global_pmf(p: Tensor, groups: Tensor, rt: Runtime) -> tuple[Tensor, Tensor]:
    """The pmf and item groups of the whole global batch, for ``pmf_health`` (collective).

    Shape:
        p (N,), groups (N,) -> (W N,), (W N,).
    """
    if not rt.distributed:
        return p, groups
    parts = distributed_all_gather(p.reshape(-1))
    group_parts = distributed_all_gather(groups.reshape(-1))
    return torch.cat(parts), torch.cat(group_parts)


# ---------------------------------------------------------------------------------------------
# Evaluation and files: sharded work, one writer
# ---------------------------------------------------------------------------------------------


def gather_rows(rows: pd.DataFrame, rt: Runtime) -> pd.DataFrame:
    """Every rank's evaluation rows on every rank, in rank order (= item order: the shards
    are contiguous), so the result equals a single-process evaluation's rows."""
    if not rt.distributed:
        return rows
    parts: list[Any] = [None] * rt.world_size
    dist.all_gather_object(parts, rows)
    return pd.concat(parts, ignore_index=True)


def shared_path(path: Path, rt: Runtime) -> Path:
    """Rank 0's ``path`` on every rank (the run directory each rank got from Hydra)."""
    if not rt.distributed:
        return path
    box = [str(path)]
    dist.broadcast_object_list(box, src=0)
    if box[0] != str(path):
        log.warning("rank %d: using rank 0's run directory %s, not %s", rt.rank, box[0], path)
    return Path(box[0])


def barrier(rt: Runtime) -> None:
    """Wait until every rank gets here (e.g. rank 0 finished writing a checkpoint)."""
    if rt.distributed:
        dist.barrier()


def save_on_main(state: dict[str, Any], path: Path, rt: Runtime, **kwargs: Any) -> None:
    """``save_checkpoint(state, path, **kwargs)`` on rank 0 only: the ranks hold identical
    weights, and one writer per file keeps the atomic replace meaningful."""
    if rt.is_main:
        save_checkpoint(state, path, **kwargs)


class NullWriter:
    """A ``SummaryWriter`` stand-in for ranks other than 0: every method does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _ignore


Writer = SummaryWriter | NullWriter  # what every rank logs to: only rank 0's writes files


def make_writer(log_dir: Path, rt: Runtime, **kwargs: Any) -> Writer:
    """``SummaryWriter(log_dir, **kwargs)`` on rank 0; a :class:`NullWriter` elsewhere."""
    return SummaryWriter(str(log_dir), **kwargs) if rt.is_main else NullWriter()


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None
