"""The ``model.*`` keys of each model, checked before anything is built.

Every model name has a :class:`ModelKeys`: the size keys it takes, each an integer with
bounds, rules that tie keys together (an odd kernel), and the fewest input samples it
needs (its padding multiple), which the segment length is checked against. A model
registers its keys under each of its names with :func:`register_model_keys`; a name
without registered keys is left to ``models.build_model``, which names unknown models.

The bounds are wide (far beyond the paper's sizes) but finite: they stop a typo such as
``model.upsampling_depth=30`` (an input padded to a multiple of 2**29 samples, hundreds of
GB) before any memory is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ugr_experiments.config.checks import ConfigError, check_int

__all__ = [
    "IntKey",
    "ModelKeys",
    "model_keys",
    "register_model_keys",
    "sudormrf_min_samples",
    "validate_model_keys",
]


@dataclass(frozen=True)
class IntKey:
    """An integer size key: ``low <= value <= high``; ``parity`` "odd", "even" or None."""

    low: int
    high: int
    example: int
    parity: str | None = None


@dataclass(frozen=True)
class ModelKeys:
    """What ``model.*`` may hold for one model name.

    Attributes:
        keys: each size key and its bounds; any other key (``name`` aside) is refused.
        defaults: the sizes a key left out takes (a preset's), for ``min_samples``.
        min_samples: the fewest input samples the model needs, from its sizes (or None).
    """

    keys: dict[str, IntKey]
    defaults: dict[str, Any] = field(default_factory=dict)
    min_samples: Callable[[dict[str, Any]], int] | None = None
    other: frozenset[str] = frozenset()  # keys allowed unchecked here (checked when built)


_REGISTRY: dict[str, ModelKeys] = {}


def register_model_keys(names: list[str] | tuple[str, ...], keys: ModelKeys) -> None:
    """Check ``model.*`` against ``keys`` whenever ``model.name`` is one of ``names``."""
    for name in names:
        _REGISTRY[name] = keys


def model_keys(name: str) -> ModelKeys | None:
    """The registered keys of model ``name`` (None: not registered, checked when built)."""
    return _REGISTRY.get(name)


def _check_key(model: dict[str, Any], key: str, spec: IntKey) -> None:
    full = f"model.{key}"
    example = f"{full}={spec.example}"
    check_int({"model": model}, full, spec.low, example, optional=False, high=spec.high)
    value = model[key]
    if spec.parity and (value % 2 == 1) != (spec.parity == "odd"):
        raise ConfigError(f"{full} must be {spec.parity}, got {value} (e.g. {example})")


def validate_model_keys(model: dict[str, Any]) -> int:
    """Check every key of the ``model`` group of a plain config (raises ConfigError).

    Returns:
        The fewest input samples the model needs (1 when the model says nothing).
    """
    name = model["name"]
    keys = model_keys(name)
    if keys is None:
        return 1
    unknown = sorted(set(model) - set(keys.keys) - keys.other - {"name"})
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]} is not an option of model {name!r}; its options are "
            f"{sorted(keys.keys)} (drop the override `+model.{unknown[0]}=...`)"
        )
    for key, spec in keys.keys.items():
        if key in model:
            _check_key(model, key, spec)
    sizes = {**keys.defaults, **model}
    return keys.min_samples(sizes) if keys.min_samples else 1


# ---------------------------------------------------------------------------------------------
# The registered networks (``models.REGISTRY``) and their presets
# ---------------------------------------------------------------------------------------------


def sudormrf_min_samples(sizes: dict[str, Any]) -> int:
    """Sudo rm -rf pads its input to a multiple of this (``models.sudormrf.pad_multiple``)."""
    from ugr_experiments.models.sudormrf import pad_multiple

    return pad_multiple(sizes["enc_kernel_size"], sizes["upsampling_depth"])


def improved_min_samples(sizes: dict[str, Any]) -> int:
    """SuDoRM-RF++ and its group-communication form pad to ``(L // 2) * 2 ** depth``."""
    from ugr_experiments.models.improved import improved_pad_multiple

    return improved_pad_multiple(sizes["enc_kernel_size"], sizes["upsampling_depth"])


SUDORMRF_KEYS = {
    "out_channels": IntKey(1, 4096, 128),
    "in_channels": IntKey(1, 8192, 512),
    "num_blocks": IntKey(1, 128, 16),
    # 2 ** (depth - 1) frames is the coarsest resolution: depth 12 already pads to
    # multiples of 20,480 samples at L = 21.
    "upsampling_depth": IntKey(1, 12, 5),
    "enc_kernel_size": IntKey(3, 1025, 21, parity="odd"),
    "enc_num_basis": IntKey(2, 8192, 512, parity="even"),
    "num_sources": IntKey(2, 16, 2),
}
GROUPCOMM_KEYS = {
    **SUDORMRF_KEYS,
    "in_audio_channels": IntKey(1, 64, 1),  # mono data: checked in config.validate
    "group_size": IntKey(1, 256, 16),
}
CONVTASNET_KEYS = {
    "enc_kernel_size": IntKey(2, 1024, 16, parity="even"),  # stride = kernel / 2
    "enc_num_feats": IntKey(1, 8192, 512),
    "msk_kernel_size": IntKey(1, 129, 3),
    "msk_num_feats": IntKey(1, 8192, 128),
    "msk_num_hidden_feats": IntKey(1, 8192, 512),
    "msk_num_layers": IntKey(1, 32, 8),
    "msk_num_stacks": IntKey(1, 32, 3),
    "num_sources": IntKey(2, 16, 2),
}

# model -> its size keys, its fewest samples from its sizes, its keys checked when built
_FAMILIES: dict[str, tuple[dict[str, IntKey], Callable[[dict[str, Any]], int], frozenset[str]]] = {
    "sudormrf": (SUDORMRF_KEYS, sudormrf_min_samples, frozenset()),
    "sudormrf_improved": (SUDORMRF_KEYS, improved_min_samples, frozenset()),
    "sudormrf_gc": (GROUPCOMM_KEYS, improved_min_samples, frozenset()),
    # the encoder's kernel; msk_activate is a string torchaudio's constructor checks
    "convtasnet": (CONVTASNET_KEYS, lambda s: s["enc_kernel_size"], frozenset({"msk_activate"})),
}


def _register_models() -> None:
    """Every registered network under its own name (the class defaults) and its presets'."""
    import inspect

    from ugr_experiments.models import REGISTRY

    for model, (keys, min_samples, other) in _FAMILIES.items():
        entry = REGISTRY[model]
        params = inspect.signature(entry.cls.__init__).parameters
        defaults = {k: p.default for k, p in params.items() if k != "self"}
        register_model_keys([model], ModelKeys(keys, defaults, min_samples, other))
        for preset, sizes in entry.presets.items():
            full = {**defaults, **sizes}
            register_model_keys([preset], ModelKeys(keys, full, min_samples, other))


_register_models()
