"""Tests of the Sudo rm -rf model: sizes, the factory, and equality with the reference."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_function

from ugr_experiments.models import PRESETS, SuDORMRF, build_model, load_authors_state_dict
from ugr_experiments.models.ops import (
    decode_overlap_add,
    depthwise_conv1d,
    group_norm_prelu,
    prelu,
    upsample_add,
)
from ugr_experiments.models.sudormrf import pad_multiple, toeplitz_index

try:  # tests/ as a package (rootdir on sys.path) or as a plain directory (pytest's default)
    from tests.reference_sudormrf import ReferenceSuDORMRF
except ImportError:
    from reference_sudormrf import ReferenceSuDORMRF

TINY = dict(
    out_channels=16,
    in_channels=24,
    num_blocks=2,
    upsampling_depth=3,
    enc_kernel_size=9,
    enc_num_basis=20,
    num_sources=2,
)
SMALL = dict(
    out_channels=24,
    in_channels=48,
    num_blocks=3,
    upsampling_depth=5,
    enc_kernel_size=21,
    enc_num_basis=64,
    num_sources=2,
)

THREE = {**TINY, "num_sources": 3, "out_channels": 20}  # no reshape conv: C == N


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sudormrf_025x", 791_174), ("sudormrf_05x", 1_414_790), ("sudormrf_1x", 2_662_022)],
)
def test_parameter_counts_equal_the_authors(name: str, expected: int) -> None:
    assert n_params(build_model(name)) == expected
    assert n_params(ReferenceSuDORMRF(**PRESETS[name])) == expected


def test_1x_is_the_default_sudormrf() -> None:
    assert n_params(build_model("sudormrf")) == 2_662_022


def test_fast_and_reference_share_state_dict_names_and_shapes() -> None:
    fast = build_model("sudormrf_025x").state_dict()
    ref = ReferenceSuDORMRF(**PRESETS["sudormrf_025x"]).state_dict()
    assert {k: v.shape for k, v in fast.items()} == {k: v.shape for k, v in ref.items()}


def test_build_model_errors_name_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"unsupported model: 'dprnn'; choose from \[.*'convtasnet'"
    ):
        build_model("dprnn")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['n_blocks'\]"):
        build_model("sudormrf", n_blocks=4)


def test_preset_overrides() -> None:
    model = build_model("sudormrf_cpu", num_sources=3)
    assert isinstance(model, SuDORMRF)
    assert model.num_sources == 3
    assert model.num_blocks == PRESETS["sudormrf_cpu"]["num_blocks"]


@pytest.mark.parametrize("bad", [dict(enc_kernel_size=20), dict(enc_num_basis=21)])
def test_invalid_sizes_are_rejected(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SuDORMRF(**{**TINY, **bad})


def test_pad_multiple_is_the_authors_value_and_always_valid() -> None:
    assert pad_multiple(21, 5) == 160  # lcm(10, 2**5), the authors' rule
    assert pad_multiple(21, 4) == 80
    for kernel in (5, 9, 17, 21, 33):
        for depth in (1, 3, 5):
            multiple = pad_multiple(kernel, depth)
            frames = multiple // (kernel // 2)
            assert multiple % (kernel // 2) == 0
            assert frames % 2 ** (depth - 1) == 0
            assert multiple % math.lcm(kernel // 2, 2**depth) == 0


def test_toeplitz_matrix_is_the_channel_sliding_conv2d() -> None:
    torch.manual_seed(0)
    n = 10
    conv = torch.nn.Conv2d(1, 1, (n + 1, 1), padding=(n - n // 2, 0), bias=False)
    x = torch.randn(n, 3)  # (N, F)
    toeplitz = torch.nn.functional.pad(conv.weight.flatten(), (1, 0))[toeplitz_index(n)]
    torch.testing.assert_close(toeplitz @ x, conv(x[None, None])[0, 0])


@pytest.mark.parametrize("shape", [(3, 250), (3, 1, 250)])
def test_forward_shapes(shape: tuple[int, ...]) -> None:
    model = SuDORMRF(**TINY)
    assert model(torch.randn(shape)).shape == (3, 2, 250)


def test_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, 1, T\)"):
        SuDORMRF(**TINY)(torch.randn(2, 2, 100))


def _pair(sizes: dict[str, int], seed: int) -> tuple[SuDORMRF, ReferenceSuDORMRF]:
    torch.manual_seed(seed)
    fast = SuDORMRF(**sizes)
    # Non-trivial norm / PReLU / mask parameters, so every path is exercised.
    with torch.no_grad():
        for name, p in fast.named_parameters():
            if "norm" in name or "act" in name or name.startswith(("ln.", "m.")):
                p.add_(0.3 * torch.randn_like(p))
    ref = ReferenceSuDORMRF(**sizes)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize(
    ("sizes", "length"),
    [(TINY, 1), (TINY, 37), (TINY, 641), (SMALL, 160), (SMALL, 1999), (THREE, 333)],
    ids=["tiny-1", "tiny-37", "tiny-641", "small-160", "small-1999", "three-sources-333"],
)
def test_outputs_and_gradients_equal_the_reference(sizes: dict[str, int], length: int) -> None:
    fast, ref = _pair(sizes, seed=length)
    assert_same_function(fast, ref, length, sizes["num_sources"], unused=["ln_mask_in."])


def test_single_source_uses_sigmoid_like_the_reference() -> None:
    fast, ref = _pair({**TINY, "num_sources": 1}, seed=0)
    mix = torch.randn(2, 300)
    torch.testing.assert_close(fast(mix), ref(mix), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("length", [8, 13])
def test_depthwise_conv_gradients_equal_conv1d(stride: int, length: int) -> None:
    torch.manual_seed(stride)
    x = torch.randn(3, 6, length, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 1, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    fast = depthwise_conv1d(x, w, b, stride, 2)
    direct = F.conv1d(x, w, b, stride, 2, groups=6)
    torch.testing.assert_close(fast, direct)
    g = torch.randn_like(direct)
    grads = torch.autograd.grad(fast, (x, w, b), g)
    torch.testing.assert_close(grads, torch.autograd.grad(direct, (x, w, b), g))


def test_prelu_gradients_equal_the_layer() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 6, 40, dtype=torch.float64)
    x[0, 0, :5] = 0.0  # the kink: PyTorch's convention (slope) must be kept
    x.requires_grad_()
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    fast, direct = prelu(x, w), F.prelu(x, w)
    torch.testing.assert_close(fast, direct)
    g = torch.randn_like(direct)
    torch.testing.assert_close(
        torch.autograd.grad(fast, (x, w), g), torch.autograd.grad(direct, (x, w), g)
    )


def test_group_norm_prelu_gradients_equal_the_layers() -> None:
    torch.manual_seed(1)
    x = (3 + 2 * torch.randn(2, 6, 30, dtype=torch.float64)).requires_grad_()
    params = [torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    fast = group_norm_prelu(x, *params, 1e-8)
    direct = F.prelu(F.group_norm(x, 1, params[0], params[1], 1e-8), params[2])
    torch.testing.assert_close(fast, direct)
    g = torch.randn_like(direct)
    torch.testing.assert_close(
        torch.autograd.grad(fast, (x, *params), g), torch.autograd.grad(direct, (x, *params), g)
    )


def test_decoder_overlap_add_equals_conv_transpose() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2 * 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2 * 6, 1, 9, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    fast = decode_overlap_add(x.chunk(2, dim=1), w, b, stride=4, padding=4)
    direct = F.conv_transpose1d(x, w, b, 4, 4, output_padding=3, groups=2)
    torch.testing.assert_close(fast, direct)
    g = torch.randn_like(direct)
    torch.testing.assert_close(
        torch.autograd.grad(fast, (x, w, b), g), torch.autograd.grad(direct, (x, w, b), g)
    )


def test_upsample_add_equals_upsample_then_add() -> None:
    fine = torch.randn(2, 3, 16, dtype=torch.float64, requires_grad=True)
    coarse = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    fast = upsample_add(fine, coarse)
    direct = fine + torch.nn.Upsample(scale_factor=2, mode="nearest")(coarse)
    torch.testing.assert_close(fast, direct)
    g = torch.randn_like(direct)
    torch.testing.assert_close(
        torch.autograd.grad(fast, (fine, coarse), g),
        torch.autograd.grad(direct, (fine, coarse), g),
    )


def test_runs_under_cpu_autocast_with_the_plain_layers() -> None:
    model = SuDORMRF(**TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        est = model(torch.randn(2, 300))
    assert est.shape == (2, 2, 300)
    assert torch.isfinite(est.float()).all()


def _authors_state_dict(sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """A state dict named and shaped as etzinis/sudo_rm_rf's SuDORMRF, built by hand."""
    n, c, c_u = sizes["enc_num_basis"], sizes["out_channels"], sizes["in_channels"]
    s, k = sizes["num_sources"], sizes["enc_kernel_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.0.weight": (n, 1, k),
        "encoder.0.bias": (n,),
        "ln.weight": (n,),
        "ln.bias": (n,),
        "l1.weight": (c, n, 1),
        "l1.bias": (c,),
    }
    for b in range(sizes["num_blocks"]):
        p = f"sm.{b}."
        shapes |= {
            p + "proj_1x1.conv.weight": (c_u, c, 1),
            p + "proj_1x1.conv.bias": (c_u,),
            p + "proj_1x1.norm.weight": (c_u,),
            p + "proj_1x1.norm.bias": (c_u,),
            p + "proj_1x1.act.weight": (c_u,),
        }
        for d in range(sizes["upsampling_depth"]):
            q = f"{p}spp_dw.{d}."
            shapes |= {
                q + "conv.weight": (c_u, 1, 5),
                q + "conv.bias": (c_u,),
                q + "norm.weight": (c_u,),
                q + "norm.bias": (c_u,),
            }
        shapes |= {
            p + "conv_1x1_exp.conv.weight": (c, c_u, 1),
            p + "conv_1x1_exp.conv.bias": (c,),
            p + "conv_1x1_exp.norm.weight": (c,),
            p + "conv_1x1_exp.norm.bias": (c,),
            p + "final_norm.norm.weight": (c_u,),
            p + "final_norm.norm.bias": (c_u,),
            p + "final_norm.act.weight": (c_u,),
            p + "module_act.norm.weight": (c,),
            p + "module_act.norm.bias": (c,),
            p + "module_act.act.weight": (c,),
        }
    shapes |= {
        "reshape_before_masks.weight": (n, c, 1),
        "reshape_before_masks.bias": (n,),
        "m.weight": (s, 1, n + 1, 1),
        "m.bias": (s,),
        "decoder.weight": (n * s, 1, k),
        "decoder.bias": (s,),
        "ln_mask_in.weight": (n,),
        "ln_mask_in.bias": (n,),
    }
    gen = torch.Generator().manual_seed(1)
    return {key: 0.1 * torch.randn(shape, generator=gen) for key, shape in shapes.items()}


def test_loads_a_state_dict_in_the_authors_naming() -> None:
    authors = _authors_state_dict(TINY)
    model = SuDORMRF(**TINY)
    # As saved from nn.DataParallel, inside a checkpoint dict.
    checkpoint = {"epoch": 3, "model_state_dict": {"module." + k: v for k, v in authors.items()}}
    load_authors_state_dict(model, checkpoint)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, authors[key])
    ref = ReferenceSuDORMRF(**TINY)
    ref.load_state_dict(authors)
    mix = torch.randn(2, 333)
    torch.testing.assert_close(model(mix), ref(mix), rtol=1e-4, atol=1e-5)


def test_loads_an_authors_state_dict_file_and_module(tmp_path: Path) -> None:
    authors = _authors_state_dict(TINY)
    path = tmp_path / "authors.pt"
    torch.save({"module." + k: v for k, v in authors.items()}, path)
    model = load_authors_state_dict(SuDORMRF(**TINY), path)
    torch.testing.assert_close(model.state_dict()["m.weight"], authors["m.weight"])
    copy = load_authors_state_dict(SuDORMRF(**TINY), model)
    torch.testing.assert_close(copy.state_dict()["decoder.weight"], authors["decoder.weight"])


def test_authors_full_size_state_dict_matches_1x() -> None:
    authors = _authors_state_dict(PRESETS["sudormrf_1x"])
    model = build_model("sudormrf_1x")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in authors.items()
    }
    assert sum(v.numel() for v in authors.values()) == 2_662_022


def test_loading_a_mismatched_checkpoint_says_why() -> None:
    authors = _authors_state_dict(TINY)
    with pytest.raises(ValueError, match="upsampling_depth"):
        load_authors_state_dict(SuDORMRF(**{**TINY, "upsampling_depth": 2}), authors)


BENCH_PARAMS = {"cpu": 223_558, "improved_cpu": 246_345, "gc_cpu": 154_261}


@pytest.mark.slow
def test_bench_script_runs_fast_and_reference_side_by_side(tmp_path: Path) -> None:
    """Each network against its own direct reference (Sudo rm -rf, SuDoRM-RF++, GC)."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(root / "scripts" / "bench_model.py"), "--configs", *BENCH_PARAMS]
    cmd += ["--seconds", "0.25", "--batch", "2", "--steps", "1", "--warmup", "0"]
    cmd += ["--infer-reps", "1", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    assert "ref/fast" in proc.stdout and "reweighting" in proc.stdout
    runs = json.loads(out.read_text())["runs"]
    assert {(r["config"], r["variant"], r["mode"]) for r in runs} == {
        (config, variant, mode)
        for config in BENCH_PARAMS
        for variant in ("fast", "reference")
        for mode in ("time", "memory")
    }
    assert all("error" not in r and r["params"] == BENCH_PARAMS[r["config"]] for r in runs)
