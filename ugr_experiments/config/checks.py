"""Checks of one config key: ``key`` is dotted (``"train.batch_size"``), the message says the fix.

The checks read and write plain nested dicts; :class:`ConfigError` is what every config
check raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

__all__ = [
    "MISSING",
    "ConfigError",
    "any_number",
    "check_choice",
    "check_int",
    "check_number",
    "get_key",
    "parse_number",
    "set_key",
]

MISSING = object()


def any_number(number: float) -> bool:
    """The rule of :func:`check_number` for keys that take any finite number."""
    return True


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and the fix."""


def parse_number(value: Any, key: str, example: str | None = None) -> float:
    """A finite number, or a simple fraction string such as ``"1/15"`` (as the paper writes alpha).

    Args:
        value: what the config holds.
        key: the dotted key, for the message.
        example: the fix shown in the message (default: ``key=0.2`` or ``key=1/15``).

    Raises:
        ConfigError: naming ``key``, ``value`` and the fix when ``value`` is neither, or is
            not finite (nan, inf, or a literal such as 1e400 that overflows).
    """
    fix = example or f"`{key}=0.2` or `{key}=1/15`"
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got the boolean {value!r} (e.g. {fix})")
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = str(value).strip()
        try:
            out = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                f"{key} must be a number or a fraction such as 1/15, got {value!r} (e.g. {fix})"
            ) from None
    if not math.isfinite(out):
        raise ConfigError(f"{key} must be a finite number, got {value!r} (e.g. {fix})")
    return out


def get_key(cfg: dict[str, Any], key: str, default: Any = MISSING) -> Any:
    """``cfg["a"]["b"]`` for the dotted ``key`` ``"a.b"``, or ``default`` where it is missing."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_key(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` of ``cfg`` to ``value``, creating missing parents."""
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def check_int(
    cfg: dict[str, Any],
    key: str,
    low: int,
    example: str,
    optional: bool = False,
    high: int | None = None,
) -> None:
    """``key`` must be an integer >= ``low`` (and <= ``high``; or null/absent when ``optional``)."""
    value = get_key(cfg, key)
    if optional and (value is None or value is MISSING):
        return
    too_high = high is not None and isinstance(value, int) and value > high
    if isinstance(value, bool) or not isinstance(value, int) or value < low or too_high:
        shown = "missing" if value is MISSING else repr(value)
        null = " or null" if optional else ""
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{key} must be an integer {bound}{null}, got {shown} (e.g. {example})")


def check_number(
    cfg: dict[str, Any],
    key: str,
    ok: Callable[[float], bool],
    rule: str,
    example: str,
    optional: bool = False,
) -> None:
    """``key`` must be a finite number (fractions accepted) satisfying ``ok``; stored as float."""
    value = get_key(cfg, key)
    if optional and (value is None or value is MISSING):
        return
    if value is MISSING:
        raise ConfigError(f"{key} is missing; it must be a number {rule} (e.g. {example})")
    number = parse_number(value, key, example)
    if not ok(number):
        raise ConfigError(f"{key} must be {rule}, got {value!r} (e.g. {example})")
    set_key(cfg, key, number)


def check_choice(cfg: dict[str, Any], key: str, allowed: tuple[str, ...], optional: bool) -> None:
    """``key`` must be one of ``allowed``."""
    value = get_key(cfg, key)
    if optional and value is MISSING:
        return
    if value not in allowed:
        raise ConfigError(
            f"unsupported {key}: {value!r}; choose from {list(allowed)} (e.g. {key}={allowed[0]})"
        )
