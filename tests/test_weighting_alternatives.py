"""CVaR, group DRO and hierarchical tilted ERM (issue 15) against weights computed independently:
by hand, and by plain numpy loops written from the papers' formulas (no torch, no log-space)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ugr_experiments.weighting import (
    CVaRWeighting,
    GroupDROWeighting,
    Progress,
    RobustWeighting,
    SumWeighting,
    TiltedGroupsWeighting,
    batch_pmf,
    build_weighting,
    gather_items,
    pmf,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "weighting"
START = Progress(step=0, epoch=0)
NAMES = ["a", "b", "c", "d"]  # four groups (classes)
COARSE = ["speech", "environmental"]


def weights(weighting, loss, classes, groups=None, step: int = 0) -> np.ndarray:
    """The pmf of one (single-process) step, as float64 numpy."""
    loss = torch.as_tensor(loss, dtype=torch.float32)
    classes = torch.as_tensor(classes)
    groups = torch.as_tensor(groups if groups is not None else np.zeros(len(classes), int))
    p = batch_pmf(weighting, loss, classes, groups, Progress(step, 0))
    assert not p.requires_grad
    assert (p >= 0).all()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    return p.double().numpy()


# --- CVaR --------------------------------------------------------------------------------------


def cvar_numpy(loss: list[float], fraction: float) -> np.ndarray:
    """1/k on the k largest, ties to the earlier index (a plain Python sort)."""
    n = len(loss)
    k = max(1, math.ceil(round(fraction * n, 9)))
    order = sorted(range(n), key=lambda i: (-loss[i], i))
    p = np.zeros(n)
    p[order[:k]] = 1.0 / k
    return p


def test_cvar_by_hand() -> None:
    # k = ceil(0.4 * 5) = 2: the losses 3.0 and 2.5 get 1/2 each.
    p = weights(CVaRWeighting(0.4), [1.0, 3.0, -2.0, 2.5, 0.0], [0, 1, 2, 3, 0])
    assert p.tolist() == [0.0, 0.5, 0.0, 0.5, 0.0]


def test_cvar_ties_go_to_the_earlier_item() -> None:
    # k = ceil(0.5 * 6) = 3; four items tie at the top: items 1, 2, 4 (not 5) are chosen.
    loss = [0.0, 5.0, 5.0, 1.0, 5.0, 5.0]
    p = weights(CVaRWeighting(0.5), loss, [0] * 6)
    assert p.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(p, cvar_numpy(loss, 0.5))


def test_cvar_one_item_and_fraction_one() -> None:
    assert weights(CVaRWeighting(0.01), [7.0], [0]).tolist() == [1.0]
    assert weights(CVaRWeighting(1.0), [3.0, 1.0, 2.0, 0.5], [0] * 4).tolist() == [0.25] * 4


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.7, 0.75, 0.99])
def test_cvar_matches_numpy_on_random_losses(fraction: float) -> None:
    rng = np.random.default_rng(3)
    loss = np.round(rng.normal(size=16), 1).tolist()  # rounded: ties happen
    p = weights(CVaRWeighting(fraction), loss, [0] * 16)
    np.testing.assert_allclose(p, cvar_numpy(loss, fraction), atol=1e-7)
    # exactly 1/k: the chosen weights are bit-equal
    assert len({w for w in p.tolist() if w > 0}) == 1


def test_cvar_0_75_of_16_items_weights_12() -> None:
    p = weights(CVaRWeighting(0.75), np.arange(16.0), [0] * 16)
    assert (p > 0).sum() == 12
    assert 1.0 / (p**2).sum() == pytest.approx(12.0)  # ESS = k


# --- group DRO ---------------------------------------------------------------------------------


class GroupDRONumpy:
    """Sagawa et al.'s online update written directly: q in linear space, loops over groups."""

    def __init__(self, n_groups: int, eta: float) -> None:
        self.q = np.full(n_groups, 1.0 / n_groups)
        self.eta = eta

    def step(self, loss: list[float], group: list[int]) -> np.ndarray:
        present = sorted(set(group))
        means = {
            g: np.mean([x for x, h in zip(loss, group, strict=True) if h == g]) for g in present
        }
        mass = sum(self.q[g] for g in present)
        tilted = {g: self.q[g] * math.exp(self.eta * means[g]) for g in present}
        total = sum(tilted.values())
        for g in present:  # absent groups: untouched
            self.q[g] = mass * tilted[g] / total
        counts = {g: group.count(g) for g in present}
        raw = np.array([self.q[h] / counts[h] for h in group])
        return raw / raw.sum()


def test_group_dro_first_step_by_hand() -> None:
    # groups a: losses 1, 3 (mean 2); b: 0; c: absent; d: 4. q starts at 1/4 each.
    loss, cls = [1.0, 3.0, 0.0, 4.0], [0, 0, 1, 3]
    w = GroupDROWeighting(0.5, NAMES, COARSE)
    p = weights(w, loss, cls)
    e = [math.exp(0.5 * m) for m in (2.0, 0.0, 4.0)]  # present groups a, b, d
    q = [0.75 * x / sum(e) for x in e]  # they keep their mass 3/4
    assert w.q.tolist() == pytest.approx([q[0], q[1], 0.25, q[2]], rel=1e-12)
    z = q[0] + q[1] + q[2]
    assert p.tolist() == pytest.approx([q[0] / 2 / z, q[0] / 2 / z, q[1] / z, q[2] / z])


def test_group_dro_matches_numpy_over_many_steps_with_empty_groups() -> None:
    rng = np.random.default_rng(0)
    w, ref = GroupDROWeighting(0.3, NAMES, COARSE), GroupDRONumpy(4, 0.3)
    for step in range(20):
        n = int(rng.integers(1, 7))  # one-item batches included
        groups = rng.integers(0, 3 if step % 2 else 4, size=n).tolist()  # d often absent
        loss = rng.normal(size=n).round(3).tolist()
        p = weights(w, loss, groups, step=step)
        np.testing.assert_allclose(p, ref.step(loss, groups), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(w.q.numpy(), ref.q, rtol=1e-6)  # float32 losses
        assert w.q.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_group_dro_one_item_batch_and_absent_groups_keep_q() -> None:
    w = GroupDROWeighting(1.0, NAMES, COARSE)
    p = weights(w, [5.0], [2])
    assert p.tolist() == [1.0]
    # c alone is present: it keeps its own mass (q is renormalised over the present groups)
    assert w.q.tolist() == pytest.approx([0.25] * 4, abs=1e-15)


def test_group_dro_eta_zero_is_group_balanced() -> None:
    # q stays uniform: each present group gets 1/3 of the mass, split among its items
    p = weights(GroupDROWeighting(0.0, NAMES, COARSE), [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 3])
    assert p.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 3, 1 / 3])


def test_group_dro_skips_a_non_finite_update() -> None:
    w = GroupDROWeighting(1.0, NAMES, COARSE)
    w.update(torch.tensor([math.nan, 1.0]), torch.tensor([0, 1]), torch.tensor([0, 0]), START)
    assert w.q.tolist() == [0.25] * 4


def test_group_dro_on_coarse_groups_and_state_round_trip() -> None:
    w = GroupDROWeighting(0.5, NAMES, COARSE, groups="groups")
    weights(w, [1.0, 3.0, 2.0], [0, 1, 2], groups=[0, 1, 1])
    assert list(w.diagnostics()) == ["q/speech", "q/environmental"]
    ref = GroupDRONumpy(2, 0.5)
    ref.step([1.0, 3.0, 2.0], [0, 1, 1])
    np.testing.assert_allclose(w.q.numpy(), ref.q, rtol=1e-12)
    other = GroupDROWeighting(0.5, NAMES, COARSE, groups="groups")
    other.load_state_dict(w.state_dict())
    assert torch.equal(other.log_q, w.log_q)
    with pytest.raises(ValueError, match="does not fit 4 groups"):
        GroupDROWeighting(0.5, NAMES, COARSE).load_state_dict(w.state_dict())


# --- hierarchical TERM -------------------------------------------------------------------------


def tilted_numpy(loss: list[float], group: list[int], t_in: float, t_out: float) -> np.ndarray:
    """Li et al. (ICLR 2021) Eq. 4's gradient weights, in linear space."""
    present = sorted(set(group))
    members = {g: [i for i, h in enumerate(group) if h == g] for g in present}
    risk = {}
    for g, idx in members.items():
        values = np.array([loss[i] for i in idx])
        risk[g] = values.mean() if t_in == 0 else np.log(np.mean(np.exp(t_in * values))) / t_in
    outer = {g: len(members[g]) * math.exp(t_out * risk[g]) for g in present}
    z = sum(outer.values())
    p = np.zeros(len(loss))
    for g, idx in members.items():
        inner = np.exp(t_in * np.array([loss[i] for i in idx]))
        p[idx] = outer[g] / z * inner / inner.sum()
    return p


@pytest.mark.parametrize(("t_in", "t_out"), [(0.0, 0.0), (0.0, 0.7), (0.5, 0.0), (0.3, -0.4)])
def test_tilted_groups_matches_numpy(t_in: float, t_out: float) -> None:
    rng = np.random.default_rng(1)
    loss = rng.normal(size=12).round(2).tolist()
    group = [0, 0, 1, 1, 1, 3, 3, 3, 3, 0, 1, 3]  # group c (2) empty
    p = weights(TiltedGroupsWeighting(t_in, t_out, NAMES, COARSE), loss, group)
    np.testing.assert_allclose(p, tilted_numpy(loss, group, t_in, t_out), rtol=1e-5)


def test_tilted_groups_by_hand() -> None:
    # t_in = 0: R_g is the mean. a: (1, 3), mean 2; b: (0). With t_out = ln 2:
    # outer weights 2 * 2^2 = 8 and 1 * 2^0 = 1 -> 8/9, 1/9, split evenly within a.
    p = weights(TiltedGroupsWeighting(0.0, math.log(2), NAMES, COARSE), [1.0, 3.0, 0.0], [0, 0, 1])
    assert p.tolist() == pytest.approx([4 / 9, 4 / 9, 1 / 9])


def test_tilted_groups_limits() -> None:
    loss, group = [1.0, 3.0, -2.0, 0.5, 2.0], [0, 0, 1, 2, 2]
    uniform = weights(TiltedGroupsWeighting(0.0, 0.0, NAMES, COARSE), loss, group)
    assert uniform.tolist() == pytest.approx([0.2] * 5)
    # equal tilts collapse to the flat tilt: robust weighting with alpha = t
    flat = weights(TiltedGroupsWeighting(0.4, 0.4, NAMES, COARSE), loss, group)
    np.testing.assert_allclose(flat, weights(RobustWeighting(0.4), loss, group), rtol=1e-5)
    assert weights(TiltedGroupsWeighting(2.0, 3.0, NAMES, COARSE), [4.0], [1]).tolist() == [1.0]


def test_tilted_groups_stays_finite_for_huge_tilts() -> None:
    p = weights(TiltedGroupsWeighting(50.0, 50.0, NAMES, COARSE), [100.0, 99.0, 0.0], [0, 0, 1])
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [1 / (1 + math.exp(-50)), math.exp(-50), 0.0], atol=1e-7)


# --- combining, the interface, configs ---------------------------------------------------------


def test_cvar_plus_robust_tilts_within_the_chosen_items() -> None:
    loss = [0.0, 1.0, 2.0, 3.0]
    both = SumWeighting([CVaRWeighting(0.5), RobustWeighting(1.0)])
    p = weights(both, loss, [0] * 4)
    z = math.exp(2) + math.exp(3)
    assert p.tolist() == pytest.approx([0, 0, math.exp(2) / z, math.exp(3) / z])


def test_sum_forwards_state_updates_and_diagnostics() -> None:
    both = SumWeighting([RobustWeighting(0.1), GroupDROWeighting(0.5, NAMES, COARSE)])
    weights(both, [1.0, 2.0], [0, 1])
    assert set(both.state_dict()) == {"1.log_q"}
    assert set(both.diagnostics()) == {f"q/{n}" for n in NAMES}
    copy = SumWeighting([RobustWeighting(0.1), GroupDROWeighting(0.5, NAMES, COARSE)])
    copy.load_state_dict(both.state_dict())
    assert torch.equal(copy.terms[1].log_q, both.terms[1].log_q)


def test_stateless_weightings_refuse_a_foreign_state() -> None:
    assert CVaRWeighting(0.5).state_dict() == {}
    CVaRWeighting(0.5).load_state_dict({})
    with pytest.raises(ValueError, match="has no state"):
        CVaRWeighting(0.5).load_state_dict({"log_q": torch.zeros(2)})


def test_scores_see_the_global_batch_through_a_fake_all_gather() -> None:
    """Two ranks' slices of CVaR's pmf equal the single-process pmf (a global top k)."""
    loss = torch.tensor([[5.0, 0.0], [1.0, 2.0], [9.0, 3.0], [4.0, 4.0]])  # (B=4, S=2)
    cls = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    shards = [(loss[:2], cls[:2]), (loss[2:], cls[2:])]

    def gather(_: torch.Tensor) -> list[torch.Tensor]:
        packs = [torch.stack([x.reshape(-1).double() for x in (lo, c, c)]) for lo, c in shards]
        return packs

    for make in (lambda: CVaRWeighting(0.25), lambda: GroupDROWeighting(0.5, NAMES, COARSE)):
        single = batch_pmf(make(), loss, cls, cls, START)
        parts = [batch_pmf(make(), lo, c, c, START, gather, r) for r, (lo, c) in enumerate(shards)]
        torch.testing.assert_close(torch.cat(parts), single)
    g_loss, g_cls, _, mine = gather_items(loss[2:], cls[2:], cls[2:], gather, 1)
    assert torch.equal(g_loss, loss.reshape(-1)) and torch.equal(g_cls, cls.reshape(-1))
    assert mine == slice(4, 8)


def test_batch_pmf_of_stateless_modes_is_the_softmax_of_the_scores() -> None:
    loss = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    p = batch_pmf(RobustWeighting(0.3), loss, loss.long(), loss.long(), START)
    torch.testing.assert_close(p, pmf(0.3 * loss))


def load_conf(name: str) -> dict:
    return yaml.safe_load((CONF / f"{name}.yaml").read_text().replace("${train.log_every}", "25"))


@pytest.mark.parametrize("name", ["cvar", "group_dro", "tilted_groups"])
def test_the_shipped_configs_build(name: str) -> None:
    weighting = build_weighting(load_conf(name), NAMES, COARSE)
    assert weighting.unit == "sources" and weighting.health_every == 25


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "cvar"}, "needs the key 'fraction'"),
        ({"name": "cvar", "fraction": 0}, r"fraction must be a number in \(0, 1\]"),
        ({"name": "cvar", "fraction": 1.5}, r"in \(0, 1\]"),
        ({"name": "group_dro", "eta": -1}, "eta must be a number >= 0"),
        ({"name": "group_dro", "eta": 0.1, "groups": "speakers"}, "unsupported groups"),
        ({"name": "tilted_groups", "t_in": 0.1}, "needs the key 't_out'"),
        ({"name": "group_dro", "eta": 0.1, "alpha": 1}, "unknown key"),
    ],
)
def test_bad_configs_explain_the_fix(cfg: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_weighting(cfg, NAMES, COARSE)
