"""Turn the composed Hydra config into plain, validated values.

This is the only module of the library that touches OmegaConf: components get plain dicts,
numbers and strings. Everything here runs before any data is read or any weight is built, so
a typo costs a second, not an epoch.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and the fix."""


def parse_number(value: Any, key: str) -> float:
    """A number, or a simple fraction string such as ``"1/15"`` (as the paper writes alpha).

    Raises:
        ConfigError: naming ``key`` when ``value`` is neither.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got the boolean {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = str(value).strip()
        try:
            out = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(
                f"{key} must be a number or a fraction such as 1/15, got {value!r} "
                f"(e.g. `{key}=0.2` or `{key}=1/15`)"
            ) from None
    if not math.isfinite(out):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    return out


def _parse_alphas(weighting: dict[str, Any], prefix: str = "weighting") -> None:
    """Convert every ``alpha`` (also inside ``sum`` terms) in place, and check it is >= 0."""
    if "alpha" in weighting:
        alpha = parse_number(weighting["alpha"], f"{prefix}.alpha")
        if alpha < 0:
            raise ConfigError(
                f"alpha must be >= 0 (robust weighting, PAPER.md Eq. 5), got {alpha!r}; "
                "for easy-first weighting use weighting=curriculum (beta0 < 0)"
            )
        weighting["alpha"] = alpha
    for i, term in enumerate(weighting.get("terms") or []):
        _parse_alphas(term, f"{prefix}.terms[{i}]")


def _positive_int(section: dict[str, Any], key: str, prefix: str, allow_zero: bool = False) -> None:
    value = section.get(key)
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{prefix}.{key} must be an integer >= {low}, got {value!r}")


def validate(cfg: dict[str, Any]) -> None:
    """Ranges and types of the options every run uses (raises ConfigError)."""
    train, ev, optim, data = cfg["train"], cfg["eval"], cfg["optim"], cfg["dataset"]
    for key in ("epochs", "batch_size", "log_every"):
        _positive_int(train, key, "train")
    _positive_int(train, "num_workers", "train", allow_zero=True)
    if train.get("steps_per_epoch") is not None:
        _positive_int(train, "steps_per_epoch", "train")
    _positive_int(ev, "batch_size", "eval")
    _positive_int(ev, "last_epochs", "eval", allow_zero=True)
    if ev["last_epochs"] > train["epochs"]:
        raise ConfigError(
            f"eval.last_epochs={ev['last_epochs']} exceeds train.epochs={train['epochs']}"
        )
    lr = parse_number(optim.get("lr"), "optim.lr")
    if lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr!r}")
    optim["lr"] = lr
    if (
        optim.get("grad_clip") is not None
        and parse_number(optim["grad_clip"], "optim.grad_clip") <= 0
    ):
        raise ConfigError(f"optim.grad_clip must be > 0 or null, got {optim['grad_clip']!r}")
    if parse_number(data.get("segment_seconds"), "dataset.segment_seconds") <= 0:
        raise ConfigError(f"dataset.segment_seconds must be > 0, got {data['segment_seconds']!r}")
    snr = data.get("snr_db")
    if not (isinstance(snr, list | tuple) and len(snr) == 2 and float(snr[0]) <= float(snr[1])):
        raise ConfigError(f"dataset.snr_db must be [low, high] with low <= high, got {snr!r}")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {cfg['device']!r}")


def to_plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Resolve the config into plain containers, parse fractions and validate.

    The root ``alpha`` is parsed first, so ``${alpha}`` interpolations see the number.
    """
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
        cfg.pop("hydra", None)
    cfg = dict(cfg)
    cfg["alpha"] = parse_number(cfg.get("alpha", 0.0), "alpha")
    if cfg["alpha"] < 0:
        _parse_alphas({"alpha": cfg["alpha"]})  # raises the message with the fix
    plain = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    _parse_alphas(plain["weighting"])
    validate(plain)
    return plain
