"""Allowed values of the weighting configs, and the checks of one value.

Every message names the key, the value, what is allowed and a fix. The weighting functions
check their arguments with these, so a bad value fails when the weighting is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "DEFAULT_EXP_RATE",
    "DEFAULT_HEALTH_EVERY",
    "LENGTH_UNITS",
    "SHAPES",
    "UNITS",
    "as_float",
    "check_choice",
    "check_gamma",
    "check_health_every",
    "check_number",
    "check_positive_int",
    "check_unit",
]

UNITS = ("sources", "mixtures")
SHAPES = ("linear", "cosine", "exponential")
LENGTH_UNITS = ("steps", "epochs")
DEFAULT_HEALTH_EVERY = 25
# Exponential curriculum: |beta| ~ exp(-rate * k / length) before the rescaling to reach 0.
DEFAULT_EXP_RATE = 5.0


def as_float(value: Any) -> float | None:
    """A finite float from a number or a simple string ("0.2", "1/15"); None if impossible."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def check_number(
    key: str, value: Any, rule: str, example: str, ok: Callable[[float], bool] = lambda x: True
) -> float:
    """``value`` as a float (fractions accepted) for which ``ok`` holds.

    Raises:
        ValueError: naming ``key``, the ``rule`` and an ``example``.
    """
    number = as_float(value)
    if number is None or not ok(number):
        rule = f" {rule}" if rule else ""
        raise ValueError(f"{key} must be a number{rule}, got {value!r} (e.g. {example})")
    return number


def check_positive_int(key: str, value: Any, example: str) -> int:
    """``value`` as an integer > 0 (booleans refused); ValueError naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be an integer > 0, got {value!r} (e.g. {example})")
    return int(value)


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``; ValueError listing them otherwise."""
    if value not in allowed:
        raise ValueError(
            f"unsupported {key}: {value!r}; choose from {list(allowed)} (e.g. {key}={allowed[0]})"
        )
    return str(value)


def check_unit(unit: Any) -> str:
    """``unit`` if it is one of :data:`UNITS`."""
    return check_choice("unit", unit, UNITS)


def check_health_every(value: Any) -> int:
    """``value`` as an integer >= 0 (0 = never log the pmf's health)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"health_every must be an integer >= 0 (0 = never), got {value!r} "
            "(e.g. health_every=25)"
        )
    return int(value)


def check_gamma(
    gamma: Any, class_names: Sequence[str], group_names: Sequence[str]
) -> dict[str, float]:
    """``gamma`` as ``{class or group name: float}``; every key must name one of them.

    Raises:
        ValueError: not a mapping, a key that is neither a class nor a group, or a value
            that is not a number.
    """
    if not isinstance(gamma, Mapping):
        raise ValueError(
            f"gamma must be a mapping from class or group name to a number, got {gamma!r} "
            "(e.g. gamma: {speech: 3.0, environmental: 0.0})"
        )
    checked = {}
    for key, value in gamma.items():
        if key not in class_names and key not in group_names:
            raise ValueError(
                f"gamma key {key!r} is neither a class nor a group of this data set; "
                f"classes: {list(class_names)}; groups: {list(group_names)} "
                "(rename or remove the key)"
            )
        checked[str(key)] = check_number(f"gamma[{key}]", value, "", f"gamma.{key}=3.0")
    return checked
