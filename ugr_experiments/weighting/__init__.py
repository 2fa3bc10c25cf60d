"""Unified gradient reweighting: weighting functions ``F`` and the batch pmf (PAPER.md 1, 3).

A training step turns per-item losses ``L`` into one scalar::

    loss, cls, grp = to_units(loss, class_idx, group_idx, weighting.unit)   # (N,) items
    p = batch_pmf(weighting, loss.detach(), cls, grp, progress)             # softmax(F), detached
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
- ``cvar``: ``1/k`` on the ``k = ceil(fraction * N)`` highest losses, 0 elsewhere.
- ``group_dro``: online group DRO, ``p_i = q_g / n_g`` with ``q`` updated every step (state).
- ``tilted_groups``: hierarchical tilted ERM, tilts ``t_in`` within and ``t_out`` across groups.
- ``sum``: ``F`` = the sum of the ``terms``' scores.

The methods after ``class`` are not the paper's: they are what UGR is compared against
(:mod:`~ugr_experiments.weighting.alternatives`). A weighting sees the items of the whole
global batch (all DDP ranks'); a stateful one (``group_dro``) advances in
:meth:`Weighting.update` and is saved in checkpoints (``state_dict`` / ``load_state_dict``).

All take ``unit`` (default ``sources``) and ``health_every`` (log the pmf's health every that
many steps, 0 = never; default 25).

The package: :mod:`~ugr_experiments.weighting.functions` (the functions ``F``),
:mod:`~ugr_experiments.weighting.pmf` (scores to weights to one loss),
:mod:`~ugr_experiments.weighting.build` (config dict to weighting) and
:mod:`~ugr_experiments.weighting.checks` (allowed values, checks of one value).
"""

from __future__ import annotations

from ugr_experiments.weighting.alternatives import (
    GROUPINGS,
    CVaRWeighting,
    GroupDROWeighting,
    TiltedGroupsWeighting,
)
from ugr_experiments.weighting.build import BUILDERS, build_weighting
from ugr_experiments.weighting.checks import (
    DEFAULT_EXP_RATE,
    DEFAULT_HEALTH_EVERY,
    LENGTH_UNITS,
    SHAPES,
    UNITS,
)
from ugr_experiments.weighting.functions import (
    ClassWeighting,
    CurriculumWeighting,
    Progress,
    RobustWeighting,
    SumWeighting,
    UniformWeighting,
    Weighting,
    curriculum_beta,
)
from ugr_experiments.weighting.pmf import (
    AllGather,
    batch_pmf,
    distributed_all_gather,
    gather_items,
    pmf,
    pmf_health,
    to_units,
    weighted_loss,
)

__all__ = [
    "AllGather",
    "BUILDERS",
    "CVaRWeighting",
    "ClassWeighting",
    "CurriculumWeighting",
    "DEFAULT_EXP_RATE",
    "DEFAULT_HEALTH_EVERY",
    "GROUPINGS",
    "GroupDROWeighting",
    "TiltedGroupsWeighting",
    "LENGTH_UNITS",
    "Progress",
    "RobustWeighting",
    "SHAPES",
    "SumWeighting",
    "UNITS",
    "UniformWeighting",
    "Weighting",
    "batch_pmf",
    "build_weighting",
    "curriculum_beta",
    "distributed_all_gather",
    "gather_items",
    "pmf",
    "pmf_health",
    "to_units",
    "weighted_loss",
]
