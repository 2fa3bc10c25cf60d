"""What every separation network here shares: argument checks, input shapes, the authors' weights.

A model of this package maps a mixture ``(B, T)`` or ``(B, 1, T)`` to ``(B, S, T)`` for any
``T``, and says how it wants to be fed through two attributes the rest of the framework
reads (training, evaluation, ``ugr-separate``, export):

- ``num_sources``: S, the number of estimated signals;
- ``lcm``: the multiple the network pads its input to (``ugr-separate`` cuts long files on
  that grid, so every chunk sees the frames the whole file would).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["as_batch_channel_time", "check_sizes", "load_authors_state_dict"]


def check_sizes(model: str, **sizes: int) -> None:
    """Every size is a positive integer; the encoder kernel is odd and >= 3.

    Args:
        model: the class name, for the message.
        **sizes: constructor arguments (``enc_kernel_size`` gets the odd check).

    Raises:
        ValueError: naming the argument, its value and what it must be.
    """
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {key} must be a positive integer, got {value!r}")
    kernel = sizes.get("enc_kernel_size")
    if kernel is not None and (kernel % 2 == 0 or kernel < 3):
        raise ValueError(
            f"{model}: enc_kernel_size must be odd and >= 3 (stride L // 2, padding L // 2), "
            f"got {kernel}"
        )


def as_batch_channel_time(wav: Tensor, model: str, channels: int = 1) -> tuple[Tensor, int]:
    """``(B, T)`` or ``(B, channels, T)`` -> ``(B, channels, T)`` and ``T``.

    Raises:
        ValueError: for any other shape, naming the model and the shape.
    """
    if wav.dim() == 2 and channels == 1:
        wav = wav.unsqueeze(1)
    if wav.dim() != 3 or wav.shape[1] != channels:
        shapes = "(B, T) or (B, 1, T)" if channels == 1 else f"(B, {channels}, T)"
        raise ValueError(f"{model} expects a mixture of shape {shapes}, got {tuple(wav.shape)}")
    return wav, wav.shape[-1]


def load_authors_state_dict(
    model: nn.Module, source: str | os.PathLike[str] | Mapping[str, Any] | nn.Module
) -> nn.Module:
    """Load weights saved from the authors' network into ``model`` (in place).

    Our Sudo rm -rf networks keep the parameter names and shapes of the authors' classes
    (etzinis/sudo_rm_rf: ``sudormrf.SuDORMRF``, ``improved_sudormrf.SuDORMRF``,
    ``groupcomm_sudormrf_v2.GroupCommSudoRmRf``), so this is ``load_state_dict`` after
    unwrapping: a file (read with ``torch.load(weights_only=True)``), a module, a checkpoint
    dict holding the weights under ``model_state_dict``, ``state_dict`` or ``model``, and
    the ``module.`` prefix of ``nn.DataParallel`` (their training scripts wrap the model in
    it). The network must be built with the checkpoint's sizes (the original paper's
    networks use ``upsampling_depth=5``; that class's default, 4, is a different, smaller
    model). Files that pickle a whole model object (the authors' released files do) need
    ``torch.load(path, weights_only=False)`` (only for files you trust); pass the loaded
    object.

    Args:
        model: the network to load into.
        source: a path, a state dict, a checkpoint dict containing one, or a module.

    Returns:
        ``model``, for chaining.

    Raises:
        ValueError: if keys are missing or unexpected, or a shape differs.
    """
    if isinstance(source, (str, os.PathLike)):
        # weights_only: plain containers of tensors, never a pickled module.
        loaded: Mapping[str, Any] = torch.load(source, map_location="cpu", weights_only=True)
        source = loaded
    if isinstance(source, nn.Module):
        source = source.state_dict()
    state: Mapping[str, Any] = source
    for key in ("model_state_dict", "state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint does not match this {type(model).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {wrong[:5]}; build the model with the checkpoint's "
            "num_blocks / upsampling_depth / channel sizes"
        )
    model.load_state_dict(state)
    return model
