"""Build a weighting function from its plain config dict (``conf/weighting/*.yaml``).

:data:`BUILDERS` maps each ``name`` to its builder and the keys it accepts; unknown names and
keys are refused with the allowed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ugr_experiments.weighting.alternatives import (
    CVaRWeighting,
    GroupDROWeighting,
    TiltedGroupsWeighting,
)
from ugr_experiments.weighting.checks import DEFAULT_EXP_RATE, DEFAULT_HEALTH_EVERY
from ugr_experiments.weighting.functions import (
    ClassWeighting,
    CurriculumWeighting,
    RobustWeighting,
    SumWeighting,
    UniformWeighting,
    Weighting,
)

__all__ = ["BUILDERS", "Builder", "build_weighting"]

_COMMON_KEYS = ("name", "unit", "health_every")


def _common(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "unit": cfg.get("unit", "sources"),
        "health_every": cfg.get("health_every", DEFAULT_HEALTH_EVERY),
    }


def _required(cfg: Mapping[str, Any], key: str, example: str) -> Any:
    if key not in cfg:
        raise ValueError(f"weighting {cfg['name']!r} needs the key {key!r} (e.g. {example})")
    return cfg[key]


def _build_uniform(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    return UniformWeighting(**_common(cfg))


def _build_robust(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    return RobustWeighting(_required(cfg, "alpha", "alpha=0.2"), **_common(cfg))


def _build_curriculum(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    return CurriculumWeighting(
        beta0=_required(cfg, "beta0", "beta0=-0.2"),
        shape=cfg.get("shape", "linear"),
        length=_required(cfg, "length", "length=6"),
        length_unit=cfg.get("length_unit", "steps"),
        rate=cfg.get("rate", DEFAULT_EXP_RATE),
        **_common(cfg),
    )


def _build_class(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    gamma = _required(cfg, "gamma", "gamma: {speech: 3.0}")
    return ClassWeighting(gamma, classes, groups, **_common(cfg))


def _build_cvar(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    return CVaRWeighting(_required(cfg, "fraction", "fraction=0.25"), **_common(cfg))


def _build_group_dro(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    eta = _required(cfg, "eta", "eta=0.002")
    grouping = cfg.get("groups", "classes")
    return GroupDROWeighting(eta, classes, groups, grouping, **_common(cfg))


def _build_tilted_groups(
    cfg: Mapping[str, Any], classes: list[str], groups: list[str]
) -> Weighting:
    t_in, t_out = _required(cfg, "t_in", "t_in=0.2"), _required(cfg, "t_out", "t_out=0.2")
    grouping = cfg.get("groups", "classes")
    return TiltedGroupsWeighting(t_in, t_out, classes, groups, grouping, **_common(cfg))


def _build_sum(cfg: Mapping[str, Any], classes: list[str], groups: list[str]) -> Weighting:
    terms_cfg = _required(cfg, "terms", "terms: [{name: class, gamma: {speech: 3}}]")
    if isinstance(terms_cfg, (str, Mapping)) or not isinstance(terms_cfg, Sequence):
        raise ValueError(
            f"terms must be a list of weighting configs, got {terms_cfg!r} "
            "(e.g. terms: [{name: robust, alpha: 0.1}, {name: class, gamma: {speech: 3}}])"
        )
    common = _common(cfg)
    terms = []
    for term in terms_cfg:
        if not isinstance(term, Mapping):
            raise ValueError(
                f"every entry of terms must be a weighting config dict, got {term!r} "
                "(e.g. {name: robust, alpha: 0.1})"
            )
        # Terms inherit the sum's unit; their own health_every is irrelevant.
        terms.append(build_weighting({"unit": common["unit"], **term}, classes, groups))
    return SumWeighting(terms, **common)


Builder = Callable[[Mapping[str, Any], list[str], list[str]], Weighting]

# name -> (builder, keys it accepts besides name/unit/health_every)
BUILDERS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "uniform": (_build_uniform, ()),
    "robust": (_build_robust, ("alpha",)),
    "curriculum": (_build_curriculum, ("beta0", "shape", "length", "length_unit", "rate")),
    "class": (_build_class, ("gamma",)),
    "cvar": (_build_cvar, ("fraction",)),
    "group_dro": (_build_group_dro, ("eta", "groups")),
    "tilted_groups": (_build_tilted_groups, ("t_in", "t_out", "groups")),
    "sum": (_build_sum, ("terms",)),
}


def build_weighting(
    cfg: Mapping[str, Any], class_names: list[str], group_names: list[str]
) -> Weighting:
    """Build a weighting function from its plain config dict.

    Args:
        cfg: a ``conf/weighting/*.yaml`` group as a plain dict (``name`` picks the mode).
        class_names: the data set's class names (what ``class_idx`` indexes).
        group_names: the data set's group names (what ``group_idx`` indexes).

    Raises:
        ValueError: unknown name, unknown key, or a bad value; the message says the fix.
    """
    name = cfg.get("name")
    if name not in BUILDERS:
        raise ValueError(
            f"unsupported weighting: {name!r}; choose from {sorted(BUILDERS)} "
            "(e.g. weighting=robust)"
        )
    builder, keys = BUILDERS[name]
    allowed = _COMMON_KEYS + keys
    unknown = [key for key in cfg if key not in allowed]
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for weighting {name!r}; allowed keys: {list(allowed)} "
            "(check the spelling)"
        )
    return builder(cfg, list(class_names), list(group_names))
