"""SI-SDR, permutation-invariant alignment and the per-source training loss (PAPER.md 2).

Nothing in this module reduces over the batch: the training loop is the only place where
per-item losses are combined, with the UGR weights (``weighting.py``). The conventions:

- ``pairwise[b, i, j]`` is the SI-SDR of estimate ``i`` against reference ``j``;
- ``perm[b, j]`` is the estimate assigned to reference ``j``, so the aligned estimate is
  ``est[b, perm[b, j]]`` and every per-source output is in reference order.

SI-SDR is computed in float32 at least: under bf16/fp16 autocast the energies of a few
thousand samples would otherwise lose most of their digits.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "neg_sisdri",
    "pairwise_si_sdr",
    "pit_align",
    "pit_permutations",
    "si_sdr",
    "sisdri",
]


def _at_least_float32(x: Tensor) -> Tensor:
    """Half-precision inputs are promoted; float32/float64 are kept as they are."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def si_sdr(est: Tensor, ref: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019).

    Both signals are made zero-mean, then ``s_t = <est, ref> / (<ref, ref> + eps) * ref``,
    ``e = est - s_t`` and ``SI-SDR = 10 log10((|s_t|^2 + eps) / (|e|^2 + eps))``. The
    epsilons keep it finite (and differentiable) for silent inputs: two all-zero signals give
    0 dB.

    Args:
        est: estimated signals.
        ref: reference signals; broadcast against ``est`` over the leading axes.
        eps: stabiliser added to the reference energy, the target energy and the error energy.

    Returns:
        SI-SDR in dB, one value per signal pair.

    Shape:
        est (..., T), ref (..., T) -> (...).
    """
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(
            f"si_sdr needs signals of the same length, got est {tuple(est.shape)} and ref "
            f"{tuple(ref.shape)}; crop or pad the estimate to the reference length"
        )
    est = _at_least_float32(est)
    ref = _at_least_float32(ref)
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / ((ref * ref).sum(dim=-1, keepdim=True) + eps)
    target = scale * ref
    error = est - target
    target_energy = (target * target).sum(dim=-1)
    error_energy = (error * error).sum(dim=-1)
    return 10.0 * torch.log10((target_energy + eps) / (error_energy + eps))


def _check_sources(est: Tensor, ref: Tensor) -> None:
    if est.dim() != 3 or est.shape != ref.shape:
        raise ValueError(
            f"expected est and ref of the same shape (B, S, T), got est {tuple(est.shape)} and "
            f"ref {tuple(ref.shape)}; the model must output one signal per reference source"
        )


def pairwise_si_sdr(est: Tensor, ref: Tensor, eps: float = 1e-8) -> Tensor:
    """SI-SDR of every estimate against every reference of the same mixture, in one pass.

    Args:
        est: estimated sources.
        ref: reference sources.
        eps: see :func:`si_sdr`.

    Returns:
        ``pairwise[b, i, j] = si_sdr(est[b, i], ref[b, j])``.

    Shape:
        est (B, S, T), ref (B, S, T) -> (B, S_est, S_ref).
    """
    _check_sources(est, ref)
    # Broadcasting (B, S, 1, T) against (B, 1, S, T) evaluates all S*S pairs at once and
    # uses exactly the arithmetic of si_sdr (no expanded-energy shortcut that would lose
    # precision for near-perfect estimates).
    return si_sdr(est.unsqueeze(2), ref.unsqueeze(1), eps=eps)


@lru_cache(maxsize=16)
def _permutation_tuples(n: int) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.permutations(range(n)))


def pit_permutations(n: int) -> Tensor:
    """All permutations of ``range(n)`` in lexicographic order (the identity first).

    Args:
        n: number of sources, at least 1.

    Returns:
        ``perms[k]`` is the k-th permutation, as int64.

    Shape:
        (n!, n).
    """
    if n < 1:
        raise ValueError(f"pit_permutations needs n >= 1 sources, got {n}")
    if math.factorial(n) > 40320:
        # 8! assignments are still cheap; beyond that enumeration is the wrong algorithm.
        raise ValueError(
            f"pit_permutations enumerates n! assignments, too many for n={n}; use at most 8 "
            "sources or a Hungarian-algorithm alignment"
        )
    return torch.tensor(_permutation_tuples(n), dtype=torch.long)


def _best_permutation(pairwise: Tensor) -> Tensor:
    """The assignment maximising the mean SI-SDR over references, per mixture.

    Ties go to the permutation that comes first lexicographically (the identity if it ties).

    Shape:
        pairwise (B, S, S) -> perm (B, S), ``perm[b, j]`` = estimate assigned to reference j.
    """
    n_src = pairwise.shape[-1]
    perms = pit_permutations(n_src).to(pairwise.device)  # (P, S)
    refs = torch.arange(n_src, device=pairwise.device)
    # scores[b, k, j] = pairwise[b, perms[k, j], j]: read from the matrix, never recomputed.
    scores = pairwise[:, perms, refs]  # (B, P, S)
    best = scores.mean(dim=-1).argmax(dim=-1)  # (B,)
    return perms[best]


def _gather_sources(x: Tensor, perm: Tensor) -> Tensor:
    """``out[b, j] = x[b, perm[b, j]]``.

    Shape:
        x (B, S, ...), perm (B, S) -> (B, S, ...).
    """
    index = perm.reshape(perm.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return torch.gather(x, 1, index)


def pit_align(est: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder the estimates of each mixture to best match its references (PIT).

    The permutation maximises the mean SI-SDR over sources; it is found by enumerating the
    permutations over the pairwise SI-SDR matrix, for any number of sources. The search does
    not track gradients; the aligned estimate does (it is a gather of ``est``).

    Args:
        est: estimated sources, in the model's arbitrary order.
        ref: reference sources.

    Returns:
        ``(aligned, perm)``: ``aligned[b, j] = est[b, perm[b, j]]`` matches ``ref[b, j]``.

    Shape:
        est (B, S, T), ref (B, S, T) -> aligned (B, S, T), perm (B, S) int64.
    """
    _check_sources(est, ref)
    with torch.no_grad():
        perm = _best_permutation(pairwise_si_sdr(est, ref))
    return _gather_sources(est, perm), perm


def sisdri(est: Tensor, ref: Tensor, mix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SI-SDR of the PIT-aligned estimates and of the mixture, per source of each example.

    The improvement is ``sisdr - input_sisdr``. The mixture baseline is the SI-SDR of *this*
    example's mixture against each of its references (never a batch average, which would
    shift every example by the batch's mean and break percentile tables).

    Args:
        est: estimated sources.
        ref: reference sources.
        mix: the mixtures the estimates were computed from.

    Returns:
        ``(sisdr, input_sisdr, perm)``: the SI-SDR of the aligned estimates (differentiable
        with respect to ``est``), ``SI-SDR(mix[b], ref[b, j])`` (no gradient is needed: it
        does not depend on the model) and the permutation of :func:`pit_align`.

    Shape:
        est (B, S, T), ref (B, S, T), mix (B, T) -> (B, S), (B, S), (B, S) int64.
    """
    _check_sources(est, ref)
    if mix.shape != (ref.shape[0], ref.shape[-1]):
        raise ValueError(
            f"expected mix of shape (B, T) = {(ref.shape[0], ref.shape[-1])}, got "
            f"{tuple(mix.shape)}; pass the mixture batch, not one mixture or the sources"
        )
    pairwise = pairwise_si_sdr(est, ref)  # (B, S, S), with gradient
    perm = _best_permutation(pairwise.detach())
    # Reading the aligned values from the pairwise matrix avoids a second SI-SDR pass.
    sisdr = torch.gather(pairwise, 1, perm.unsqueeze(1)).squeeze(1)  # (B, S)
    with torch.no_grad():
        input_sisdr = si_sdr(mix.unsqueeze(1), ref)  # (B, S)
    return sisdr, input_sisdr, perm


def neg_sisdri(est: Tensor, ref: Tensor, mix: Tensor) -> Tensor:
    """The per-source training loss ``-(SI-SDR(aligned est, ref) - SI-SDR(mix, ref))``.

    The baseline is a per-example constant, so the gradient is that of ``-SI-SDR``; it makes
    the loss (and the robust/curriculum scores computed from it) comparable across mixtures
    of different difficulty.

    Args:
        est: estimated sources.
        ref: reference sources.
        mix: the mixtures.

    Returns:
        The loss of every source of every example, unreduced.

    Shape:
        est (B, S, T), ref (B, S, T), mix (B, T) -> (B, S).
    """
    sisdr, input_sisdr, _ = sisdri(est, ref, mix)
    return -(sisdr - input_sisdr)
