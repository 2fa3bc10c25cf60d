"""Separation models and the factory that builds them from plain config values.

``build_model(name, **kwargs)`` builds a registered network (``"sudormrf"``,
``"sudormrf_improved"``, ``"sudormrf_gc"``, ``"convtasnet"``) from its constructor's keyword
arguments, or a preset (``"sudormrf_1x"``, ``"sudormrf_improved_cpu"``, ...) whose sizes the
keyword arguments override. Every model maps ``(B, T)`` to ``(B, S, T)`` and states
``num_sources`` and its padding multiple ``lcm`` (see :mod:`ugr_experiments.models.common`).

Adding a network: one file under ``models/`` with its class (and its ``PRESETS``), one line
in ``REGISTRY`` below (and a ``conf/model/<name>.yaml`` to pick it with ``model=<name>``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ugr_experiments.models import convtasnet, groupcomm, improved, sudormrf
from ugr_experiments.models.common import load_authors_state_dict
from ugr_experiments.models.convtasnet import ConvTasNet, TorchaudioUnavailableError
from ugr_experiments.models.groupcomm import GroupCommSudoRmRf
from ugr_experiments.models.improved import ImprovedSuDORMRF
from ugr_experiments.models.sudormrf import SuDORMRF

__all__ = [
    "PRESETS",
    "REGISTRY",
    "ConvTasNet",
    "GroupCommSudoRmRf",
    "ImprovedSuDORMRF",
    "ModelEntry",
    "SuDORMRF",
    "TorchaudioUnavailableError",
    "build_model",
    "check_model",
    "load_authors_state_dict",
    "model_names",
    "resolve",
]


@dataclass(frozen=True)
class ModelEntry:
    """A registered network.

    Attributes:
        cls: the model class; its constructor's keyword arguments are the config keys.
        presets: preset name -> constructor arguments.
        requires: raises when an optional dependency is missing (checked before any work).
    """

    cls: type[nn.Module]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    requires: Callable[[], object] | None = None


REGISTRY: dict[str, ModelEntry] = {
    "sudormrf": ModelEntry(SuDORMRF, sudormrf.PRESETS),
    "sudormrf_improved": ModelEntry(ImprovedSuDORMRF, improved.PRESETS),
    "sudormrf_gc": ModelEntry(GroupCommSudoRmRf, groupcomm.PRESETS),
    "convtasnet": ModelEntry(ConvTasNet, convtasnet.PRESETS, convtasnet.require_torchaudio),
}

# Preset name -> constructor arguments, over all models.
PRESETS: dict[str, dict[str, Any]] = {
    preset: dict(sizes) for entry in REGISTRY.values() for preset, sizes in entry.presets.items()
}
_PRESET_MODEL = {preset: name for name, e in REGISTRY.items() for preset in e.presets}


def model_names() -> list[str]:
    """Every name ``build_model`` accepts: the models and their presets."""
    return sorted([*REGISTRY, *PRESETS])


def resolve(name: str, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered model behind ``name`` and its full constructor arguments.

    Raises:
        ValueError: for an unknown name or keyword argument, naming the allowed ones.
    """
    if name in PRESETS:
        kwargs = {**PRESETS[name], **kwargs}
        name = _PRESET_MODEL[name]
    if name not in REGISTRY:
        raise ValueError(f"unsupported model: {name!r}; choose from {model_names()}")
    params = inspect.signature(REGISTRY[name].cls.__init__).parameters
    allowed = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for model {name!r}; allowed: {allowed}")
    return name, dict(kwargs)


def check_model(name: str, kwargs: Mapping[str, Any]) -> None:
    """Everything :func:`build_model` checks before building: name, argument names, extras.

    Raises:
        ValueError: an unknown name or argument.
        TorchaudioUnavailableError: a model whose optional dependency is missing or broken.
    """
    model, _ = resolve(name, kwargs)
    requires = REGISTRY[model].requires
    if requires is not None:
        requires()


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a separation model from plain values.

    Args:
        name: a registered model (sizes from ``kwargs``, the class defaults otherwise) or
            a preset (``kwargs`` override its sizes); see :func:`model_names`.
        **kwargs: constructor arguments of the model (e.g. ``num_blocks``,
            ``num_sources``), by the names of the authors' constructors.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ValueError: for an unknown name or keyword argument, or invalid sizes.
        TorchaudioUnavailableError: ``convtasnet`` without a working torchaudio.
    """
    check_model(name, kwargs)
    model, full = resolve(name, kwargs)
    return REGISTRY[model].cls(**full)
