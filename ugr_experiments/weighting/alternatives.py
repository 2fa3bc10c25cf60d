"""Reweighting methods that researchers compare UGR against, as weighting functions ``F``.

Each one is a pmf over the items of the **global** batch (the loop hands every weighting the
all-gathered losses and labels, :func:`~ugr_experiments.weighting.pmf.batch_pmf`), written as
scores so that ``softmax(F)`` is exactly that pmf; so they combine with the paper's modes by
adding scores (``name: sum``), like those.

- :class:`CVaRWeighting`: ``1/k`` on the ``k = ceil(fraction * N)`` highest losses, 0
  elsewhere: the conditional value at risk at level ``fraction`` (Rockafellar & Uryasev,
  J. Risk 2000; Levy et al., NeurIPS 2020), the ``alpha -> inf`` limit of a robust tilt
  restricted to a fraction of the batch.
- :class:`GroupDROWeighting`: online group DRO (Sagawa et al., ICLR 2020, Algorithm 1):
  exponentiated-gradient group weights ``q``, a state kept in the checkpoint.
- :class:`TiltedGroupsWeighting`: hierarchical tilted ERM (Li et al., ICLR 2021, Eq. 4): a tilt
  ``t_in`` within each group and ``t_out`` across groups.

Groups are the items' classes (``groups: classes``, the default: ESC-50 categories, speakers,
synthetic classes) or their coarse groups (``groups: groups``: speech / environmental).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ugr_experiments.weighting.checks import DEFAULT_HEALTH_EVERY, check_choice, check_number
from ugr_experiments.weighting.functions import Progress, Weighting

__all__ = [
    "GROUPINGS",
    "CVaRWeighting",
    "GroupDROWeighting",
    "TiltedGroupsWeighting",
    "group_sums",
]

GROUPINGS = ("classes", "groups")


def group_sums(values: Tensor, index: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group sums of ``values`` and per-group item counts (as ``values``' dtype).

    Shape:
        values (N,), index (N,) -> (G,), (G,).
    """
    sums = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, index, values)
    counts.index_add_(0, index, torch.ones_like(values))
    return sums, counts


class CVaRWeighting(Weighting):
    """CVaR: weight ``1/k`` on the ``k = ceil(fraction * N)`` highest-loss items, 0 elsewhere.

    ``N`` is the number of items of the global batch. Ties at the ``k``-th loss are broken by
    position in the global batch (the earlier item is chosen), so the choice is deterministic
    and the same on every rank. ``fraction = 1`` is uniform weighting; ``ceil(fraction * N)``
    is at least 1, so a one-item batch gives that item all the weight. Scores are 0 for the
    chosen items and ``-inf`` elsewhere: ``softmax`` gives exactly ``1/k``.
    """

    def __init__(
        self, fraction: float, unit: str = "sources", health_every: int = DEFAULT_HEALTH_EVERY
    ) -> None:
        super().__init__(unit, health_every)
        self.fraction = check_number(
            "fraction", fraction, "in (0, 1]", "fraction=0.25", lambda f: 0 < f <= 1
        )

    def k(self, n_items: int) -> int:
        """How many items get weight in a batch of ``n_items``."""
        # Rounded first: 0.7 * 10 is 7.000000000000001 in floating point, and means 7.
        return max(1, math.ceil(round(self.fraction * n_items, 9)))

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        flat = loss.detach().reshape(-1)
        order = torch.sort(flat, descending=True, stable=True).indices  # ties: earlier first
        chosen = order[: self.k(flat.numel())]
        out = torch.full_like(flat, -math.inf)
        out[chosen] = 0.0
        return out.reshape(loss.shape)

    def _repr_fields(self) -> str:
        return f"fraction={self.fraction:g}"


class _Grouped(Weighting):
    """A weighting over groups of items: the classes (default) or the coarse groups."""

    def __init__(
        self,
        groups: str,
        class_names: Sequence[str],
        group_names: Sequence[str],
        unit: str,
        health_every: int,
    ) -> None:
        super().__init__(unit, health_every)
        self.groups = check_choice("groups", groups, GROUPINGS)
        self.names = list(class_names if self.groups == "classes" else group_names)

    def group_of(self, class_idx: Tensor, group_idx: Tensor) -> Tensor:
        """Each item's group index (into :attr:`names`), flattened.

        Shape:
            class_idx, group_idx (N...) -> (N,).
        """
        return (class_idx if self.groups == "classes" else group_idx).reshape(-1)


class GroupDROWeighting(_Grouped):
    """Online group DRO (Sagawa et al., ICLR 2020, Algorithm 1) over the items' groups.

    State: group weights ``q`` (uniform at start). Each step, for the groups present in the
    global batch, with ``Lbar_g`` the mean loss of group ``g``'s items::

        q_g <- q_g * exp(eta * Lbar_g), renormalised so that the present groups keep their
        total mass; groups absent from the batch keep their q_g unchanged (no evidence).

    (With every group present this is Sagawa's ``q <- q * exp(eta * L) / sum``.) Then item
    ``i`` of group ``g`` gets ``p_i = (q_g / n_g) / sum_{g' present} q_g'`` (``n_g``: items of
    ``g`` in the batch), so the batch loss is ``sum_g q_g Lbar_g`` over the present groups,
    renormalised. The update is skipped when a group mean is not finite (the step is skipped
    too). ``q`` is kept as ``log q`` in float64 (no underflow to 0), and saved in checkpoints.
    Sagawa's group-size adjustment ``C / sqrt(n_g)`` is not used.

    Scores: ``log q_g - log n_g``.
    """

    def __init__(
        self,
        eta: float,
        class_names: Sequence[str],
        group_names: Sequence[str],
        groups: str = "classes",
        unit: str = "sources",
        health_every: int = DEFAULT_HEALTH_EVERY,
    ) -> None:
        super().__init__(groups, class_names, group_names, unit, health_every)
        self.eta = check_number("eta", eta, ">= 0", "eta=0.002", lambda e: e >= 0)
        n = len(self.names)
        self.log_q = torch.full((n,), -math.log(n), dtype=torch.float64)

    @property
    def q(self) -> Tensor:
        """The group weights (sum to 1), float64."""
        return self.log_q.exp()

    def update(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> None:
        index = self.group_of(class_idx, group_idx).to(loss.device)
        sums, counts = group_sums(loss.detach().reshape(-1).double(), index, len(self.names))
        log_q = self.log_q.to(loss.device)
        present = counts > 0
        mean = sums / counts.clamp(min=1)
        tilted = torch.where(present, log_q + self.eta * mean, -math.inf)
        # Present groups keep their mass: log(sum_present q) + log softmax(tilted) over them.
        mass = torch.logsumexp(torch.where(present, log_q, -math.inf), 0)
        new = torch.where(present, mass + tilted - torch.logsumexp(tilted, 0), log_q)
        ok = torch.where(present, torch.isfinite(mean), True).all()  # no host sync
        self.log_q = torch.where(ok, new, log_q)

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        index = self.group_of(class_idx, group_idx).to(loss.device)
        _, counts = group_sums(loss.detach().reshape(-1).double(), index, len(self.names))
        log_q = self.log_q.to(loss.device)
        out = log_q[index] - counts[index].log()
        return out.to(loss.dtype).reshape(loss.shape)

    def state_dict(self) -> dict[str, Tensor]:
        return {"log_q": self.log_q.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        log_q = state.get("log_q")
        if log_q is None or tuple(log_q.shape) != tuple(self.log_q.shape) or len(state) != 1:
            raise ValueError(
                f"group DRO state {dict(state)!r} does not fit {len(self.names)} groups "
                f"({self.groups}: {self.names}): the checkpoint was written with other data or "
                "another weighting.groups"
            )
        self.log_q = log_q.to(torch.float64).clone()

    def diagnostics(self) -> dict[str, float]:
        values = self.q.tolist()  # one transfer
        return {f"q/{name}": v for name, v in zip(self.names, values, strict=True)}

    def _repr_fields(self) -> str:
        return f"eta={self.eta:g}, groups={self.groups!r}"


class TiltedGroupsWeighting(_Grouped):
    """Hierarchical tilted ERM (Li et al., "Tilted empirical risk minimization", ICLR 2021,
    Eq. 4): a tilt ``t_in`` within each group, ``t_out`` across groups.

    With ``n_g`` items of group ``g`` in the global batch (``N`` in all)::

        R_g = (1 / t_in) log( (1/n_g) sum_{i in g} exp(t_in L_i) )   (the mean when t_in = 0)
        J   = (1 / t_out) log( (1/N) sum_g n_g exp(t_out R_g) )

    whose gradient is ``sum_i p_i grad L_i`` with::

        p_i = [n_g exp(t_out R_g) / sum_g' n_g' exp(t_out R_g')]
              * [exp(t_in L_i) / sum_{j in g} exp(t_in L_j)]

    The group prior ``n_g / N`` is Li et al.'s: ``t_out = t_in = 0`` is uniform over items, and
    ``t_out = t_in = t`` is the flat tilt, i.e. robust weighting with ``alpha = t``. Positive
    tilts favour high losses (robustness), negative ones low losses (outlier resistance).

    Scores: ``t_out R_g + log n_g + t_in L_i - logsumexp_{j in g}(t_in L_j)``.
    """

    def __init__(
        self,
        t_in: float,
        t_out: float,
        class_names: Sequence[str],
        group_names: Sequence[str],
        groups: str = "classes",
        unit: str = "sources",
        health_every: int = DEFAULT_HEALTH_EVERY,
    ) -> None:
        super().__init__(groups, class_names, group_names, unit, health_every)
        self.t_in = check_number("t_in", t_in, "", "t_in=0.2")
        self.t_out = check_number("t_out", t_out, "", "t_out=0.2")

    def scores(
        self, loss: Tensor, class_idx: Tensor, group_idx: Tensor, progress: Progress
    ) -> Tensor:
        flat = loss.detach().reshape(-1).double()
        index = self.group_of(class_idx, group_idx).to(flat.device)
        n_groups = len(self.names)
        sums, counts = group_sums(flat, index, n_groups)
        n = counts[index]
        if self.t_in == 0:
            risk = (sums / counts.clamp(min=1))[index]  # R_g of each item's group
            within = -n.log()
        else:
            tilted = self.t_in * flat
            # logsumexp per group, shifted by the group's max so that exp never overflows
            top = torch.full_like(sums, -math.inf).scatter_reduce(0, index, tilted, "amax")
            shifted, _ = group_sums((tilted - top[index]).exp(), index, n_groups)
            lse = (top + shifted.clamp(min=1e-300).log())[index]
            risk = (lse - n.log()) / self.t_in
            within = tilted - lse
        out = self.t_out * risk + n.log() + within
        return out.to(loss.dtype).reshape(loss.shape)

    def _repr_fields(self) -> str:
        return f"t_in={self.t_in:g}, t_out={self.t_out:g}, groups={self.groups!r}"
