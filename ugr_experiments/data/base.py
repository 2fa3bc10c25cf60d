"""What every mixture data set yields, and the mixing rule they all share.

Every data set of the framework is a map-style ``torch.utils.data.Dataset`` whose item ``i``
is a pure function of ``(seed, split, epoch, i)``: the training split draws new mixtures when
``set_epoch`` is called, validation and test ignore the epoch. This makes data loading
worker-safe (no two workers share a random stream), rank-safe under DDP (ranks read disjoint
indices) and exactly resumable (a checkpoint only needs the epoch and step).

An item is a dict:

- ``mixture``: float32 tensor ``(T,)``
- ``sources``: float32 tensor ``(S, T)``; ``sources.sum(0) == mixture``
- ``class_idx``: int64 tensor ``(S,)``, index into ``dataset.class_names``
- ``group_idx``: int64 tensor ``(S,)``, index into ``dataset.group_names``
- ``index``: int, the item's index in its split
- ``info``: list of ``S`` dicts with ``class``, ``group``, ``file``, ``offset`` (samples at the
  model's rate) and ``snr_db`` (of source 0 against source 1, the same for both rows), so that
  every row of ``per_source_sisdri.csv`` can be traced to its audio.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "valid", "test")

# Groups of the paper's class-biasing experiment. Synthetic classes map onto the same two.
SPEECH = "speech"
ENVIRONMENTAL = "environmental"


def item_rng(seed: int, split: str, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one item: independent streams for every (seed, split, epoch, index).

    Validation and test items pass ``epoch=0`` always, so they are fixed by the seed
    (``dataset.eval_seed`` for those splits, see :func:`split_seed`).
    """
    split_code = zlib.crc32(split.encode())
    return np.random.default_rng([int(seed), split_code, int(epoch), int(index)])


def split_seed(cfg: dict[str, Any], seed: int, split: str) -> int:
    """The seed that draws ``split``: the run's for training, ``dataset.eval_seed`` otherwise."""
    if split == "train" or cfg.get("eval_seed") is None:
        return int(seed)
    return int(cfg["eval_seed"])


def mix_sources(
    sources: np.ndarray, snr_db: float, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``S`` sources as in the paper (PAPER.md 4).

    Each source is made zero-mean and scaled to unit energy; source 0 is then scaled so that its
    energy over the energy of source 1 is ``snr_db`` (other sources keep unit energy); the
    mixture is their sum; mixture and sources are divided by the mixture's std, so the
    sources still sum to the mixture.

    Shape:
        sources: (S, T) -> mixture (T,), sources (S, T), float32.
    """
    src = np.asarray(sources, dtype=np.float64)
    src = src - src.mean(axis=-1, keepdims=True)
    energy = np.sqrt((src**2).sum(axis=-1, keepdims=True))
    src = src / (energy + eps)
    src[0] *= 10.0 ** (snr_db / 20.0)
    mix = src.sum(axis=0)
    scale = mix.std() + eps
    return (mix / scale).astype(np.float32), (src / scale).astype(np.float32)


def make_item(
    index: int,
    sources: np.ndarray,
    snr_db: float,
    class_idx: Sequence[int],
    group_idx: Sequence[int],
    info: list[dict[str, Any]],
) -> dict[str, Any]:
    """Mix ``sources`` and pack the item dict described in the module docstring."""
    mix, src = mix_sources(sources, snr_db)
    for row in info:
        row["snr_db"] = float(snr_db)
    return {
        "mixture": torch.from_numpy(mix),
        "sources": torch.from_numpy(src),
        "class_idx": torch.as_tensor(list(class_idx), dtype=torch.long),
        "group_idx": torch.as_tensor(list(group_idx), dtype=torch.long),
        "index": int(index),
        "info": info,
    }


def collate_mixtures(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: tensors get a leading ``B`` axis; ``index``, ``info`` stay lists.

    Shape:
        mixture (B, T), sources (B, S, T), class_idx (B, S), group_idx (B, S).
    """
    return {
        "mixture": torch.stack([it["mixture"] for it in items]),
        "sources": torch.stack([it["sources"] for it in items]),
        "class_idx": torch.stack([it["class_idx"] for it in items]),
        "group_idx": torch.stack([it["group_idx"] for it in items]),
        "index": [it["index"] for it in items],
        "info": [it["info"] for it in items],
    }


class MixtureDataset(torch.utils.data.Dataset):
    """Base class: subclasses implement ``make(index, rng)`` and set the name lists."""

    class_names: list[str]
    group_names: list[str]

    def __init__(self, split: str, length: int, seed: int) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        if length < 1:
            raise ValueError(f"a {split} set needs at least one mixture, got length={length}")
        self.split = split
        self.length = int(length)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training mixtures are drawn afresh each epoch; validation/test stay fixed."""
        if self.split == "train":
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a {self.split} set of {self.length}")
        epoch = self.epoch if self.split == "train" else 0
        return self.make(index, item_rng(self.seed, self.split, epoch, index))

    def make(self, index: int, rng: np.random.Generator) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError
