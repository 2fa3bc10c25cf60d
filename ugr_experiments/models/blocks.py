"""The building blocks of Sudo rm -rf: ConvNorm, NormAct and the U-ConvBlock (UBlock).

Submodule names are the authors' (etzinis/sudo_rm_rf), so state-dict keys match theirs. On
CPU the layers compute through the formulations of :mod:`ugr_experiments.models.ops`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ugr_experiments.models.ops import (
    depthwise_conv1d,
    group_norm_prelu,
    pointwise_conv1d,
    upsample_add,
)

__all__ = ["GN_EPS", "ConvNorm", "NormAct", "UBlock"]

# GroupNorm(1, C, eps=1e-8) is "global layer norm"; PyTorch's default eps (1e-5) is not.
GN_EPS = 1e-8


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
        self.norm = nn.GroupNorm(1, out_channels, eps=GN_EPS)
        self.act = nn.PReLU(out_channels) if act else None

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        assert conv.bias is not None and not isinstance(conv.padding, str)  # as built above
        if conv.kernel_size[0] == 1 and conv.groups == 1:
            y = pointwise_conv1d(x, conv.weight, conv.bias)
        elif conv.groups == conv.in_channels == conv.out_channels:
            y = depthwise_conv1d(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
        else:
            y = conv(x)
        norm = self.norm
        if self.act is None:
            return norm(y)
        return group_norm_prelu(y, norm.weight, norm.bias, self.act.weight, norm.eps)


class NormAct(nn.Module):
    """GroupNorm(1, C, eps=1e-8) then a per-channel PReLU (the authors' NormAct).

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, eps=GN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        norm = self.norm
        return group_norm_prelu(x, norm.weight, norm.bias, self.act.weight, norm.eps)


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
        self.spp_dw = nn.ModuleList(
            [ConvNorm(in_channels, in_channels, 5, stride=1, groups=in_channels)]
            + [
                ConvNorm(in_channels, in_channels, 5, stride=2, groups=in_channels)
                for _ in range(upsampling_depth - 1)
            ]
        )
        self.conv_1x1_exp = ConvNorm(in_channels, out_channels, 1)
        self.final_norm = NormAct(in_channels)
        self.module_act = NormAct(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        levels = [self.spp_dw[0](self.proj_1x1(x))]  # [(B, C_U, F)]
        for layer in self.spp_dw[1:]:
            levels.append(layer(levels[-1]))  # (B, C_U, F / 2^k)
        top = levels.pop()
        while levels:
            top = upsample_add(levels.pop(), top)  # (B, C_U, 2 F')
        return self.module_act(self.conv_1x1_exp(self.final_norm(top)) + x)  # (B, C, F)
