"""SuDoRM-RF++ and its GC form: authors' counts, the direct reference, the authors' classes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_same_function

from ugr_experiments.models import (
    PRESETS,
    GroupCommSudoRmRf,
    ImprovedSuDORMRF,
    build_model,
    load_authors_state_dict,
)

try:  # tests/ as a package (rootdir on sys.path) or as a plain directory (pytest's default)
    from tests.reference_sudormrf_pp import ReferenceGroupCommSudoRmRf, ReferenceImprovedSuDORMRF
except ImportError:
    from reference_sudormrf_pp import ReferenceGroupCommSudoRmRf, ReferenceImprovedSuDORMRF

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    out_channels=16,
    in_channels=32,
    num_blocks=2,
    upsampling_depth=3,
    enc_kernel_size=9,
    enc_num_basis=20,
    num_sources=2,
)
SMALL = {**TINY, "upsampling_depth": 5, "enc_kernel_size": 21, "out_channels": 24}
GC_TINY = {**TINY, "group_size": 4}
GC_SMALL = {**SMALL, "in_channels": 48, "group_size": 8}

# The authors' classes built with the presets' arguments (measured with
# scripts/compare_authors.py; docs/models.md).
AUTHORS_COUNTS = {
    "sudormrf_improved_05x": 2_732_817,
    "sudormrf_improved_1x": 5_016_353,
    "sudormrf_gc_05x": 507_177,
    "sudormrf_gc_1x": 565_073,
}
FAST = {"improved": ImprovedSuDORMRF, "gc": GroupCommSudoRmRf}
REFERENCE = {"improved": ReferenceImprovedSuDORMRF, "gc": ReferenceGroupCommSudoRmRf}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(AUTHORS_COUNTS))
def test_parameter_counts_equal_the_authors(name: str) -> None:
    assert n_params(build_model(name)) == AUTHORS_COUNTS[name]
    kind = "gc" if "_gc_" in name else "improved"
    assert n_params(REFERENCE[kind](**PRESETS[name])) == AUTHORS_COUNTS[name]


@pytest.mark.parametrize("kind", ["improved", "gc"])
def test_state_dict_names_and_shapes_equal_the_reference(kind: str) -> None:
    sizes = {**(GC_SMALL if kind == "gc" else SMALL), "num_sources": 3}
    fast, ref = FAST[kind](**sizes).state_dict(), REFERENCE[kind](**sizes).state_dict()
    assert {k: v.shape for k, v in fast.items()} == {k: v.shape for k, v in ref.items()}


def _pair(kind: str, sizes: dict[str, int], seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    fast = FAST[kind](**sizes)
    with torch.no_grad():  # non-trivial norms and slopes, so every path is exercised
        for name, p in fast.named_parameters():
            if any(k in name for k in ("norm", "act", "ln.", "mask_net.0", "TAC_")):
                p.add_(0.3 * torch.randn_like(p))
    ref = REFERENCE[kind](**sizes)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


CASES = [
    ("improved", TINY, 1),
    ("improved", TINY, 37),
    ("improved", SMALL, 641),
    ("improved", {**TINY, "num_sources": 3}, 1999),
    ("gc", GC_TINY, 1),
    ("gc", GC_TINY, 333),
    ("gc", GC_SMALL, 1999),
    ("gc", {**GC_TINY, "num_sources": 3}, 641),
]


@pytest.mark.parametrize(("kind", "sizes", "length"), CASES)
def test_outputs_and_gradients_equal_the_reference(kind, sizes, length) -> None:
    fast, ref = _pair(kind, sizes, seed=length)
    assert_same_function(fast, ref, length, sizes["num_sources"])


def test_inference_mode_and_autocast_match() -> None:
    fast, ref = _pair("gc", GC_TINY, seed=0)
    mix = torch.randn(2, 500)
    with torch.inference_mode():
        torch.testing.assert_close(fast(mix), ref(mix), rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(fast(mix).float()).all()


def test_padding_multiple_is_the_authors() -> None:
    model = build_model("sudormrf_improved_1x")
    assert model.lcm == 10 * 2**5  # (L // 2) * 2 ** depth
    assert build_model("sudormrf_gc_cpu").lcm == 10 * 2**4


def test_group_communication_takes_several_audio_channels() -> None:
    model = GroupCommSudoRmRf(in_audio_channels=2, **GC_TINY)
    assert model(torch.randn(3, 2, 300)).shape == (3, 4, 300)  # S * A estimates


@pytest.mark.parametrize(
    ("cls", "bad", "match"),
    [
        (ImprovedSuDORMRF, dict(enc_kernel_size=20), "enc_kernel_size must be odd"),
        (ImprovedSuDORMRF, dict(num_blocks=0), "num_blocks must be a positive integer"),
        (GroupCommSudoRmRf, dict(group_size=5), r"out_channels=16 is not divisible by group_size"),
        (GroupCommSudoRmRf, dict(in_channels=34), r"in_channels=34 is not divisible"),
    ],
)
def test_invalid_sizes_are_rejected_with_the_fix(cls, bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**{**GC_TINY, **bad} if cls is GroupCommSudoRmRf else {**TINY, **bad})


def test_rejects_multichannel_input_for_a_mono_model() -> None:
    with pytest.raises(ValueError, match=r"ImprovedSuDORMRF expects .*\(B, T\) or \(B, 1, T\)"):
        ImprovedSuDORMRF(**TINY)(torch.randn(2, 2, 100))


def test_loads_a_data_parallel_checkpoint_in_the_authors_naming(tmp_path: Path) -> None:
    _, ref = _pair("gc", GC_TINY, seed=3)  # the reference has the authors' names
    path = tmp_path / "authors.pt"
    state = {"module." + k: v for k, v in ref.state_dict().items()}
    torch.save({"epoch": 1, "model_state_dict": state}, path)
    model = load_authors_state_dict(GroupCommSudoRmRf(**GC_TINY), path)
    mix = torch.randn(1, 400)
    torch.testing.assert_close(model(mix), ref(mix), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="does not match this GroupCommSudoRmRf"):
        load_authors_state_dict(GroupCommSudoRmRf(**{**GC_TINY, "num_blocks": 3}), path)


AUTHORS = os.environ.get("UGR_AUTHORS_REPO")


@pytest.mark.skipif(not AUTHORS, reason="set UGR_AUTHORS_REPO to a checkout of etzinis/sudo_rm_rf")
@pytest.mark.parametrize("preset", sorted(AUTHORS_COUNTS))
def test_equals_the_authors_classes(preset: str) -> None:
    """Their weights in our network give their outputs (4 s at 8 kHz); counts are theirs."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_authors import compare

    result = compare(Path(str(AUTHORS)), preset, seconds=4.0, batch=1)
    assert result["params_ours"] == result["params_authors"] == AUTHORS_COUNTS[preset]
    assert result["rel_error"] <= 1e-5
