"""Data-parallel runtime: joining the process group, devices, who reads which items, and the
GPU speed paths (DESIGN.md: devices). What the ranks exchange is ``training.collectives``.

One process per device, started by ``torchrun`` or by Hydra's submitit launcher (SLURM); the
process group uses NCCL for CUDA tensors and gloo for CPU tensors. What a run means does not
depend on the number of processes ``W``:

- **The global batch.** ``train.batch_size`` is the global batch ``B``; every rank reads
  ``B / W`` items (``W`` must divide ``B``). Step ``k`` reads items ``kB .. (k+1)B - 1`` of the
  epoch, rank ``r`` every ``W``-th of them from ``kB + r`` (``state.ResumableSampler``), so
  ``W`` processes see exactly the mixtures of one. Items are pure functions of
  ``(seed, split, epoch, index)`` (``data/base.py``): disjoint indices are distinct streams.
- **The pmf** (DESIGN.md, "Weights are detached and normalised over the global batch"): the
  detached scores of all ranks are gathered, the softmax is taken once over the global batch
  and each rank keeps its slice (``weighting.pmf``); the local loss is scaled by ``W`` because
  DDP averages gradients, so the update is the single-process ``sum_i p_i g_i``.
- **Skipped steps.** A non-finite loss or gradient on any rank makes every rank skip the step
  (a reduced flag: nobody is left waiting in a collective).

Evaluation is sharded: each rank scores a contiguous slice of the validation / test mixtures
and every rank receives all the rows, so all ranks take the same best-epoch decision. Files
(config, history, checkpoints, TensorBoard, tables) are written by rank 0 only. Checkpoints
hold the plain module's weights (no ``module.`` or ``_orig_mod.`` prefix): they load at any
world size.

GPU speed: ``train.precision=bf16`` autocasts the forward pass on CUDA (refused on the CPU),
``train.compile=true`` wraps the training module in ``torch.compile``, loaders pin memory, and
on CUDA the optimiser is fused Adam, which skips a non-finite step on the device: the train step
itself then never waits for the GPU (its figures and flag stay on the device).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import re
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ugr_experiments.config import DEVICES, ConfigError
from ugr_experiments.weighting import AllGather, distributed_all_gather

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
# Generous: ranks wait in collectives while rank 0 writes checkpoints and tables.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Runtime:
    """This process's place in data-parallel training, and how it computes.

    Attributes:
        rank: index of this process among ``world_size`` (0 in a single process).
        world_size: number of processes; 1 means plain single-process training.
        local_rank: index of this process on its machine (picks its GPU).
        device: where this process trains.
        precision: ``fp32``, or ``bf16`` (autocast, CUDA only).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"

    @property
    def distributed(self) -> bool:
        """Whether there are other ranks to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    @property
    def all_gather(self) -> AllGather | None:
        """What ``weighting.pmf`` needs to normalise over the global batch (None: one process)."""
        return distributed_all_gather if self.distributed else None

    @property
    def fused(self) -> bool | None:
        """``fused=`` for Adam: on CUDA the fused kernel can skip a step without a host sync."""
        return True if self.device.type == "cuda" else None


# ---------------------------------------------------------------------------------------------
# Joining the process group
# ---------------------------------------------------------------------------------------------


def launch_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of this process, as its launcher set them.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
    ``MASTER_PORT``). In a task of a submitit job (Hydra's submitit launcher, SLURM or local)
    they are exported from submitit's ``TorchDistributedEnvironment``. Anything else: one process.
    """
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        from submitit.helpers import TorchDistributedEnvironment

        # Keep every GPU visible: LOCAL_RANK picks the device, as under torchrun.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def init_process_group() -> bool:
    """Join the default process group when launched as several processes (idempotent).

    The backend is ``cpu:gloo,cuda:nccl`` where CUDA exists (NCCL for GPU tensors, gloo for
    CPU tensors and objects, so ``device=cpu`` works too), else ``gloo``.

    Returns:
        Whether this process belongs to a group of more than one.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    rank, world_size, local_rank = launch_env()
    if world_size <= 1:
        return False
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=TIMEOUT)
    atexit.register(_destroy_process_group)
    return True


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The config's ``device`` (``auto``, ``cpu``, ``cuda``; the command lines also take
    ``cuda:N``) as a device of this process.

    Args:
        name: the config value.
        local_rank: this process's index on its machine under DDP (None: a single process,
            which keeps plain ``cuda``).

    Raises:
        ConfigError: an unknown name, or ``cuda`` without CUDA.
    """
    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):
        raise ConfigError(f"device must be one of {list(DEVICES)}; got {name!r} (e.g. device=auto)")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available; use device=cpu or device=auto")
    if local_rank is None:
        return torch.device(name if name.startswith("cuda") else "cuda")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def check_precision(precision: str, device: torch.device) -> str:
    """``train.precision``, checked against the device (bf16 autocast is CUDA only)."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"unsupported train.precision: {precision!r}; choose from {list(PRECISIONS)} "
            "(e.g. train.precision=bf16 on a GPU)"
        )
    if precision == "bf16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision=bf16 needs CUDA, but this run trains on {device.type}; "
            "use train.precision=fp32 on the CPU (or device=cuda on a GPU machine)"
        )
    return precision


def setup(device: str = "auto", precision: str = "fp32") -> Runtime:
    """The runtime of this process; joins the process group under torchrun or submitit.

    Idempotent: a test (or a script) may have initialised the group already.
    Ranks other than 0 log warnings and errors only.

    Args:
        device: the config's ``device``; with several processes, ``cuda`` is this process's
            GPU ``cuda:<local rank>``.
        precision: ``fp32``, or ``bf16`` (CUDA only).

    Raises:
        ConfigError: an unknown device or precision, CUDA missing, bf16 on the CPU.
    """
    if not init_process_group():
        dev = resolve_device(device)
        return Runtime(device=dev, precision=check_precision(precision, dev))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    return Runtime(rank, world_size, local_rank, dev, check_precision(precision, dev))


# ---------------------------------------------------------------------------------------------
# Who reads which items
# ---------------------------------------------------------------------------------------------


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """Items per rank; the global batch must divide evenly (the pmf spans equal slices).

    Raises:
        ConfigError: ``world_size`` does not divide ``global_batch``; the message names both.
    """
    if global_batch % world_size:
        fix = world_size * max(1, round(global_batch / world_size))
        raise ConfigError(
            f"train.batch_size={global_batch} is the global batch and must divide evenly by the "
            f"{world_size} processes (every rank holds an equal slice of the batch the pmf is "
            f"normalised over); use e.g. train.batch_size={fix}, or a number of processes that "
            f"divides {global_batch}"
        )
    return global_batch // world_size


def shard(dataset: Sized, rt: Runtime) -> list[int] | None:
    """This rank's contiguous slice of an evaluation set (None in a single process: all).

    Contiguous slices gathered in rank order give the rows in item order, as one process would.
    """
    if not rt.distributed:
        return None
    n, r, w = len(dataset), rt.rank, rt.world_size
    return list(range(r * n // w, (r + 1) * n // w))


def seed_rank(seed: int, rt: Runtime) -> None:
    """Distinct ``torch`` / ``numpy`` / ``random`` streams per rank, after the shared model init.

    Data items do not use these streams (they are keyed by their index); anything random in
    the step (dropout, augmentation) must differ between ranks. One process: untouched.
    """
    if not rt.distributed:
        return
    state = int(np.random.SeedSequence([seed, rt.rank]).generate_state(1)[0])
    random.seed(state)
    np.random.seed(state)
    torch.manual_seed(state)


# ---------------------------------------------------------------------------------------------
# How the train step computes
# ---------------------------------------------------------------------------------------------


def wrap_model(model: nn.Module, rt: Runtime, compile: bool = False) -> nn.Module:
    """The module the train step calls: DDP across ranks, then optionally ``torch.compile``.

    Keep using ``model`` itself for evaluation and checkpoints: its ``state_dict`` has no
    ``module.`` / ``_orig_mod.`` prefixes, so it loads at any world size.
    """
    if not isinstance(compile, bool):
        raise ConfigError(f"train.compile must be true or false, got {compile!r}")
    train_model = model
    if rt.distributed:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        # static_graph: DDP finds the unused parameters once (Sudo rm -rf keeps the authors'
        # unused ``ln_mask_in``); without it their bucket never reduces and each rank would
        # silently keep its own gradient.
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids, static_graph=True)
    if compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]  # same calls
    return train_model


def autocast(rt: Runtime) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``precision=bf16`` (CUDA); a no-op context for fp32."""
    if rt.precision == "bf16":
        return torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# Hydra glue: one run directory for all ranks
# ---------------------------------------------------------------------------------------------


class SharedRunDir:
    """Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): rank 0's run directory.

    Under ``torchrun`` every rank runs ``@hydra.main`` and resolves ``${now:...}`` in
    ``hydra.run.dir`` (or ``hydra.sweep.dir`` with ``-m``) at its own time. Before Hydra creates
    any directory, this joins the process group and sets the directory to rank 0's on every
    rank; ranks other than 0 also skip writing ``.hydra/``. In one process it does nothing.
    Submitit tasks need none of it: the launcher resolves their directory once.
    """

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._share(config, "run")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._share(config, "sweep")

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("on_"):  # every other hook of hydra's Callback: nothing to do
            return _ignore
        raise AttributeError(name)

    @staticmethod
    def _share(config: Any, mode: str) -> None:
        if not init_process_group():
            return
        from omegaconf import OmegaConf, open_dict, read_write

        box = [str(OmegaConf.select(config, f"hydra.{mode}.dir"))]
        dist.broadcast_object_list(box, src=0)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra[mode].dir = box[0]
            if mode == "run" and dist.get_rank() != 0:
                config.hydra.output_subdir = None
            if mode == "sweep":  # launchers recompose each job from these overrides
                quoted = box[0].replace("\\", "\\\\").replace("'", "\\'")
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{quoted}'")


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None
