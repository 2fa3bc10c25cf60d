"""Unified gradient reweighting: weighting functions ``F`` and the batch pmf (PAPER.md 1, 3).

A training step turns per-item losses ``L`` into one scalar::

    loss, cls, grp = to_units(loss, class_idx, group_idx, weighting.unit)   # (N,) items
    p = pmf(weighting.scores(loss.detach(), cls, grp, progress))            # softmax(F), detached
    weighted_loss(loss, p, world_size).backward()                          # grad = sum_i p_i g_i

Items are the ``B * S`` (mixture, source) pairs (``unit="sources"``, the default) or the
``B`` mixtures (``unit="mixtures"``). The scale of ``F`` is the inverse temperature: there is
no separate one. Weighting functions only compute ``F``; they never see the softmax, so modes
combine by adding their scores (``name: sum``).

Config dicts (``conf/weighting/*.yaml``, plain dicts by the time they get here):

- ``uniform``: ``F = 0`` (ordinary training).
- ``robust``: ``F = alpha * L``, ``alpha >= 0`` (Eq. 5).
- ``curriculum``: ``F = beta(k) * L``, ``beta(0) = beta0 < 0`` annealed to exactly 0 (Eq. 6).
- ``class``: ``F = gamma[class of the target source]``.
- ``sum``: ``F`` = the sum of the ``terms``' scores.

All take ``unit`` (default ``sources``) and ``health_every`` (log the pmf's health every that
many steps, 0 = never; default 25).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BUILDERS",
    "ClassWeighting",
    "CurriculumWeighting",
    "Progress",
    "RobustWeighting",
    "SumWeighting",
    "UNITS",
    "UniformWeighting",
    "Weighting",
    "build_weighting",
    "curriculum_beta",
    "distributed_all_gather",
    "pmf",
    "pmf_health",
    "to_units",
    "weighted_loss",
]

UNITS = ("sources", "mixtures")
SHAPES = ("linear", "cosine", "exponential")
LENGTH_UNITS = ("steps", "epochs")
DEFAULT_HEALTH_EVERY = 25
# Exponential curriculum: |beta| ~ exp(-rate * k / length) before the rescaling to reach 0.
DEFAULT_EXP_RATE = 5.0

AllGather = Callable[[Tensor], list[Tensor]]


@dataclass(frozen=True)
class Progress:
    """Where training is: the global optimiser step and the epoch, both 0-based."""

    step: int
    epoch: int


# ---------------------------------------------------------------------------------------------
# Weighting functions
# ---------------------------------------------------------------------------------------------


class Weighting(ABC):
    """A weighting function ``F``: scores per item, turned into weights by :func:`pmf`.

    Attributes:
        unit: ``"sources"`` (``B * S`` items) or ``"mixtures"`` (``B`` items).
        health_every: log :func:`pmf_health` every that many steps (0 = never).
    """

    def __init__(self, unit: str = "sources", health_every: int = DEFAULT_HEALTH_EVERY) -> None:
        self.unit = _check_unit(unit)
        self.health_every = _check_health_every(health_every)

    @abstractmethod
    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        """The scores ``F`` of the items.

        Args:
            loss: per-item losses (detached here: the weights must carry no gradient).
            class_idx: class index of each item (into the data set's ``class_names``).
            group_idx: group index of each item (into the data set's ``group_names``).
            progress: the current step and epoch.

        Returns:
            ``F``, one score per item.

        Shape:
            loss, class_idx, group_idx (N...) -> (N...), the shape of ``loss``.
        """

    def _repr_fields(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._repr_fields()
        extra = f"{extra}, " if extra else ""
        return f"{type(self).__name__}({extra}unit={self.unit!r})"


class UniformWeighting(Weighting):
    """``F = 0``: every item gets ``1 / N``, i.e. ordinary training."""

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        return torch.zeros_like(loss.detach())


class RobustWeighting(Weighting):
    """Robust mode (PAPER.md Eq. 5): ``F = alpha * L``; high-loss items get more weight.

    ``alpha = 0`` is ordinary training; larger ``alpha`` lowers the temperature.
    """

    def __init__(
        self, alpha: float, unit: str = "sources", health_every: int = DEFAULT_HEALTH_EVERY
    ) -> None:
        super().__init__(unit, health_every)
        self.alpha = _number("alpha", alpha, ">= 0", "alpha=0.2 or alpha=1/15", lambda a: a >= 0)

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        return self.alpha * loss.detach()

    def _repr_fields(self) -> str:
        return f"alpha={self.alpha:g}"


def curriculum_beta(
    k: float, beta0: float, shape: str, length: int, rate: float = DEFAULT_EXP_RATE
) -> float:
    """The curriculum coefficient ``beta(k)``, with ``r = min(k / length, 1)``.

    - ``linear``: ``beta0 * (1 - r)``
    - ``cosine``: ``beta0 * (1 + cos(pi r)) / 2``
    - ``exponential``: ``beta0 * (exp(-rate r) - exp(-rate)) / (1 - exp(-rate))``, an
      exponential decay shifted and rescaled so that it starts at ``beta0`` and reaches 0
      at ``r = 1`` instead of only approaching it.

    All three give ``beta(0) = beta0`` and ``beta(k) = 0.0`` exactly for ``k >= length``,
    with ``|beta|`` non-increasing in between.

    Args:
        k: progress in the schedule's unit (steps or epochs).
        beta0: the initial value (negative: easy items first).
        shape: ``linear``, ``cosine`` or ``exponential``.
        length: the schedule's length in the same unit as ``k``.
        rate: decay rate of the exponential shape (ignored by the others).
    """
    if k >= length:
        return 0.0  # exact, whatever rounding the formulas would leave
    r = max(k, 0) / length
    if shape == "linear":
        return beta0 * (1.0 - r)
    if shape == "cosine":
        return beta0 * 0.5 * (1.0 + math.cos(math.pi * r))
    if shape == "exponential":
        floor = math.exp(-rate)
        return beta0 * (math.exp(-rate * r) - floor) / (1.0 - floor)
    raise ValueError(f"unsupported curriculum shape: {shape!r}; choose from {list(SHAPES)}")


class CurriculumWeighting(Weighting):
    """Curriculum mode (PAPER.md Eq. 6): ``F = beta(k) * L`` with ``beta`` from ``beta0 < 0``
    to 0.

    Early on, low-loss (easy) items get more weight; from ``k = length`` on, training is
    uniform. ``k`` is ``progress.step`` or ``progress.epoch`` (whole epochs: ``beta`` is
    constant within an epoch) depending on ``length_unit``. See :func:`curriculum_beta`.
    """

    def __init__(
        self,
        beta0: float,
        shape: str = "linear",
        length: int = 1,
        length_unit: str = "steps",
        rate: float = DEFAULT_EXP_RATE,
        unit: str = "sources",
        health_every: int = DEFAULT_HEALTH_EVERY,
    ) -> None:
        super().__init__(unit, health_every)
        self.beta0 = _number("beta0", beta0, "< 0", "beta0=-0.2", lambda b: b < 0)
        self.shape = _choice("shape", shape, SHAPES)
        self.length = _positive_int("length", length, "length=6")
        self.length_unit = _choice("length_unit", length_unit, LENGTH_UNITS)
        self.rate = _number("rate", rate, "> 0", "rate=5", lambda r: r > 0)

    def beta(self, progress: Progress) -> float:
        """``beta(k)`` at this point of training."""
        k = progress.step if self.length_unit == "steps" else progress.epoch
        return curriculum_beta(k, self.beta0, self.shape, self.length, self.rate)

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        return self.beta(progress) * loss.detach()

    def _repr_fields(self) -> str:
        return (
            f"beta0={self.beta0:g}, shape={self.shape!r}, length={self.length}, "
            f"length_unit={self.length_unit!r}"
        )


class ClassWeighting(Weighting):
    """Class biasing: ``F = gamma[class of the item's target source]``.

    ``gamma`` keys are class names or group names (e.g. ``speech``); a class key overrides
    the value of its group; classes covered by neither get 0. Only ``unit="sources"`` makes
    sense: a mixture holds sources of different classes.
    """

    def __init__(
        self,
        gamma: Mapping[str, float],
        class_names: Sequence[str],
        group_names: Sequence[str],
        unit: str = "sources",
        health_every: int = DEFAULT_HEALTH_EVERY,
    ) -> None:
        if _check_unit(unit) != "sources":
            raise ValueError(
                f"class weighting needs unit='sources', got unit={unit!r}: a mixture holds "
                "sources of different classes (set weighting.unit=sources)"
            )
        super().__init__(unit, health_every)
        self.gamma = _check_gamma(gamma, class_names, group_names)
        n_cls, n_grp = len(class_names), len(group_names)
        # Lookup tables: per class its own value where listed, else its group's value.
        self._class_value = torch.zeros(n_cls)
        self._class_set = torch.zeros(n_cls, dtype=torch.bool)
        self._group_value = torch.zeros(n_grp)
        for key, value in self.gamma.items():
            if key in class_names:
                self._class_value[list(class_names).index(key)] = value
                self._class_set[list(class_names).index(key)] = True
            if key in group_names:
                self._group_value[list(group_names).index(key)] = value
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def _tables_on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        # Copied once per device, not every step (a host-to-device copy would sync).
        if device not in self._tables:
            self._tables[device] = (
                self._class_value.to(device),
                self._class_set.to(device),
                self._group_value.to(device),
            )
        return self._tables[device]

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        class_value, class_set, group_value = self._tables_on(loss.device)
        out = torch.where(class_set[class_idx], class_value[class_idx], group_value[group_idx])
        return out.to(loss.dtype)

    def _repr_fields(self) -> str:
        return f"gamma={self.gamma}"


class SumWeighting(Weighting):
    """``F = sum_t F_t``: combined modes, e.g. class biasing plus robust weighting."""

    def __init__(
        self,
        terms: Sequence[Weighting],
        unit: str = "sources",
        health_every: int = DEFAULT_HEALTH_EVERY,
    ) -> None:
        super().__init__(unit, health_every)
        if not terms:
            raise ValueError("sum weighting needs at least one term in `terms`")
        for term in terms:
            if term.unit != self.unit:
                raise ValueError(
                    f"every term of a sum weighting must use unit={self.unit!r}, got "
                    f"{term!r}; drop the term's `unit` key (terms inherit the sum's)"
                )
        self.terms = list(terms)

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        total = self.terms[0].scores(loss, class_idx, group_idx, progress)
        for term in self.terms[1:]:
            total = total + term.scores(loss, class_idx, group_idx, progress)
        return total

    def _repr_fields(self) -> str:
        return f"terms={self.terms}"


# ---------------------------------------------------------------------------------------------
# Validation helpers: every message names the key, the value, what is allowed and a fix.
# ---------------------------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
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


def _number(
    key: str, value: Any, rule: str, example: str, ok: Callable[[float], bool] = lambda x: True
) -> float:
    number = _as_float(value)
    if number is None or not ok(number):
        rule = f" {rule}" if rule else ""
        raise ValueError(f"{key} must be a number{rule}, got {value!r} (e.g. {example})")
    return number


def _positive_int(key: str, value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be an integer > 0, got {value!r} (e.g. {example})")
    return int(value)


def _choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(
            f"unsupported {key}: {value!r}; choose from {list(allowed)} (e.g. {key}={allowed[0]})"
        )
    return str(value)


def _check_unit(unit: Any) -> str:
    return _choice("unit", unit, UNITS)


def _check_health_every(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"health_every must be an integer >= 0 (0 = never), got {value!r} "
            "(e.g. health_every=25)"
        )
    return int(value)


def _check_gamma(
    gamma: Any, class_names: Sequence[str], group_names: Sequence[str]
) -> dict[str, float]:
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
        checked[str(key)] = _number(f"gamma[{key}]", value, "", f"gamma.{key}=3.0")
    return checked


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# From scores to weights to one loss
# ---------------------------------------------------------------------------------------------


def to_units(
    loss: Tensor, class_idx: Tensor, group_idx: Tensor, unit: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-source losses and labels as the items the pmf is taken over.

    ``sources``: returned unchanged. ``mixtures``: the loss of a mixture is the mean over its
    sources, and its class and group are those of its first source (labels only matter for
    health logging in this unit: class weighting requires ``sources``).

    Shape:
        loss, class_idx, group_idx (B, S) -> (B, S) for sources, (B,) for mixtures.
    """
    _check_unit(unit)
    if unit == "sources":
        return loss, class_idx, group_idx
    return loss.mean(dim=1), class_idx[:, 0], group_idx[:, 0]


def pmf(scores: Tensor, all_gather: AllGather | None = None, rank: int = 0) -> Tensor:
    """``p = softmax(F)`` over every item of the (global) batch, detached.

    Under data parallelism each rank holds a slice of the batch; the softmax must run over
    the whole of it. ``all_gather`` returns every rank's (detached) scores, this rank's at
    index ``rank`` (:func:`distributed_all_gather` wraps ``torch.distributed``); the pmf is
    normalised once over their concatenation and this rank's slice is returned. Slices may
    differ in size here, but ``torch.distributed.all_gather`` needs equal ones, so the global
    batch must divide evenly by the world size under DDP.

    The softmax subtracts the maximum first, so large scores (e.g. ``alpha * 1e4``) stay
    finite. Half-precision scores are normalised in float32.

    Args:
        scores: the weighting function's scores ``F`` of this rank's items.
        all_gather: None for a single process.
        rank: this process's index in the list ``all_gather`` returns.

    Returns:
        This rank's weights: non-negative, summing to 1 over all ranks, no gradient.

    Shape:
        scores (N...) -> (N...).
    """
    local = scores.detach()
    if local.dtype in (torch.float16, torch.bfloat16):
        local = local.float()
    if all_gather is None:
        return torch.softmax(local.reshape(-1), dim=0).reshape(local.shape)
    parts = [part.detach().to(local.dtype).reshape(-1) for part in all_gather(local)]
    if not 0 <= rank < len(parts) or parts[rank].numel() != local.numel():
        raise ValueError(
            f"all_gather returned {len(parts)} parts of sizes {[p.numel() for p in parts]}; "
            f"rank {rank} needs its own {local.numel()} scores at index {rank} "
            "(pass this process's rank)"
        )
    offset = sum(part.numel() for part in parts[:rank])
    p_all = torch.softmax(torch.cat(parts), dim=0)
    return p_all[offset : offset + local.numel()].reshape(local.shape)


def distributed_all_gather(scores: Tensor) -> list[Tensor]:
    """``all_gather`` for :func:`pmf` over the default ``torch.distributed`` process group.

    Every rank must pass scores of the same shape (an equal share of the global batch).

    Shape:
        scores (N...) -> world_size tensors (N...).
    """
    import torch.distributed as dist

    parts = [torch.empty_like(scores) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, scores.detach().contiguous())
    return parts


def weighted_loss(loss: Tensor, p: Tensor, world_size: int = 1) -> Tensor:
    """``world_size * sum_i p_i * L_i``: its gradient is ``sum_i p_i grad L_i``.

    ``p`` is detached again here, so the weights can never be differentiated. Under DDP,
    ``p`` sums to 1 over all ranks and DDP *averages* the ranks' gradients, hence the factor
    ``world_size``: the averaged gradient is then the global ``sum_i p_i g_i``.

    Shape:
        loss (N...), p (N...) -> scalar.
    """
    if loss.shape != p.shape:
        raise ValueError(
            f"loss {tuple(loss.shape)} and p {tuple(p.shape)} must have the same shape; "
            "compute p from scores of the same items (see to_units)"
        )
    return world_size * (p.detach() * loss).sum()


def pmf_health(p: Tensor, group_idx: Tensor, group_names: list[str]) -> dict[str, float]:
    """Diagnostics of a pmf: how concentrated it is and where its mass goes.

    - ``max_weight``: the largest ``p_i`` (``1 / N`` when uniform);
    - ``entropy``: ``-sum p_i log p_i`` in nats (``log N`` when uniform, 0 for one item);
    - ``ess``: effective sample size ``1 / sum p_i^2`` (``N`` when uniform);
    - ``mass/<group>``: the total weight of the items of each group.

    Pass the global pmf for exact numbers under DDP (a rank's slice sums to less than 1).
    Returns Python floats: this synchronises with the device, so call it every
    ``health_every`` steps only.

    Shape:
        p (N...), group_idx (N...) -> dict.
    """
    p = p.detach().reshape(-1).double()
    groups = group_idx.reshape(-1).to(p.device)
    mass = torch.zeros(len(group_names), dtype=p.dtype, device=p.device)
    mass.index_add_(0, groups, p)
    stats = torch.stack(
        [p.max(), -torch.special.xlogy(p, p).sum(), 1.0 / (p * p).sum()]  # xlogy: 0 log 0 = 0
    )
    values = torch.cat([stats, mass]).tolist()  # one transfer for everything
    keys = ["max_weight", "entropy", "ess"] + [f"mass/{name}" for name in group_names]
    return dict(zip(keys, values, strict=True))
