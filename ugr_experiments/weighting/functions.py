"""The weighting functions ``F``: one score per item, from its loss, class and progress.

A weighting function only computes ``F``; :mod:`ugr_experiments.weighting.pmf` turns the
scores into weights. Modes combine by adding their scores (:class:`SumWeighting`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ugr_experiments.weighting.checks import (
    DEFAULT_EXP_RATE,
    DEFAULT_HEALTH_EVERY,
    LENGTH_UNITS,
    SHAPES,
    check_choice,
    check_gamma,
    check_health_every,
    check_number,
    check_positive_int,
    check_unit,
)

__all__ = [
    "ClassWeighting",
    "CurriculumWeighting",
    "Progress",
    "RobustWeighting",
    "SumWeighting",
    "UniformWeighting",
    "Weighting",
    "curriculum_beta",
]


@dataclass(frozen=True)
class Progress:
    """Where training is: the global optimiser step and the epoch, both 0-based."""

    step: int
    epoch: int


class Weighting(ABC):
    """A weighting function ``F``: scores per item, turned into weights by :func:`pmf`.

    Attributes:
        unit: ``"sources"`` (``B * S`` items) or ``"mixtures"`` (``B`` items).
        health_every: log :func:`pmf_health` every that many steps (0 = never).
    """

    def __init__(self, unit: str = "sources", health_every: int = DEFAULT_HEALTH_EVERY) -> None:
        self.unit = check_unit(unit)
        self.health_every = check_health_every(health_every)

    @abstractmethod
    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        """The scores ``F`` of the items.

        Args:
            loss: per-item losses (detached here: the weights must carry no gradient); in
                training, every item of the global batch (all ranks', in rank order).
            class_idx: class index of each item (into the data set's ``class_names``).
            group_idx: group index of each item (into the data set's ``group_names``).
            progress: the current step and epoch.

        Returns:
            ``F``, one score per item.

        Shape:
            loss, class_idx, group_idx (N...) -> (N...), the shape of ``loss``.
        """

    def update(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> None:
        """Advance the weighting's state by one step (before :meth:`scores`); stateless: nothing.

        Called once per training step with the items of the whole global batch (identical on
        every DDP rank, so a state computed from them is identical too). Same arguments as
        :meth:`scores`.
        """
        return None

    def state_dict(self) -> dict[str, Tensor]:
        """The state a checkpoint must hold to resume exactly (tensors only; stateless: {})."""
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Put back what :meth:`state_dict` returned (a stateless weighting accepts only {})."""
        if state:
            raise ValueError(
                f"{type(self).__name__} has no state, but the checkpoint holds {sorted(state)}: "
                "it was written with another weighting (check weighting.name)"
            )

    def diagnostics(self) -> dict[str, float]:
        """Scalars of the state to log with the pmf's health (e.g. group DRO's ``q/<group>``).

        Returns Python floats (a host sync): called every ``health_every`` steps only.
        """
        return {}

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
        self.alpha = check_number(
            "alpha", alpha, ">= 0", "alpha=0.2 or alpha=1/15", lambda a: a >= 0
        )

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
        self.beta0 = check_number("beta0", beta0, "< 0", "beta0=-0.2", lambda b: b < 0)
        self.shape = check_choice("shape", shape, SHAPES)
        self.length = check_positive_int("length", length, "length=6")
        self.length_unit = check_choice("length_unit", length_unit, LENGTH_UNITS)
        self.rate = check_number("rate", rate, "> 0", "rate=5", lambda r: r > 0)

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
        if check_unit(unit) != "sources":
            raise ValueError(
                f"class weighting needs unit='sources', got unit={unit!r}: a mixture holds "
                "sources of different classes (set weighting.unit=sources)"
            )
        super().__init__(unit, health_every)
        self.gamma = check_gamma(gamma, class_names, group_names)
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

    def update(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> None:
        for term in self.terms:
            term.update(loss, class_idx, group_idx, progress)

    def state_dict(self) -> dict[str, Tensor]:
        """The terms' states, keyed ``<term index>.<key>``."""
        return {f"{i}.{k}": v for i, t in enumerate(self.terms) for k, v in t.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        for i, term in enumerate(self.terms):
            prefix = f"{i}."
            term.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def diagnostics(self) -> dict[str, float]:
        return {k: v for term in self.terms for k, v in term.diagnostics().items()}

    def _repr_fields(self) -> str:
        return f"terms={self.terms}"
