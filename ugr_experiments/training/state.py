"""Where a run is: :class:`TrainState` (saved in every checkpoint) and the sampler that resumes
an epoch at its first batch not yet trained on."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch


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

    def count_step(self, finite: bool) -> None:
        """Count a step as finite (ends a run of non-finite steps) or skipped."""
        if bool(finite):  # a bool, or a () bool tensor
            self.bad_in_row = 0
        else:
            self.bad_in_row += 1
            self.skipped += 1

    def next_epoch(self) -> None:
        """The epoch is over: the next one starts at its first batch."""
        self.epoch += 1
        self.batch = 0
        self.losses, self.sisdris, self.skipped = [], [], 0


def _plain(value: Any) -> Any:
    """NumPy / torch scalars as Python numbers (a weights-only load refuses NumPy objects)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


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
