"""The building blocks of the Sudo rm -rf family: ConvNorm, NormAct, GlobLN, the U-ConvBlocks.

Submodule names are the authors' (etzinis/sudo_rm_rf), so state-dict keys match theirs. On
CPU the layers compute through the formulations of :mod:`ugr_experiments.models.ops`.

Two styles of the same layers exist in the authors' code: the original network
(``sudormrf.py``) normalises with ``nn.GroupNorm(1, C, eps=1e-8)`` (parameters ``weight`` /
``bias``) and uses one PReLU slope per channel; the improved and group-communication
networks (``improved_sudormrf.py``, ``groupcomm_sudormrf_v2.py``) normalise with their
``GlobLN`` (the same function, parameters ``gamma`` / ``beta``) and use one PReLU slope per
layer. ``style="original"`` / ``"improved"`` picks one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ugr_experiments.models.ops import (
    depthwise_conv1d,
    group_norm_prelu,
    pointwise_conv1d,
    upsample_add,
)

__all__ = [
    "GN_EPS",
    "STYLES",
    "ConvNorm",
    "GlobLN",
    "ImprovedUBlock",
    "channel_slopes",
    "NormAct",
    "UBlock",
    "depthwise_pyramid",
    "multi_resolution",
]

# GroupNorm(1, C, eps=1e-8) is "global layer norm"; PyTorch's default eps (1e-5) is not.
GN_EPS = 1e-8
STYLES = ("original", "improved")


class GlobLN(nn.Module):
    """Global layer norm over (C, F) per example, parameters named as the authors' GlobLN.

    ``(x - mean) / sqrt(var + 1e-8) * gamma + beta`` with the mean and the (biased) variance
    over all channels and frames: the function of ``nn.GroupNorm(1, C, eps=1e-8)``, which
    computes it.

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = GN_EPS

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, 1, self.gamma, self.beta, self.eps)


def _make_norm(channels: int, style: str) -> nn.Module:
    if style not in STYLES:
        raise ValueError(f"unsupported block style: {style!r}; choose from {list(STYLES)}")
    return nn.GroupNorm(1, channels, eps=GN_EPS) if style == "original" else GlobLN(channels)


def _norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor, float]:
    """(scale, shift, eps) of a GroupNorm(1, C) or a GlobLN."""
    if isinstance(norm, GlobLN):
        return norm.gamma, norm.beta, norm.eps
    assert isinstance(norm, nn.GroupNorm)
    return norm.weight, norm.bias, norm.eps


def _norm_prelu(x: Tensor, norm: nn.Module, act: nn.PReLU) -> Tensor:
    """PReLU(norm(x)) through the fused CPU formulation (a shared slope is broadcast)."""
    scale, shift, eps = _norm_affine(norm)
    return group_norm_prelu(x, scale, shift, channel_slopes(act, x.shape[1]), eps)


def channel_slopes(act: nn.PReLU, channels: int) -> Tensor:
    """The PReLU slope per channel, (C,): a shared slope is expanded (its gradient sums)."""
    return act.weight if act.weight.numel() == channels else act.weight.expand(channels)


class ConvNorm(nn.Module):
    """Conv1d, GroupNorm(1, C_out, eps=1e-8) and optionally a per-channel PReLU.

    The submodule names (``conv``, ``norm``, ``act``) are the authors' (their
    ConvNorm / ConvNormAct / DilatedConvNorm), so state-dict keys match.

    Shape:
        - Input: (B, C_in, F)
        - Output: (B, C_out, ceil(F / stride))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = False,
        style: str = "original",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
        )
        self.norm = _make_norm(out_channels, style)
        slopes = out_channels if style == "original" else 1
        self.act = nn.PReLU(slopes) if act else None

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        assert conv.bias is not None and not isinstance(conv.padding, str)  # as built above
        if conv.kernel_size[0] == 1 and conv.groups == 1:
            y = pointwise_conv1d(x, conv.weight, conv.bias)
        elif conv.groups == conv.in_channels == conv.out_channels:
            y = depthwise_conv1d(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
        else:
            y = conv(x)
        if self.act is None:
            return self.norm(y)
        return _norm_prelu(y, self.norm, self.act)


class NormAct(nn.Module):
    """Global layer norm then PReLU (the authors' NormAct), in either style.

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(self, channels: int, style: str = "original") -> None:
        super().__init__()
        self.norm = _make_norm(channels, style)
        self.act = nn.PReLU(channels if style == "original" else 1)

    def forward(self, x: Tensor) -> Tensor:
        return _norm_prelu(x, self.norm, self.act)


def depthwise_pyramid(channels: int, depth: int, style: str = "original") -> nn.ModuleList:
    """The ``spp_dw`` layers of a U-ConvBlock: depthwise k=5 convs, stride 1 then 2, 2, ...

    Shape:
        - layer k: (B, C, F / 2^(k-1)) -> (B, C, F / 2^k) (layer 0 keeps F)
    """
    strides = [1] + [2] * (depth - 1)
    return nn.ModuleList(
        ConvNorm(channels, channels, 5, stride=s, groups=channels, style=style) for s in strides
    )


def multi_resolution(spp_dw: nn.ModuleList, x: Tensor) -> Tensor:
    """Successive downsampling, then the resolutions summed back up (nearest x2 each).

    Shape:
        (B, C, F), F divisible by ``2 ** (len(spp_dw) - 1)`` -> (B, C, F)
    """
    levels = [spp_dw[0](x)]  # [(B, C, F)]
    for layer in spp_dw[1:]:
        levels.append(layer(levels[-1]))  # (B, C, F / 2^k)
    top = levels.pop()
    while levels:
        top = upsample_add(levels.pop(), top)  # (B, C, 2 F')
    return top


class UBlock(nn.Module):
    """U-ConvBlock: expand, depthwise pyramid over ``upsampling_depth`` resolutions, merge.

    Args:
        out_channels: bottleneck channels C (the block's input and output).
        in_channels: expanded channels C_U inside the block.
        upsampling_depth: number of resolutions (1 stride-1 depthwise conv, then
            ``upsampling_depth - 1`` stride-2 ones).

    Shape:
        - Input: (B, C, F), F divisible by ``2 ** (upsampling_depth - 1)``
        - Output: (B, C, F)
    """

    def __init__(self, out_channels: int, in_channels: int, upsampling_depth: int) -> None:
        super().__init__()
        self.depth = upsampling_depth
        self.proj_1x1 = ConvNorm(out_channels, in_channels, 1, act=True)
        self.spp_dw = depthwise_pyramid(in_channels, upsampling_depth)
        self.conv_1x1_exp = ConvNorm(in_channels, out_channels, 1)
        self.final_norm = NormAct(in_channels)
        self.module_act = NormAct(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        top = multi_resolution(self.spp_dw, self.proj_1x1(x))  # (B, C_U, F)
        return self.module_act(self.conv_1x1_exp(self.final_norm(top)) + x)  # (B, C, F)


class ImprovedUBlock(nn.Module):
    """The U-ConvBlock of SuDoRM-RF++ (the authors' ``improved_sudormrf.UConvBlock``).

    As :class:`UBlock` in the improved style (GlobLN, one PReLU slope per layer), with the
    merge ``conv_1x1_exp`` + ``module_act`` replaced by a plain 1x1 convolution
    (``res_conv``) before the residual sum: ``x + res_conv(final_norm(pyramid))``.

    Args:
        out_channels: bottleneck channels C (the block's input and output).
        in_channels: expanded channels C_U inside the block.
        upsampling_depth: number of resolutions.

    Shape:
        - Input: (B, C, F), F divisible by ``2 ** (upsampling_depth - 1)``
        - Output: (B, C, F)
    """

    def __init__(self, out_channels: int, in_channels: int, upsampling_depth: int) -> None:
        super().__init__()
        self.depth = upsampling_depth
        self.proj_1x1 = ConvNorm(out_channels, in_channels, 1, act=True, style="improved")
        self.spp_dw = depthwise_pyramid(in_channels, upsampling_depth, style="improved")
        self.final_norm = NormAct(in_channels, style="improved")
        self.res_conv = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        top = multi_resolution(self.spp_dw, self.proj_1x1(x))  # (B, C_U, F)
        res = self.res_conv
        assert res.bias is not None  # built with a bias
        return pointwise_conv1d(self.final_norm(top), res.weight, res.bias) + x  # (B, C, F)
