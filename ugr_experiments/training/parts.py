"""What a run is made of: :class:`RunParts`, built once from plain config values.

``build_parts`` is the only place that reads the config to construct things (seeding, data,
weighting, model, optimiser, schedule, loaders); everything downstream receives typed objects.
Where the run *is* (epoch, step, best score, ...) lives in ``training.state.TrainState``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from ugr_experiments.data import MixtureDataset, build_datasets, collate_mixtures
from ugr_experiments.models import build_model
from ugr_experiments.training import distributed
from ugr_experiments.training.distributed import Runtime
from ugr_experiments.training.signals import ignore_stop_signals
from ugr_experiments.training.state import ResumableSampler
from ugr_experiments.training.workers import resolve_workers
from ugr_experiments.weighting import Weighting, build_weighting


@dataclass(frozen=True)
class LoopSettings:
    """The plain config values the training loop reads (``train.*``, ``optim.*``, ...).

    Attributes:
        epochs: epochs to train (``train.epochs``).
        batch_size: the global batch (``train.batch_size``); each rank reads a slice.
        steps_per_epoch: batches per training epoch (the train split holds exactly that many).
        grad_clip: max gradient norm, None or 0 for no clipping (``optim.grad_clip``).
        lr: the initial learning rate (``optim.lr``), for messages.
        alpha: robust weighting's alpha (root ``alpha``), for messages.
        log_every: TensorBoard scalars every that many steps (``train.log_every``).
        checkpoint_every: ``last.pt`` every that many steps, 0: at epoch ends only.
        max_bad_steps: non-finite steps in a row that stop the run (``train.max_bad_steps``).
        progress: show progress bars (``train.progress``).
        audio_every: log validation audio every that many epochs, None or 0: never.
        last_epochs: 0 tests the best-validation weights; N tests each of the last N epochs.
        sample_rate: of the data set, for audio logging.
    """

    epochs: int
    batch_size: int
    steps_per_epoch: int
    grad_clip: float | None
    lr: float
    alpha: float
    log_every: int
    checkpoint_every: int
    max_bad_steps: int
    progress: bool
    audio_every: int | None
    last_epochs: int
    sample_rate: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any], steps_per_epoch: int) -> LoopSettings:
        """The settings of a plain, validated config."""
        train, optim = cfg["train"], cfg["optim"]
        return cls(
            epochs=train["epochs"],
            batch_size=train["batch_size"],
            steps_per_epoch=steps_per_epoch,
            grad_clip=optim.get("grad_clip"),
            lr=optim["lr"],
            alpha=cfg["alpha"],
            log_every=train["log_every"],
            checkpoint_every=cfg["checkpoint"]["every_steps"],
            max_bad_steps=train["max_bad_steps"],
            progress=train["progress"],
            audio_every=train.get("audio_every"),
            last_epochs=cfg["eval"]["last_epochs"],
            sample_rate=cfg["dataset"]["sample_rate"],
        )


@dataclass(frozen=True)
class RunParts:
    """Everything a run is made of; built once by :func:`build_parts`, never reassigned.

    Attributes:
        model: the plain module: evaluation and checkpoints (no DDP / compile prefixes).
        train_model: what the train step calls: ``model``, wrapped in DDP and/or compiled.
        optimizer: Adam over ``model``'s parameters.
        scheduler: the step learning-rate schedule (stepped once per epoch).
        weighting: the weighting function F (and its state, if stateful).
        train_set: the training split (its epoch picks the mixtures).
        train_sampler: this rank's training indices; its ``start`` resumes an epoch mid-way.
        train_loader: this rank's training batches.
        valid_loader: this rank's shard of the validation set.
        test_loader: this rank's shard of the test set.
        runtime: rank, world size, device and precision of this process.
        run_dir: where every output goes.
        settings: the loop's plain config values.
        config_text: the resolved config as YAML, as checkpoints store it.
        data: the manifests the run reads and their digests (``data.checks.check_data``),
            as checkpoints store them.
    """

    model: torch.nn.Module
    train_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    weighting: Weighting
    train_set: MixtureDataset
    train_sampler: ResumableSampler
    train_loader: DataLoader
    valid_loader: DataLoader
    test_loader: DataLoader
    runtime: Runtime
    run_dir: Path
    settings: LoopSettings
    config_text: str
    data: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where this process trains."""
        return self.runtime.device

    @property
    def group_names(self) -> list[str]:
        """Names of the item groups (pmf health per group), as the training data has them."""
        return self.train_set.group_names


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    drop_last: bool,
    sampler: Sampler[int] | list[int] | None = None,
) -> DataLoader:
    """A loader of collated mixtures, in index order (``sampler`` picks the indices)."""
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
        worker_init_fn=ignore_stop_signals,  # a signal is the main process's to handle
        # Its own generator: each new iterator would otherwise draw from torch's global RNG,
        # and a resumed run (one more iterator) would not continue that RNG exactly.
        generator=torch.Generator(),
    )


def build_optimisation(
    model: torch.nn.Module, optim: dict[str, Any], rt: Runtime
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam and its step schedule (``optim.lr_decay_every`` epochs; 0 or absent: constant)."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"], fused=rt.fused
    )
    decay_every = optim.get("lr_decay_every") or 0
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=decay_every or 10**9, gamma=1.0 / optim.get("lr_decay_factor", 1.0)
    )
    return optimizer, scheduler


def eval_loaders(
    data: dict[str, MixtureDataset], batch_size: int, workers: int, rt: Runtime
) -> tuple[DataLoader, DataLoader]:
    """Validation and test loaders over this rank's contiguous shard (all items: one process)."""
    valid, test = data["valid"], data["test"]
    return (
        make_loader(valid, batch_size, workers, False, distributed.shard(valid, rt)),
        make_loader(test, batch_size, workers, False, distributed.shard(test, rt)),
    )


def build_parts(
    cfg: dict[str, Any],
    run_dir: Path,
    rt: Runtime | None = None,
    data_digests: dict[str, dict[str, str]] | None = None,
) -> RunParts:
    """Everything a run needs, from plain config values, in an order that keeps runs seeded.

    Args:
        cfg: the plain, validated config.
        run_dir: the run directory.
        rt: this process's runtime (None: set up from ``cfg``, joining torchrun's group).
        data_digests: the manifests the run reads and their digests, kept in checkpoints.

    Raises:
        ConfigError: a global batch the world size does not divide (before building anything).
    """
    seed_everything(cfg["seed"])
    tr = cfg["train"]
    if tr.get("threads"):  # e.g. 1 per job when several jobs share the cores (joblib sweeps)
        torch.set_num_threads(tr["threads"])
    rt = rt or distributed.setup(cfg["device"], tr.get("precision", "fp32"))
    local_batch = distributed.per_rank_batch(tr["batch_size"], rt.world_size)
    steps = tr["steps_per_epoch"] or max(1, cfg["dataset"]["n_train"] // tr["batch_size"])
    data = build_datasets(cfg["dataset"], cfg["seed"], steps * tr["batch_size"])
    train_set = data["train"]
    # Weighting is built before the model: a gamma for a class the data lacks fails fast.
    weighting = build_weighting(cfg["weighting"], train_set.class_names, train_set.group_names)
    model_cfg = dict(cfg["model"])
    model = build_model(model_cfg.pop("name"), **model_cfg).to(rt.device)
    optimizer, scheduler = build_optimisation(model, cfg["optim"], rt)
    sampler = ResumableSampler(len(train_set), rt.rank, rt.world_size)
    # Before DDP wraps the model (its gradient hooks); times a step when set to auto.
    workers = resolve_workers(tr["num_workers"], train_set, model, local_batch, rt)
    train_model = distributed.wrap_model(model, rt, tr.get("compile", False))  # DDP, compile
    distributed.seed_rank(cfg["seed"], rt)  # after the shared init: a random stream per rank
    valid_loader, test_loader = eval_loaders(data, cfg["eval"]["batch_size"], workers, rt)
    return RunParts(
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        scheduler=scheduler,
        weighting=weighting,
        train_set=train_set,
        train_sampler=sampler,
        train_loader=make_loader(train_set, local_batch, workers, True, sampler),
        valid_loader=valid_loader,
        test_loader=test_loader,
        runtime=rt,
        run_dir=run_dir,
        settings=LoopSettings.from_config(cfg, len(train_set) // tr["batch_size"]),
        config_text=yaml.safe_dump(cfg, sort_keys=False),
        data=dict(data_digests or {}),
    )
