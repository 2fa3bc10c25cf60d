"""The composed Hydra config as plain, validated values; which keys a resumed run must keep.

:func:`to_plain` is the one place the library turns OmegaConf into plain containers.
:func:`result_differences` lists the keys (other than :data:`RESUME_IGNORED`) on which a
resumed run disagrees with its checkpoint.
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from ugr_experiments.config.checks import MISSING, ConfigError, parse_number
from ugr_experiments.config.validate import validate

__all__ = ["CPU_RESULT_KEYS", "RESUME_IGNORED", "plain_dict", "result_differences", "to_plain"]

# Keys a resumed run may change: they alter how a run is shown, how fast it loads its data,
# where the data lives (the data itself is compared by the manifests' digests, see
# training.resume), when it saves or gives up, or at most the last bits of the scores
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
    "train.max_bad_steps",
    "eval.batch_size",
    "dataset.manifests",
    "dataset.manifest_sha256",  # recorded by runs since issue 13; older checkpoints lack it
    "dataset.roots",
    "weighting.health_every",
)
# Keys that change the result on the CPU only: the number of threads changes the order of
# the CPU's floating-point sums (on CUDA it only feeds the data loading).
CPU_RESULT_KEYS = ("train.threads",)


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


def plain_dict(node: DictConfig, *, resolve: bool) -> dict[str, Any]:
    """``OmegaConf.to_container`` of a mapping node, typed as the dict it returns."""
    out = OmegaConf.to_container(node, resolve=resolve)
    assert isinstance(out, dict)  # a DictConfig becomes a dict
    # OmegaConf types the keys as any primitive; config keys are strings.
    return cast(dict[str, Any], out)


def to_plain(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Resolve the config into plain containers, parse fractions and validate.

    The root ``alpha`` is parsed first, so ``${alpha}`` interpolations see the number.
    """
    if isinstance(cfg, DictConfig):
        cfg = plain_dict(cfg, resolve=False)
        cfg.pop("hydra", None)
    cfg = dict(cfg)
    cfg["alpha"] = parse_number(cfg.get("alpha", 0.0), "alpha")
    if cfg["alpha"] < 0:
        _parse_alphas({"alpha": cfg["alpha"]})  # raises the message with the fix
    plain = plain_dict(OmegaConf.create(cfg), resolve=True)
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


def _ignored(key: str, ignored: tuple[str, ...]) -> bool:
    if key.startswith("weighting") and key.endswith(".health_every"):
        return True  # also inside sum terms
    return any(key == p or key.startswith(p + ".") for p in ignored)


def result_differences(
    saved: dict[str, Any], current: dict[str, Any], on_cpu: bool = True
) -> list[str]:
    """The keys, other than :data:`RESUME_IGNORED`, whose values differ: ``key: a -> b`` lines.

    Args:
        saved: the plain config a checkpoint was written with.
        current: the plain config of the run that wants to resume from it.
        on_cpu: the run trains on the CPU, where :data:`CPU_RESULT_KEYS` change the result too.
    """
    old, new = _flatten(saved), _flatten(current)
    ignored = RESUME_IGNORED if on_cpu else RESUME_IGNORED + CPU_RESULT_KEYS
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if _ignored(key, ignored) or a == b:
            continue
        shown = ["(absent)" if v is MISSING else repr(v) for v in (a, b)]
        lines.append(f"{key}: {shown[0]} in the checkpoint, {shown[1]} now")
    return lines
