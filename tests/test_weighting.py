"""Weighting functions, the pmf and its health against hand values and item-by-item autograd."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from ugr_experiments.losses import neg_sisdri
from ugr_experiments.weighting import (
    ClassWeighting,
    CurriculumWeighting,
    Progress,
    RobustWeighting,
    SumWeighting,
    UniformWeighting,
    build_weighting,
    curriculum_beta,
    distributed_all_gather,
    pmf,
    pmf_health,
    to_units,
    weighted_loss,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "weighting"
CLASSES = ["dog", "rain", "spk1", "spk2"]
GROUPS = ["environmental", "speech"]
START = Progress(step=0, epoch=0)


def labels(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Each mixture: an environmental source (dog or rain) and a speaker."""
    class_idx = torch.tensor([[0, 2], [1, 3]] * (batch // 2))
    group_idx = torch.tensor([[0, 1], [0, 1]] * (batch // 2))
    return class_idx, group_idx


def softmax_by_hand(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


# --- pmf ---------------------------------------------------------------------------------------


def test_pmf_is_the_softmax_over_all_items() -> None:
    scores = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    p = pmf(scores)
    assert p.shape == (2, 2)
    expected = softmax_by_hand([0.0, 1.0, 2.0, -1.0])
    assert p.flatten().tolist() == pytest.approx(expected, abs=1e-7)


def test_pmf_properties_and_no_gradient() -> None:
    scores = torch.randn(5, 2, requires_grad=True)
    p = pmf(scores)
    assert not p.requires_grad
    assert (p >= 0).all()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_pmf_finite_for_huge_losses_with_alpha_one() -> None:
    loss = torch.tensor([1e4, 1e4 - 1.0, 0.0])
    p = pmf(RobustWeighting(alpha=1.0).scores(loss, loss.long(), loss.long(), START))
    assert torch.isfinite(p).all()
    # exp(1e4) overflows; after subtracting the max: [1, e^-1, e^-1e4] / (1 + e^-1).
    z = 1 + math.exp(-1)
    assert p.tolist() == pytest.approx([1 / z, math.exp(-1) / z, 0.0], abs=1e-6)


def test_pmf_with_fake_all_gather_over_two_ranks_equals_single_process() -> None:
    gen = torch.Generator().manual_seed(0)
    global_scores = torch.randn(4, 2, generator=gen) * 3  # global batch B=4, S=2
    shards = list(global_scores.chunk(2))  # each rank holds B/2 = 2 mixtures

    def fake_all_gather(local: torch.Tensor) -> list[torch.Tensor]:
        return [shard.clone() for shard in shards]

    local_p = [pmf(shards[r], fake_all_gather, rank=r) for r in range(2)]
    torch.testing.assert_close(torch.cat(local_p), pmf(global_scores))
    assert sum(p.sum() for p in local_p).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="rank 2"):
        pmf(shards[0], fake_all_gather, rank=2)


def test_two_ranks_average_to_the_single_process_gradient() -> None:
    """DDP averages rank gradients: world_size * local weighted loss restores sum_i p_i g_i."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen)
    weight = torch.randn(3, generator=gen, requires_grad=True)
    robust = RobustWeighting(alpha=0.5)

    def loss_of(inputs: torch.Tensor) -> torch.Tensor:
        return (inputs @ weight - 1.0) ** 2

    full_loss = loss_of(x)
    p_full = pmf(robust.scores(full_loss, x, x, START))
    (full_grad,) = torch.autograd.grad(weighted_loss(full_loss, p_full), weight)

    shards = list(x.chunk(2))
    scores = [robust.scores(loss_of(s), s, s, START) for s in shards]
    rank_grads = []
    for rank, shard in enumerate(shards):
        loss = loss_of(shard)
        p = pmf(scores[rank], lambda _: [s.clone() for s in scores], rank=rank)
        rank_grads.append(torch.autograd.grad(weighted_loss(loss, p, world_size=2), weight)[0])
    torch.testing.assert_close((rank_grads[0] + rank_grads[1]) / 2, full_grad)


def test_distributed_all_gather_single_process_group(tmp_path: Path) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        scores = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
        parts = distributed_all_gather(scores)
        assert len(parts) == 1
        torch.testing.assert_close(parts[0], scores)
        torch.testing.assert_close(pmf(scores, distributed_all_gather, rank=0), pmf(scores))
    finally:
        dist.destroy_process_group()


# --- weighted loss -----------------------------------------------------------------------------


def test_alpha_zero_weighted_loss_is_the_plain_mean() -> None:
    loss = torch.tensor([[3.0, -1.0], [0.5, 10.0], [2.0, 2.0]])
    class_idx = torch.zeros(3, 2, dtype=torch.long)
    p = pmf(RobustWeighting(alpha=0.0).scores(loss, class_idx, class_idx, START))
    assert weighted_loss(loss, p).item() == pytest.approx(loss.mean().item(), abs=1e-6)


def test_weighted_loss_gradient_equals_item_by_item_sum() -> None:
    """grad of sum_i p_i L_i == sum_i p_i grad L_i, each grad L_i computed on its own."""
    torch.manual_seed(2)
    model = torch.nn.Linear(16, 2 * 16)
    mix = torch.randn(3, 16)
    ref = torch.randn(3, 2, 16)

    def per_item_loss() -> torch.Tensor:
        return neg_sisdri(model(mix).view(3, 2, 16), ref, mix)  # (B, S)

    loss = per_item_loss()
    class_idx, group_idx = torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long)
    p = pmf(RobustWeighting(alpha=0.3).scores(loss.detach(), class_idx, group_idx, START))
    assert p.std() > 0  # genuinely non-uniform weights
    grads = torch.autograd.grad(weighted_loss(loss, p), list(model.parameters()))

    expected = [torch.zeros_like(g) for g in grads]
    for b in range(3):
        for s in range(2):
            item_grads = torch.autograd.grad(per_item_loss()[b, s], list(model.parameters()))
            for acc, g in zip(expected, item_grads, strict=True):
                acc += p[b, s] * g
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_weighted_loss_detaches_p_and_checks_shapes() -> None:
    loss = torch.tensor([1.0, 2.0], requires_grad=True)
    p = torch.tensor([0.25, 0.75], requires_grad=True)
    out = weighted_loss(loss, p, world_size=3)
    assert out.item() == pytest.approx(3 * (0.25 + 1.5))
    out.backward()
    assert p.grad is None
    assert loss.grad.tolist() == pytest.approx([0.75, 2.25])
    with pytest.raises(ValueError, match="same shape"):
        weighted_loss(loss, p[:1])


# --- weighting functions -----------------------------------------------------------------------


def test_scores_never_carry_gradient() -> None:
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    class_idx, group_idx = labels()
    for weighting in (
        UniformWeighting(),
        RobustWeighting(0.2),
        CurriculumWeighting(-0.5, "linear", 10),
        ClassWeighting({"speech": 1.0}, CLASSES, GROUPS),
    ):
        assert not weighting.scores(loss, class_idx, group_idx, START).requires_grad


def test_robust_weights_grow_with_the_loss() -> None:
    loss = torch.tensor([[0.5, -3.0], [4.0, 1.0]])
    class_idx, group_idx = labels()
    p = pmf(RobustWeighting(alpha=0.2).scores(loss, class_idx, group_idx, START))
    order = loss.flatten().argsort()
    assert (p.flatten()[order].diff() > 0).all()
    assert p.flatten().tolist() == pytest.approx(softmax_by_hand([0.1, -0.6, 0.8, 0.2]), abs=1e-7)


def test_curriculum_weights_shrink_with_the_loss_then_become_uniform() -> None:
    loss = torch.tensor([[0.5, -3.0], [4.0, 1.0]])
    class_idx, group_idx = labels()
    curriculum = CurriculumWeighting(beta0=-0.5, shape="cosine", length=100, length_unit="steps")
    p = pmf(curriculum.scores(loss, class_idx, group_idx, Progress(step=10, epoch=0)))
    order = loss.flatten().argsort()
    assert (p.flatten()[order].diff() < 0).all()
    for step in (100, 101, 10_000):
        p_end = pmf(curriculum.scores(loss, class_idx, group_idx, Progress(step=step, epoch=5)))
        assert torch.equal(p_end, torch.full((2, 2), 0.25))


@pytest.mark.parametrize("shape", ["linear", "cosine", "exponential"])
def test_curriculum_beta_starts_at_beta0_and_ends_exactly_at_zero(shape: str) -> None:
    assert curriculum_beta(0, -0.3, shape, 7) == -0.3
    for k in (7, 8, 1000):
        assert curriculum_beta(k, -0.3, shape, 7) == 0.0
    path = [abs(curriculum_beta(k, -0.3, shape, 7)) for k in range(8)]
    assert all(a > b for a, b in zip(path, path[1:], strict=False))


def test_curriculum_beta_midpoints_by_hand() -> None:
    assert curriculum_beta(5, -2.0, "linear", 10) == pytest.approx(-1.0)
    assert curriculum_beta(5, -2.0, "cosine", 10) == pytest.approx(-1.0)  # (1 + cos(pi/2))/2
    assert curriculum_beta(2.5, -2.0, "cosine", 10) == pytest.approx(-2.0 * 0.8535534)
    # (e^-2.5 - e^-5) / (1 - e^-5) = (0.0820850 - 0.0067379) / 0.9932621 = 0.0758584
    assert curriculum_beta(5, -2.0, "exponential", 10) == pytest.approx(-2.0 * 0.0758584, 1e-5)


def test_curriculum_follows_its_length_unit() -> None:
    by_epoch = CurriculumWeighting(-1.0, "linear", length=4, length_unit="epochs")
    by_step = CurriculumWeighting(-1.0, "linear", length=4, length_unit="steps")
    progress = Progress(step=3, epoch=1)
    assert by_epoch.beta(progress) == pytest.approx(-0.75)
    assert by_step.beta(progress) == pytest.approx(-0.25)


def test_class_weights_follow_gamma() -> None:
    # dog listed itself (1.0), rain falls back to environmental (unlisted: 0), speakers 3.0.
    class_idx, group_idx = labels()
    weighting = ClassWeighting({"speech": 3.0, "dog": 1.0}, CLASSES, GROUPS)
    loss = torch.randn(2, 2)
    scores = weighting.scores(loss, class_idx, group_idx, START)
    assert scores.tolist() == [[1.0, 3.0], [0.0, 3.0]]
    e, e3 = math.e, math.exp(3)
    z = e + e3 + 1 + e3
    assert pmf(scores).flatten().tolist() == pytest.approx([e / z, e3 / z, 1 / z, e3 / z])


def test_class_key_overrides_its_group() -> None:
    class_idx, group_idx = labels()
    weighting = ClassWeighting({"speech": 2.0, "spk2": -1.0, "environmental": 0.5}, CLASSES, GROUPS)
    scores = weighting.scores(torch.zeros(2, 2), class_idx, group_idx, START)
    assert scores.tolist() == [[0.5, 2.0], [0.5, -1.0]]


def test_sum_adds_the_terms_scores() -> None:
    class_idx, group_idx = labels()
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    weighting = build_weighting(
        {
            "name": "sum",
            "terms": [
                {"name": "class", "gamma": {"speech": 3.0}},
                {"name": "robust", "alpha": 0.5},
            ],
        },
        CLASSES,
        GROUPS,
    )
    assert isinstance(weighting, SumWeighting)
    scores = weighting.scores(loss, class_idx, group_idx, START)
    assert scores.tolist() == [[0.5, 4.0], [1.5, 5.0]]


def test_to_units() -> None:
    loss = torch.tensor([[1.0, 3.0], [2.0, 6.0]])
    class_idx, group_idx = labels()
    same = to_units(loss, class_idx, group_idx, "sources")
    assert all(a is b for a, b in zip(same, (loss, class_idx, group_idx), strict=True))
    m_loss, m_cls, m_grp = to_units(loss, class_idx, group_idx, "mixtures")
    assert m_loss.tolist() == [2.0, 4.0]
    assert m_cls.tolist() == [0, 1]
    assert m_grp.tolist() == [0, 0]
    with pytest.raises(ValueError, match="unsupported unit: 'mixture'"):
        to_units(loss, class_idx, group_idx, "mixture")


def test_mixture_unit_pmf_has_one_weight_per_mixture() -> None:
    weighting = build_weighting({"name": "robust", "unit": "mixtures", "alpha": 1.0}, [], [])
    loss, class_idx, group_idx = to_units(
        torch.tensor([[0.0, 2.0], [1.0, 3.0]]), *labels(), "mixtures"
    )
    p = pmf(weighting.scores(loss, class_idx, group_idx, START))
    assert p.tolist() == pytest.approx(softmax_by_hand([1.0, 2.0]))


# --- health ------------------------------------------------------------------------------------


def test_pmf_health_hand_values() -> None:
    p = torch.tensor([[0.5, 0.25], [0.25, 0.0]])
    group_idx = torch.tensor([[0, 1], [1, 0]])
    health = pmf_health(p, group_idx, ["environmental", "speech"])
    assert set(health) == {"max_weight", "entropy", "ess", "mass/environmental", "mass/speech"}
    assert health["max_weight"] == pytest.approx(0.5)
    assert health["entropy"] == pytest.approx(1.5 * math.log(2))  # .5 ln 2 + 2 * .25 ln 4
    assert health["ess"] == pytest.approx(1 / (0.25 + 2 * 0.0625))
    assert health["mass/environmental"] == pytest.approx(0.5)
    assert health["mass/speech"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in health.values())


def test_pmf_health_uniform() -> None:
    p = torch.full((8,), 1 / 8)
    health = pmf_health(p, torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]), ["a", "b"])
    assert health["entropy"] == pytest.approx(math.log(8))
    assert health["ess"] == pytest.approx(8.0)
    assert health["max_weight"] == pytest.approx(1 / 8)
    assert (health["mass/a"], health["mass/b"]) == pytest.approx((3 / 8, 5 / 8))


# --- configs -----------------------------------------------------------------------------------


def load_conf(name: str) -> dict:
    text = (CONF / f"{name}.yaml").read_text()
    # The real files interpolate root keys; substitute what Hydra would resolve.
    text = text.replace("${train.log_every}", "25").replace("${alpha}", "0.1")
    return yaml.safe_load(text)


@pytest.mark.parametrize("name", ["uniform", "robust", "curriculum", "class"])
def test_the_shipped_configs_build(name: str) -> None:
    weighting = build_weighting(load_conf(name), CLASSES, GROUPS)
    assert weighting.unit == "sources"
    assert weighting.health_every == 25


def test_build_each_mode_from_plain_values() -> None:
    robust = build_weighting({"name": "robust", "alpha": "1/15"}, CLASSES, GROUPS)
    assert robust.alpha == pytest.approx(1 / 15)
    assert build_weighting({"name": "robust", "alpha": 2}, CLASSES, GROUPS).alpha == 2.0
    curriculum = build_weighting(
        {"name": "curriculum", "beta0": -1, "shape": "exponential", "length": 3, "rate": 2},
        CLASSES,
        GROUPS,
    )
    assert curriculum.beta(START) == -1.0
    assert isinstance(build_weighting({"name": "uniform"}, CLASSES, GROUPS), UniformWeighting)


BAD_CONFIGS = [
    (
        {"name": "robst"},
        r"unsupported weighting: 'robst'; choose from \['class', 'curriculum', 'cvar', "
        r"'group_dro', 'robust', 'sum', 'tilted_groups', 'uniform'\] \(e.g. weighting=robust\)",
    ),
    (
        {"name": "robust", "alpha": -0.1},
        r"alpha must be a number >= 0, got -0.1 \(e.g. alpha=0.2 or alpha=1/15\)",
    ),
    ({"name": "robust", "alpha": "abc"}, "alpha must be a number >= 0, got 'abc'"),
    ({"name": "robust", "alpha": float("nan")}, "alpha must be a number >= 0, got nan"),
    ({"name": "robust", "alpha": True}, "alpha must be a number >= 0, got True"),
    ({"name": "robust"}, "weighting 'robust' needs the key 'alpha'"),
    ({"name": "robust", "alpah": 0.1, "alpha": 0.1}, r"unknown key\(s\) \['alpah'\]"),
    ({"name": "uniform", "unit": "mixture"}, r"unsupported unit: 'mixture'; choose from \['sour"),
    (
        {"name": "uniform", "health_every": -1},
        r"health_every must be an integer >= 0 \(0 = never\), got -1",
    ),
    ({"name": "curriculum", "beta0": 0.2, "length": 5}, "beta0 must be a number < 0, got 0.2"),
    (
        {"name": "curriculum", "beta0": -0.2, "length": 5, "shape": "step"},
        r"unsupported shape: 'step'; choose from \['linear', 'cosine', 'exponential'\]",
    ),
    ({"name": "curriculum", "beta0": -0.2, "length": 0}, "length must be an integer > 0, got 0"),
    (
        {"name": "curriculum", "beta0": -0.2, "length": 5, "length_unit": "epoch"},
        r"unsupported length_unit: 'epoch'; choose from \['steps', 'epochs'\]",
    ),
    (
        {"name": "class", "gamma": {"speeech": 3.0}},
        r"gamma key 'speeech' is neither a class nor a group.*classes: \['dog', 'rain', 'spk1', "
        r"'spk2'\]; groups: \['environmental', 'speech'\]",
    ),
    ({"name": "class", "gamma": {"speech": "high"}}, r"gamma\[speech\] must be a number, got"),
    ({"name": "class", "gamma": [3.0]}, "gamma must be a mapping"),
    (
        {"name": "class", "unit": "mixtures", "gamma": {"speech": 3.0}},
        "class weighting needs unit='sources', got unit='mixtures'",
    ),
    ({"name": "sum", "terms": {"name": "robust"}}, "terms must be a list"),
    ({"name": "sum", "terms": []}, "at least one term"),
    ({"name": "sum", "terms": ["robust"]}, "every entry of terms must be a weighting config"),
    (
        {"name": "sum", "terms": [{"name": "robust", "alpha": 1, "unit": "mixtures"}]},
        "every term of a sum weighting must use unit='sources'",
    ),
]


@pytest.mark.parametrize(("cfg", "message"), BAD_CONFIGS)
def test_bad_configs_explain_the_fix(cfg: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_weighting(cfg, CLASSES, GROUPS)


def test_progress_is_frozen_and_repr_is_readable() -> None:
    with pytest.raises(AttributeError):
        START.step = 3  # type: ignore[misc]
    assert repr(RobustWeighting(0.2)) == "RobustWeighting(alpha=0.2, unit='sources')"
