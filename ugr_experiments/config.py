"""Turn the composed Hydra config into plain, validated values.

This is the only module of the library that touches OmegaConf: components get plain dicts,
numbers and strings. Everything here runs before any data is read or any weight is built, so
a typo costs a second, not an epoch. Every message names the key, the value and the fix.

It also says which keys change what a run computes (:func:`result_differences`): a resumed
run must agree with its checkpoint on all of those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ugr_experiments.data.corpus import PREP_COMMAND, SHORT_SOURCES
from ugr_experiments.weighting import LENGTH_UNITS, SHAPES, UNITS

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam",)
# Added with resumable training; filled in when a (plain) config lacks them.
DEFAULTS = {"resume": False, "train.max_bad_steps": 20, "checkpoint.every_steps": 50}

# Keys a resumed run may change: they alter how a run is shown, how fast it loads its data,
# where the data lives, when it saves or gives up, or at most the last bits of the scores
# (device, eval.batch_size). Every other key must match the checkpoint's config.
RESUME_IGNORED = (
    "resume",
    "device",
    "paths",
    "checkpoint",
    "train.progress",
    "train.num_workers",
    "train.log_every",
    "train.audio_every",
    "train.compile",
    "train.threads",
    "train.max_bad_steps",
    "eval.batch_size",
    "dataset.manifests",
    "dataset.roots",
    "weighting.health_every",
)


MISSING = object()


def _any(number: float) -> bool:
    return True


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


# ---------------------------------------------------------------------------------------------
# Checks of one key: `key` is dotted ("train.batch_size"), the message says the fix.
# ---------------------------------------------------------------------------------------------


def get_key(cfg: dict[str, Any], key: str, default: Any = MISSING) -> Any:
    """``cfg["a"]["b"]`` for the dotted ``key`` ``"a.b"``, or ``default`` where it is missing."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def check_int(
    cfg: dict[str, Any], key: str, low: int, example: str, optional: bool = False
) -> None:
    """``key`` must be an integer >= ``low`` (or null/absent when ``optional``)."""
    value = get_key(cfg, key)
    if optional and (value is None or value is MISSING):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        shown = "missing" if value is MISSING else repr(value)
        null = " or null" if optional else ""
        raise ConfigError(f"{key} must be an integer >= {low}{null}, got {shown} (e.g. {example})")


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
    number = parse_number(value, key)
    if not ok(number):
        raise ConfigError(f"{key} must be {rule}, got {value!r} (e.g. {example})")
    _set(cfg, key, number)


def check_choice(cfg: dict[str, Any], key: str, allowed: tuple[str, ...], optional: bool) -> None:
    """``key`` must be one of ``allowed``."""
    value = get_key(cfg, key)
    if optional and value is MISSING:
        return
    if value not in allowed:
        raise ConfigError(
            f"unsupported {key}: {value!r}; choose from {list(allowed)} (e.g. {key}={allowed[0]})"
        )


# ---------------------------------------------------------------------------------------------
# Validation of the whole config
# ---------------------------------------------------------------------------------------------


def _validate_train(cfg: dict[str, Any]) -> None:
    check_int(cfg, "seed", 0, "seed=0")
    for key, example in (("epochs", 12), ("batch_size", 8), ("log_every", 25)):
        check_int(cfg, f"train.{key}", 1, f"train.{key}={example}")
    check_int(cfg, "train.steps_per_epoch", 1, "train.steps_per_epoch=100", optional=True)
    check_int(cfg, "train.num_workers", 0, "train.num_workers=0")
    check_int(cfg, "train.threads", 1, "train.threads=1 (null: torch's default)", optional=True)
    check_int(cfg, "train.max_bad_steps", 1, "train.max_bad_steps=20")
    check_int(cfg, "checkpoint.every_steps", 0, "checkpoint.every_steps=50 (0: epoch ends only)")
    check_int(cfg, "eval.batch_size", 1, "eval.batch_size=16")
    check_int(cfg, "eval.last_epochs", 0, "eval.last_epochs=10")
    if cfg["eval"]["last_epochs"] > cfg["train"]["epochs"]:
        raise ConfigError(
            f"eval.last_epochs={cfg['eval']['last_epochs']} exceeds "
            f"train.epochs={cfg['train']['epochs']}: the test can only run at epochs that "
            "exist (lower eval.last_epochs or raise train.epochs)"
        )
    if not isinstance(cfg["resume"], bool):
        raise ConfigError(
            f"resume must be true or false, got {cfg['resume']!r} (e.g. `resume=true "
            "hydra.run.dir=<the run directory>` continues the run saved there)"
        )
    if cfg["device"] not in DEVICES:
        raise ConfigError(
            f"device must be one of auto, cpu, cuda; got {cfg['device']!r} (e.g. device=auto)"
        )


def _validate_optim(cfg: dict[str, Any]) -> None:
    check_choice(cfg, "optim.name", OPTIMIZERS, optional=True)
    check_number(cfg, "optim.lr", lambda x: x > 0, "> 0", "optim.lr=1e-3")
    check_number(cfg, "optim.weight_decay", lambda x: x >= 0, ">= 0", "optim.weight_decay=0")
    check_number(cfg, "optim.grad_clip", lambda x: x > 0, "> 0 or null", "optim.grad_clip=5", True)
    check_int(cfg, "optim.lr_decay_every", 0, "optim.lr_decay_every=0 (never)", optional=True)
    check_number(
        cfg, "optim.lr_decay_factor", lambda x: x > 0, "> 0", "optim.lr_decay_factor=3", True
    )


def _validate_dataset(cfg: dict[str, Any]) -> None:
    data = cfg["dataset"]
    check_int(cfg, "dataset.sample_rate", 1, "dataset.sample_rate=8000")
    check_number(
        cfg, "dataset.segment_seconds", lambda x: x > 0, "> 0", "dataset.segment_seconds=4"
    )
    if data["segment_seconds"] * data["sample_rate"] < 1:
        raise ConfigError(
            f"dataset.segment_seconds={data['segment_seconds']} at dataset.sample_rate="
            f"{data['sample_rate']} gives less than one sample (e.g. dataset.segment_seconds=4)"
        )
    check_int(cfg, "dataset.n_sources", 2, "dataset.n_sources=2")
    check_int(cfg, "dataset.eval_seed", 0, "dataset.eval_seed=0", optional=True)
    for split, example in (("train", 20000), ("valid", 3000), ("test", 3000)):
        # An empty split would train on nothing or report a table of nothing.
        check_int(cfg, f"dataset.n_{split}", 1, f"dataset.n_{split}={example}")
    _validate_snr(data.get("snr_db"))
    check_number(cfg, "dataset.min_rms_db", _any, "a number", "dataset.min_rms_db=-50", True)
    check_int(cfg, "dataset.max_tries", 1, "dataset.max_tries=100", optional=True)
    check_number(
        cfg, "dataset.p_speech", lambda x: 0 <= x <= 1, "in [0, 1]", "dataset.p_speech=0.5", True
    )
    check_choice(cfg, "dataset.short_sources", SHORT_SOURCES, optional=True)
    classes = data.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes):
        raise ConfigError(
            f"dataset.classes must be null (every class) or a non-empty list of class names, "
            f"got {classes!r} (e.g. dataset.classes=[voice_low,noise])"
        )


def _validate_snr(snr: Any) -> None:
    message = (
        f"dataset.snr_db must be [low, high] with low <= high, two finite numbers in dB, got "
        f"{snr!r} (e.g. dataset.snr_db=[-5,5])"
    )
    if not (isinstance(snr, list | tuple) and len(snr) == 2):
        raise ConfigError(message)
    try:
        low, high = (parse_number(x, "dataset.snr_db") for x in snr)
    except ConfigError:
        raise ConfigError(message) from None
    if low > high:
        raise ConfigError(message)


def _validate_model(cfg: dict[str, Any]) -> None:
    if not isinstance(cfg["model"].get("name"), str):
        raise ConfigError(f"model.name must be a model name, got {cfg['model'].get('name')!r}")
    sources = cfg["model"].get("num_sources")
    if sources is not None and sources != cfg["dataset"]["n_sources"]:
        raise ConfigError(
            f"model.num_sources={sources!r} but dataset.n_sources="
            f"{cfg['dataset']['n_sources']}: the model must output one signal per source "
            "(drop the model.num_sources override; it follows dataset.n_sources)"
        )


def _nested(prefix: str, node: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b[0]": node}}`` for ``prefix="a.b[0]"``: checks then name keys in full."""
    for part in reversed(prefix.split(".")):
        node = {part: node}
    return node


def _validate_weighting(w: dict[str, Any], prefix: str) -> None:
    """Numbers and choices of a weighting config (names of classes are checked at build)."""
    root = _nested(prefix, w)
    check_choice(root, f"{prefix}.unit", UNITS, optional=True)
    check_int(root, f"{prefix}.health_every", 0, f"{prefix}.health_every=25", optional=True)
    if w.get("name") == "curriculum":
        check_number(root, f"{prefix}.beta0", lambda b: b < 0, "< 0", f"{prefix}.beta0=-0.2")
        check_int(root, f"{prefix}.length", 1, f"{prefix}.length=6")
        check_choice(root, f"{prefix}.shape", SHAPES, optional=True)
        check_choice(root, f"{prefix}.length_unit", LENGTH_UNITS, optional=True)
        rate = f"{prefix}.rate"
        check_number(root, rate, lambda r: r > 0, "> 0", f"{rate}=5", optional=True)
    if w.get("name") == "class":
        gamma = w.get("gamma")
        if not isinstance(gamma, dict):
            raise ConfigError(
                f"{prefix}.gamma must map class or group names to numbers, got {gamma!r} "
                "(e.g. weighting.gamma.speech=3)"
            )
        for name in gamma:
            key = f"{prefix}.gamma.{name}"
            check_number(root, key, _any, "a number", f"{key}=3")
    for i, term in enumerate(w.get("terms") or []):
        if isinstance(term, dict):
            _validate_weighting(term, f"{prefix}.terms[{i}]")


def validate(cfg: dict[str, Any]) -> None:
    """Ranges and types of the options every run uses (raises ConfigError)."""
    for key, value in DEFAULTS.items():
        if get_key(cfg, key) is MISSING:
            _set(cfg, key, value)
    _validate_train(cfg)
    _validate_optim(cfg)
    _validate_dataset(cfg)
    _validate_model(cfg)
    _validate_weighting(cfg["weighting"], "weighting")


def check_paths(cfg: dict[str, Any]) -> None:
    """The files and folders a run reads must exist (raises ConfigError naming the key).

    Only paths the config names are checked (``dataset.manifests.*``, ``dataset.roots.*``);
    the corpus loaders check a manifest's contents.
    """
    data = cfg["dataset"]
    for group, path in (data.get("manifests") or {}).items():
        if path is None or not Path(path).is_file():
            prep = PREP_COMMAND.get(group, "the matching data_prep script --output {path}")
            raise ConfigError(
                f"dataset.manifests.{group}: no manifest at {path!r} "
                f"({Path(str(path)).resolve()}). Write it once with `{prep.format(path=path)}`, "
                "or point paths.manifests (environment variable UGR_MANIFESTS) at the folder "
                "that holds it"
            )
    for group, root in (data.get("roots") or {}).items():
        if root is not None and not Path(root).is_dir():
            raise ConfigError(
                f"dataset.roots.{group}: no folder at {root!r}; set it to where the corpus is "
                f"now, or to null to use the root recorded in the manifest"
            )


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


# ---------------------------------------------------------------------------------------------
# What a resumed run must keep
# ---------------------------------------------------------------------------------------------


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and any(isinstance(item, dict) for item in node):
        out = {}
        for i, item in enumerate(node):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def _ignored(key: str) -> bool:
    if key.startswith("weighting") and key.endswith(".health_every"):
        return True  # also inside sum terms
    return any(key == p or key.startswith(p + ".") for p in RESUME_IGNORED)


def result_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The keys, other than :data:`RESUME_IGNORED`, whose values differ: ``key: a -> b`` lines.

    Args:
        saved: the plain config a checkpoint was written with.
        current: the plain config of the run that wants to resume from it.
    """
    old, new = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if _ignored(key) or a == b:
            continue
        shown = ["(absent)" if v is MISSING else repr(v) for v in (a, b)]
        lines.append(f"{key}: {shown[0]} in the checkpoint, {shown[1]} now")
    return lines
