"""SI-SDR, PIT and the per-source loss against hand values and independent formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ugr_experiments.losses import (
    neg_sisdri,
    pairwise_si_sdr,
    pit_align,
    pit_permutations,
    si_sdr,
    sisdri,
)


def numpy_si_sdr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> float:
    """The definition written out for one pair of 1-D signals, in float64."""
    est = est - est.mean()
    ref = ref - ref.mean()
    target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
    error = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(error, error) + eps)))


def test_si_sdr_hand_value() -> None:
    # est = 2 ref + n with n orthogonal to ref: |s_t|^2 = 4 * 4 = 16, |e|^2 = |n|^2 = 4.
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    noise = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    value = si_sdr(2 * ref + noise, ref)
    assert value.item() == pytest.approx(10 * math.log10(16 / 4), abs=1e-6)  # 6.0206 dB


def test_si_sdr_removes_the_mean() -> None:
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    noise = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    value = si_sdr(2 * ref + noise + 5.0, ref - 3.0)
    assert value.item() == pytest.approx(10 * math.log10(4.0), abs=1e-6)


def test_si_sdr_perfect_estimate_hits_the_epsilon_ceiling() -> None:
    # e = 0 exactly: 10 log10((|s|^2 + eps) / eps) with |s|^2 = 4.
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    value = si_sdr(-0.5 * ref, ref)
    assert value.item() == pytest.approx(10 * math.log10((1.0 + 1e-8) / 1e-8), rel=1e-9)


def test_si_sdr_matches_numpy_formula_with_leading_axes() -> None:
    gen = torch.Generator().manual_seed(0)
    est = torch.randn(2, 3, 50, generator=gen, dtype=torch.float64)
    ref = torch.randn(2, 3, 50, generator=gen, dtype=torch.float64)
    got = si_sdr(est, ref)
    assert got.shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):
        expected = numpy_si_sdr(est[i, j].numpy(), ref[i, j].numpy())
        assert got[i, j].item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("scale", [0.01, 0.5, 7.0, -3.0])
def test_si_sdr_is_scale_invariant(scale: float) -> None:
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(4, 200, generator=gen, dtype=torch.float64)
    est = ref + 0.3 * torch.randn(4, 200, generator=gen, dtype=torch.float64)
    # Exact without the stabiliser; a negative scale flips the projection but not its energy.
    base = si_sdr(est, ref, eps=0.0)
    torch.testing.assert_close(si_sdr(scale * est, ref, eps=0.0), base, atol=1e-9, rtol=0)
    torch.testing.assert_close(si_sdr(est, abs(scale) * ref, eps=0.0), base, atol=1e-9, rtol=0)
    # The default eps only matters far below these energies.
    torch.testing.assert_close(si_sdr(scale * est, ref), base, atol=1e-3, rtol=0)


def test_si_sdr_finite_for_silence_with_finite_gradient() -> None:
    est = torch.zeros(2, 16, requires_grad=True)
    ref = torch.zeros(2, 16)
    value = si_sdr(est, ref)
    assert torch.equal(value, torch.zeros(2))  # 10 log10(eps / eps)
    value.sum().backward()
    assert torch.isfinite(est.grad).all()


def test_si_sdr_promotes_half_precision() -> None:
    gen = torch.Generator().manual_seed(2)
    ref = torch.randn(3, 400, generator=gen)
    est = ref + 0.5 * torch.randn(3, 400, generator=gen)
    got = si_sdr(est.bfloat16(), ref.bfloat16())
    assert got.dtype == torch.float32
    expected = si_sdr(est.bfloat16().float(), ref.bfloat16().float())
    torch.testing.assert_close(got, expected)


def test_si_sdr_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        si_sdr(torch.zeros(10), torch.zeros(11))


def test_pairwise_matches_item_by_item() -> None:
    gen = torch.Generator().manual_seed(3)
    est = torch.randn(2, 3, 40, generator=gen, dtype=torch.float64)
    ref = torch.randn(2, 3, 40, generator=gen, dtype=torch.float64)
    pair = pairwise_si_sdr(est, ref)
    assert pair.shape == (2, 3, 3)
    for b, i, j in itertools.product(range(2), range(3), range(3)):
        expected = numpy_si_sdr(est[b, i].numpy(), ref[b, j].numpy())
        assert pair[b, i, j].item() == pytest.approx(expected, abs=1e-9)


def test_pit_permutations_lists_every_permutation_in_order() -> None:
    perms = pit_permutations(3)
    assert perms.dtype == torch.long
    assert perms.tolist() == [list(p) for p in itertools.permutations(range(3))]
    assert pit_permutations(1).tolist() == [[0]]
    with pytest.raises(ValueError, match="n >= 1"):
        pit_permutations(0)


def test_pit_two_sources_swaps_when_needed() -> None:
    gen = torch.Generator().manual_seed(4)
    ref = torch.randn(2, 2, 100, generator=gen)
    noise = 0.1 * torch.randn(2, 2, 100, generator=gen)
    est = ref + noise
    est[0] = est[0].flip(0)  # example 0 swapped, example 1 in order
    aligned, perm = pit_align(est, ref)
    assert perm.tolist() == [[1, 0], [0, 1]]
    torch.testing.assert_close(aligned[0], (ref + noise)[0])
    torch.testing.assert_close(aligned[1], est[1])


def test_pit_three_sources_recovers_random_permutations() -> None:
    gen = torch.Generator().manual_seed(5)
    ref = torch.randn(4, 3, 120, generator=gen)
    shuffles = [[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]]
    est = torch.stack([ref[b, shuffles[b]] for b in range(4)]) + 0.05 * torch.randn(
        4, 3, 120, generator=gen
    )
    aligned, perm = pit_align(est, ref)
    # est[b, i] = ref[b, shuffles[b][i]]: reference j sits at estimate shuffles[b].index(j).
    expected = [[s.index(j) for j in range(3)] for s in shuffles]
    assert perm.tolist() == expected
    for b in range(4):
        torch.testing.assert_close(aligned[b], est[b, expected[b]])


def test_pit_maximises_mean_si_sdr_against_brute_force() -> None:
    # Noisy, mixed-up estimates where a greedy per-reference choice can be wrong.
    gen = torch.Generator().manual_seed(6)
    ref = torch.randn(6, 3, 60, generator=gen, dtype=torch.float64)
    mixing = torch.rand(6, 3, 3, generator=gen, dtype=torch.float64)
    est = mixing @ ref + 0.5 * torch.randn(6, 3, 60, generator=gen, dtype=torch.float64)
    _, perm = pit_align(est, ref)
    for b in range(6):
        best = max(
            itertools.permutations(range(3)),
            key=lambda p, b=b: np.mean(
                [numpy_si_sdr(est[b, p[j]].numpy(), ref[b, j].numpy()) for j in range(3)]
            ),
        )
        assert perm[b].tolist() == list(best)


def test_sisdri_per_example_baseline() -> None:
    gen = torch.Generator().manual_seed(7)
    ref = torch.randn(3, 2, 80, generator=gen, dtype=torch.float64)
    ref[1, 0] *= 4.0  # example 1 has a dominant source: its baselines differ from the others
    mix = ref.sum(1)
    est = ref.flip(1) + 0.2 * torch.randn(3, 2, 80, generator=gen, dtype=torch.float64)
    sisdr, input_sisdr, perm = sisdri(est, ref, mix)
    assert perm.tolist() == [[1, 0]] * 3
    for b, j in itertools.product(range(3), range(2)):
        assert input_sisdr[b, j].item() == pytest.approx(
            numpy_si_sdr(mix[b].numpy(), ref[b, j].numpy()), abs=1e-9
        )
        assert sisdr[b, j].item() == pytest.approx(
            numpy_si_sdr(est[b, 1 - j].numpy(), ref[b, j].numpy()), abs=1e-9
        )
    # Changing one example's mixture changes only that example's baseline.
    mix2 = mix.clone()
    mix2[2] = ref[2, 0]
    _, input2, _ = sisdri(est, ref, mix2)
    torch.testing.assert_close(input2[:2], input_sisdr[:2])
    assert not torch.allclose(input2[2], input_sisdr[2])


def test_neg_sisdri_value_and_gradient() -> None:
    gen = torch.Generator().manual_seed(8)
    ref = torch.randn(2, 2, 64, generator=gen, dtype=torch.float64)
    mix = ref.sum(1)
    est = ref.flip(1) + 0.3 * torch.randn(2, 2, 64, generator=gen, dtype=torch.float64)
    est.requires_grad_(True)
    loss = neg_sisdri(est, ref, mix)
    assert loss.shape == (2, 2)
    sisdr, input_sisdr, perm = sisdri(est, ref, mix)
    torch.testing.assert_close(loss, -(sisdr - input_sisdr))
    loss.sum().backward()
    # Independent gradient: -SI-SDR of the hand-aligned estimates (the baseline is constant).
    est2 = est.detach().clone().requires_grad_(True)
    (-si_sdr(est2.flip(1), ref)).sum().backward()
    torch.testing.assert_close(est.grad, est2.grad)
    assert est.grad.abs().sum() > 0


def test_losses_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, S, T\)"):
        pairwise_si_sdr(torch.zeros(2, 2, 8), torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=r"mix of shape \(B, T\)"):
        sisdri(torch.zeros(2, 2, 8), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8))
