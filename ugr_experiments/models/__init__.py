"""Separation models and the factory that builds them from plain config values.

``build_model("sudormrf", **sizes)`` builds the Sudo rm -rf network of PAPER.md
section 4; ``build_model("sudormrf_1x")`` (or ``_025x``, ``_05x``, ``_cpu``) builds a
preset, with keyword arguments overriding its sizes.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ugr_experiments.models.sudormrf import SuDORMRF, load_authors_state_dict

__all__ = ["PRESETS", "SuDORMRF", "build_model", "load_authors_state_dict"]

# Sizes of the authors' networks (PAPER.md section 4) and a CPU-sized one.
# Parameter counts (2 sources): 0.25x 791,174; 0.5x 1,414,790; 1.0x 2,662,022.
_PAPER = dict(
    out_channels=128,
    in_channels=512,
    upsampling_depth=5,
    enc_kernel_size=21,
    enc_num_basis=512,
    num_sources=2,
)
PRESETS: dict[str, dict[str, int]] = {
    "sudormrf_025x": {**_PAPER, "num_blocks": 4},
    "sudormrf_05x": {**_PAPER, "num_blocks": 8},
    "sudormrf_1x": {**_PAPER, "num_blocks": 16},
    # Trains in seconds per step on 2 CPU cores at 8 kHz, 1 s segments, batch 8.
    "sudormrf_cpu": dict(
        out_channels=64,
        in_channels=256,
        num_blocks=4,
        upsampling_depth=4,
        enc_kernel_size=21,
        enc_num_basis=256,
        num_sources=2,
    ),
}

_MODELS: dict[str, type[nn.Module]] = {"sudormrf": SuDORMRF}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a separation model from plain values.

    Args:
        name: ``"sudormrf"`` (sizes from ``kwargs``, the 1.0x network by default) or a
            key of :data:`PRESETS` (``kwargs`` override the preset's sizes).
        **kwargs: constructor arguments of the model (e.g. ``num_blocks``,
            ``num_sources``); integers.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ValueError: for an unknown name or an unknown keyword argument.
    """
    if name in PRESETS:
        kwargs = {**PRESETS[name], **kwargs}
        name = "sudormrf"
    if name in _MODELS:
        cls = _MODELS[name]
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown argument(s) {unknown} for model {name!r}; allowed: {allowed}"
            )
        return cls(**kwargs)
    choices = sorted([*_MODELS, *PRESETS])
    raise ValueError(f"unsupported model: {name!r}; choose from {choices}")
