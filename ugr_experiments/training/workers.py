"""``train.num_workers: auto``: enough data-loading workers for the measured training step.

The rule, from two measurements taken once when the run is built (before the first step):

1. ``load_s``: the seconds one process takes to mix one (local) batch of training mixtures,
   after one untimed item (what one DataLoader worker does per batch; items are keyed by
   (seed, epoch, index), so reading them changes nothing);
2. ``step_s``: the seconds of one forward and backward pass of the model on that batch (the
   optimiser is not stepped and the gradients are cleared: the run is unchanged), eager
   even with ``train.compile``; the second of two passes (the first warms up).

Then (:func:`workers_needed`): no worker process when the main process can mix a batch in at
most 5 % of a step (``load_s <= 0.05 step_s``: loading in line costs at most that, and on
the CPU worker processes would only take cores from the step); otherwise
``ceil(1.25 load_s / step_s)`` workers (25 % headroom), capped by the cores this process may
use (divided among the ranks of a node under torchrun), less one for the main process.
An integer ``train.num_workers`` is used as it is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import torch

from ugr_experiments.data import MixtureDataset, collate_mixtures
from ugr_experiments.losses import neg_sisdri
from ugr_experiments.training import distributed
from ugr_experiments.training.distributed import Runtime

__all__ = ["AUTO", "HEADROOM", "IN_LINE_SHARE", "resolve_workers", "usable_cores", "workers_needed"]

log = logging.getLogger(__name__)

AUTO = "auto"
HEADROOM = 1.25  # workers supply 25 % more than a step consumes
IN_LINE_SHARE = 0.05  # no workers while mixing a batch takes at most 5 % of a step


def workers_needed(load_s: float, step_s: float, cores: int) -> int:
    """Data-loading workers for a training step of ``step_s`` seconds.

    Args:
        load_s: seconds for one process to mix one batch.
        step_s: seconds of one training step on that batch.
        cores: cores this process may use (one stays with the main process).

    Returns:
        0 when ``load_s <= 0.05 step_s``, else ``ceil(1.25 load_s / step_s)`` capped at
        ``max(1, cores - 1)``.
    """
    if load_s <= IN_LINE_SHARE * step_s:
        return 0
    return min(math.ceil(HEADROOM * load_s / step_s), max(1, cores - 1))


def usable_cores() -> int:
    """Cores this process may run on, divided among the ranks of this node (torchrun)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _time_step(model: torch.nn.Module, batch: dict[str, Any], rt: Runtime) -> float:
    """Seconds of one forward + backward pass; the gradients are cleared afterwards."""
    mix = batch["mixture"].to(rt.device)  # (B, T)
    ref = batch["sources"].to(rt.device)  # (B, S, T)
    for _ in range(2):  # the first pass warms up (kernel choices, allocator, CUDA context)
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)
        start = time.perf_counter()
        with distributed.autocast(rt):
            est = model(mix)  # (B, S, T)
        neg_sisdri(est.float(), ref, mix).mean().backward()
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)
        elapsed = time.perf_counter() - start
    for p in model.parameters():
        p.grad = None
    return elapsed


def resolve_workers(
    setting: int | str,
    dataset: MixtureDataset,
    model: torch.nn.Module,
    batch_size: int,
    rt: Runtime,
) -> int:
    """``train.num_workers``: an integer as it is; ``auto`` by the rule of this module.

    Args:
        setting: the validated ``train.num_workers`` (an integer >= 0 or ``"auto"``).
        dataset: the training set.
        model: the plain model (not DDP: no collective runs here), on ``rt.device``.
        batch_size: this rank's batch.
        rt: this process's runtime.
    """
    if setting != AUTO:
        return int(setting)
    dataset[0]  # warm-up: first reads open files, fill caches
    start = time.perf_counter()
    batch = collate_mixtures([dataset[i % len(dataset)] for i in range(batch_size)])
    load_s = time.perf_counter() - start
    step_s = _time_step(model, batch, rt)
    cores = usable_cores()
    workers = workers_needed(load_s, step_s, cores)
    log.info(
        "train.num_workers=auto: %d worker(s) (a batch of %d mixes in %.3f s, a step takes "
        "%.3f s, %d core(s))",
        workers,
        batch_size,
        load_s,
        step_s,
        cores,
    )
    if workers < math.ceil(HEADROOM * load_s / step_s) and load_s > IN_LINE_SHARE * step_s:
        log.warning(
            "data loading may limit training: %d core(s) allow %d worker(s), %d would keep up",
            cores,
            workers,
            math.ceil(HEADROOM * load_s / step_s),
        )
    return workers
