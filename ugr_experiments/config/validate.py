"""Validation of the whole plain config: every option's range and type, the paths it names.

Everything here runs before any data is read or any weight is built; a bad value raises
:class:`~ugr_experiments.config.checks.ConfigError` naming the key, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugr_experiments.config.checks import (
    MISSING,
    ConfigError,
    any_number,
    check_choice,
    check_int,
    check_number,
    get_key,
    parse_number,
    set_key,
)
from ugr_experiments.config.models import validate_model_keys
from ugr_experiments.data.corpus import PREP_COMMAND, SHORT_SOURCES
from ugr_experiments.models import check_model
from ugr_experiments.weighting import LENGTH_UNITS, SHAPES, UNITS

__all__ = ["DEFAULTS", "DEVICES", "OPTIMIZERS", "check_paths", "validate"]

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam",)
# Added with resumable training; filled in when a (plain) config lacks them.
DEFAULTS = {"resume": False, "train.max_bad_steps": 20, "checkpoint.every_steps": 50}
# The shortest segment: a shorter crop can fall between two impacts or into a pause of
# speech and be redrawn as silent again and again (synthetic data fails below 0.05 s).
MIN_SEGMENT_SECONDS = 0.1


def _validate_train(cfg: dict[str, Any]) -> None:
    check_int(cfg, "seed", 0, "seed=0")
    for key, example in (("epochs", 12), ("batch_size", 8), ("log_every", 25)):
        check_int(cfg, f"train.{key}", 1, f"train.{key}={example}")
    check_int(cfg, "train.steps_per_epoch", 1, "train.steps_per_epoch=100", optional=True)
    workers = get_key(cfg, "train.num_workers")
    if workers != "auto" and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ConfigError(
            f"train.num_workers must be an integer >= 0 or auto, got {workers!r} (e.g. "
            "train.num_workers=auto: enough workers for the training step measured at start)"
        )
    check_int(cfg, "train.threads", 1, "train.threads=1 (null: torch's default)", optional=True)
    check_int(cfg, "train.max_bad_steps", 1, "train.max_bad_steps=20")
    check_int(cfg, "train.audio_every", 0, "train.audio_every=4 (0: never)", optional=True)
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
    check_number(cfg, "dataset.min_rms_db", any_number, "a number", "dataset.min_rms_db=-50", True)
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
        raise ConfigError(
            f"model.name must be a model name, got {cfg['model'].get('name')!r} "
            "(e.g. model=sudormrf_cpu)"
        )
    model_samples = validate_model_keys(cfg["model"])  # each size key of a registered model
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    try:  # the name, its argument names, an optional dependency (torchaudio): before any work
        check_model(cfg["model"]["name"], kwargs)
    except (ValueError, ImportError) as err:
        raise ConfigError(f"model.name={cfg['model']['name']!r}: {err}") from None
    channels = cfg["model"].get("in_audio_channels", 1)
    if channels != 1:
        raise ConfigError(
            f"model.in_audio_channels={channels!r}: the data sets give mono mixtures "
            "(model.in_audio_channels=1)"
        )
    sources = cfg["model"].get("num_sources")
    if sources is not None and sources != cfg["dataset"]["n_sources"]:
        raise ConfigError(
            f"model.num_sources={sources!r} but dataset.n_sources="
            f"{cfg['dataset']['n_sources']}: the model must output one signal per source "
            "(drop the model.num_sources override; it follows dataset.n_sources)"
        )
    _check_segment(cfg, model_samples)


def _check_segment(cfg: dict[str, Any], model_samples: int) -> None:
    """The segment holds a non-silent crop and at least the model's padding multiple."""
    data = cfg["dataset"]
    rate, samples = data["sample_rate"], round(data["segment_seconds"] * data["sample_rate"])
    need = max(model_samples, round(MIN_SEGMENT_SECONDS * rate))
    if samples < need:
        raise ConfigError(
            f"dataset.segment_seconds={data['segment_seconds']} gives {samples} samples at "
            f"dataset.sample_rate={rate}; at least {need} are needed ({MIN_SEGMENT_SECONDS} s "
            f"for a crop that is not silent, {model_samples} for model {cfg['model']['name']}'s "
            f"padding): set dataset.segment_seconds >= {need / rate:g} "
            "(e.g. dataset.segment_seconds=1)"
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
            check_number(root, key, any_number, "a number", f"{key}=3")
    for i, term in enumerate(w.get("terms") or []):
        if isinstance(term, dict):
            _validate_weighting(term, f"{prefix}.terms[{i}]")


def validate(cfg: dict[str, Any]) -> None:
    """Ranges and types of the options every run uses (raises ConfigError)."""
    for key, value in DEFAULTS.items():
        if get_key(cfg, key) is MISSING:
            set_key(cfg, key, value)
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
