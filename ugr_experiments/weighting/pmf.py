"""From scores to weights to one loss: the batch pmf ``p = softmax(F)`` (PAPER.md 1, 3).

:func:`to_units` picks the items, :func:`batch_pmf` (the train step's) gathers the items of the
whole (global) batch, lets the weighting update its state and score them, and normalises the
scores with :func:`pmf`; :func:`weighted_loss` makes the scalar whose gradient is
``sum_i p_i g_i``, and :func:`pmf_health` says how concentrated the weights are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ugr_experiments.weighting.checks import check_unit

if TYPE_CHECKING:
    from ugr_experiments.weighting.functions import Progress, Weighting

__all__ = [
    "AllGather",
    "batch_pmf",
    "distributed_all_gather",
    "gather_items",
    "pmf",
    "pmf_health",
    "to_units",
    "weighted_loss",
]

AllGather = Callable[[Tensor], list[Tensor]]


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
    check_unit(unit)
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


def gather_items(
    loss: Tensor,
    class_idx: Tensor,
    group_idx: Tensor,
    all_gather: AllGather | None = None,
    rank: int = 0,
) -> tuple[Tensor, Tensor, Tensor, slice]:
    """The detached losses and labels of every item of the global batch, in rank order.

    Under data parallelism the three are packed into one float64 tensor (exact for float32
    losses and integer labels) and gathered in one collective, so every rank holds the same
    global batch.

    Returns:
        ``(loss, class_idx, group_idx, mine)``: flat global tensors and the slice of them that
        is this rank's items.

    Shape:
        loss, class_idx, group_idx (N...) -> (W N,) each.
    """
    local = loss.detach()
    if local.dtype in (torch.float16, torch.bfloat16):
        local = local.float()
    flat = (local.reshape(-1), class_idx.reshape(-1), group_idx.reshape(-1))
    n = flat[0].numel()
    if all_gather is None:
        return (*flat, slice(0, n))
    packed = torch.stack([x.to(local.device, torch.float64) for x in flat])  # (3, N)
    parts = all_gather(packed)
    if not 0 <= rank < len(parts) or parts[rank].shape != packed.shape:
        raise ValueError(
            f"all_gather returned {len(parts)} parts of shapes {[tuple(p.shape) for p in parts]};"
            f" rank {rank} needs its own {tuple(packed.shape)} at index {rank} "
            "(pass this process's rank)"
        )
    offset = sum(part.shape[1] for part in parts[:rank])
    full = torch.cat([part.to(local.device) for part in parts], dim=1)
    labels = full[1:].long()
    return full[0].to(local.dtype), labels[0], labels[1], slice(offset, offset + n)


def batch_pmf(
    weighting: Weighting,
    loss: Tensor,
    class_idx: Tensor,
    group_idx: Tensor,
    progress: Progress,
    all_gather: AllGather | None = None,
    rank: int = 0,
) -> Tensor:
    """This rank's weights: ``softmax(F)`` over the whole global batch, detached.

    The weighting sees every item of the global batch (so a choice such as CVaR's top ``k``,
    or group DRO's group means, is the global one): :meth:`Weighting.update` advances its
    state once (identical on every rank), then :meth:`Weighting.scores` scores the items.

    Shape:
        loss, class_idx, group_idx (N...) -> (N...).
    """
    g_loss, g_class, g_group, mine = gather_items(loss, class_idx, group_idx, all_gather, rank)
    weighting.update(g_loss, g_class, g_group, progress)
    p = pmf(weighting.scores(g_loss, g_class, g_group, progress))
    return p[mine].reshape(loss.shape)


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
