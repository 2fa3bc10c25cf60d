"""TensorBoard audio during training: a few validation mixtures and their estimates.

The training loop logs the first items of the validation set every ``train.audio_every``
epochs (:func:`audio_due`); each clip is peak-normalised to be audible.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import DataLoader

from ugr_experiments.losses import pit_align

__all__ = ["audio_due", "first_items", "log_audio", "playable"]


def playable(x: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale a clip to ``peak`` (TensorBoard clips audio outside [-1, 1]).

    Shape:
        x (T,) -> (1, T)
    """
    return (x / x.abs().max().clamp_min(1e-8) * peak).reshape(1, -1)


@torch.no_grad()
def log_audio(
    writer: Any,
    model: torch.nn.Module,
    batch: dict[str, Any],
    step: int,
    sample_rate: int,
    n: int = 2,
) -> None:
    """Log the first ``n`` mixtures of ``batch`` and their estimates as TensorBoard audio.

    Tags ``valid_audio/<i>/mixture`` and ``valid_audio/<i>/estimate<k>``; estimate ``k``
    is aligned (PIT) to reference ``k``, so a tag keeps following the same source across
    epochs. Each clip is peak-normalised to be audible. Does nothing when ``writer`` is None
    (e.g. DDP ranks other than 0); a DDP-wrapped model is unwrapped, so no collective runs.
    """
    if writer is None or n <= 0:
        return
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    mix = batch["mixture"][:n]  # (n, T)
    est = net(mix.to(device)).float().cpu()  # (n, S, T)
    net.train(was_training)
    est, _ = pit_align(est, batch["sources"][:n].float())
    for i in range(mix.shape[0]):
        writer.add_audio(f"valid_audio/{i}/mixture", playable(mix[i]), step, sample_rate)
        for k in range(est.shape[1]):
            tag = f"valid_audio/{i}/estimate{k + 1}"
            writer.add_audio(tag, playable(est[i, k]), step, sample_rate)


def first_items(loader: DataLoader, n: int = 2) -> dict[str, Any]:
    """The first ``n`` items of ``loader``'s data set, collated.

    Read straight from the data set: creating a DataLoader iterator would draw from the
    global torch RNG and change the rest of the run.
    """
    dataset = loader.dataset
    assert isinstance(dataset, Sized)  # a map-style data set
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return loader.collate_fn(items)


def audio_due(every: int | None, epoch: int) -> bool:
    """True after every ``every``-th epoch (``epoch`` counts from 0); 0 or None: never."""
    if not every:
        return False
    return (epoch + 1) % int(every) == 0
