"""SuDoRM-RF++ with group communication (Tzinis et al., J. Signal Process. Syst. 2022).

The function of the authors' ``GroupCommSudoRmRf`` in
``sudo_rm_rf/dnn/models/groupcomm_sudormrf_v2.py`` (etzinis/sudo_rm_rf), with their
parameter names and shapes. Each block splits the C bottleneck channels into G groups of
C / G, lets the groups exchange information through a transform-average-concatenate module
(TAC, after Luo et al.'s GC3), then runs one small improved U-ConvBlock (C / G and
C_U / G channels) on every group, shared across groups: G times fewer parameters and
operations per block. The rest of the network is SuDoRM-RF++'s
(:class:`~ugr_experiments.models.improved.MaskingSeparator`).

The authors' TAC permutes to (B*F*G, channels) rows for its linear layers and
concatenates the group mean to every group; here it stays in the (B, G, C/G, F) layout of
the features (a view, no copies) and the output layer is split in two, one half applied
per group and the other once to the mean, then broadcast over the groups: the same
arithmetic without the permutes, the expand and the concatenation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ugr_experiments.models import improved
from ugr_experiments.models.blocks import GlobLN, ImprovedUBlock, channel_slopes
from ugr_experiments.models.common import check_sizes
from ugr_experiments.models.improved import MaskingSeparator
from ugr_experiments.models.ops import batched_affine, prelu

__all__ = ["PRESETS", "TAC", "GCUBlock", "GroupCommSudoRmRf"]

# The released WSJ0-2mix model (GroupCom_Sudormrf_U8_Bases512, 0.51 M parameters) and the
# 16-block network of the authors' results table: SuDoRM-RF++'s sizes with 16 groups.
# Parameters (S = 2), the authors' class with the same arguments: 0.5x 507,177; 1.0x 565,073.
_PAPER = {**improved.PRESETS["sudormrf_improved_1x"], "in_audio_channels": 1, "group_size": 16}
PRESETS: dict[str, dict[str, int]] = {
    "sudormrf_gc_05x": {**_PAPER, "num_blocks": 8},
    "sudormrf_gc_1x": _PAPER,
    # 2 CPU cores, 8 kHz, ~1 s segments: sudormrf_cpu's sizes, twice its bottleneck, 8 groups.
    "sudormrf_gc_cpu": {
        **improved.PRESETS["sudormrf_improved_cpu"],
        "in_audio_channels": 1,
        "out_channels": 128,
        "group_size": 8,
    },
}


def _linear_prelu(x: Tensor, layers: nn.Sequential) -> Tensor:
    """``Sequential(Linear, PReLU)`` applied along the channels: (B, C_in, F) -> (B, C_out, F)."""
    linear, act = layers
    assert isinstance(linear, nn.Linear) and isinstance(act, nn.PReLU)
    y = batched_affine(x, linear.weight, linear.bias[:, None])
    return prelu(y, channel_slopes(act, y.shape[1]))


class TAC(nn.Module):
    """Transform-average-concatenate across groups (the authors' ``TAC``, same names).

    Args:
        input_size: channels per group n = C / G.
        hidden_size: hidden channels H (the authors use 3 n).

    Shape:
        - Input: (B, G, n, F)
        - Output: (B, G, n, F)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.TAC_input = nn.Sequential(nn.Linear(input_size, hidden_size), nn.PReLU())
        self.TAC_mean = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.PReLU())
        self.TAC_output = nn.Sequential(nn.Linear(hidden_size * 2, input_size), nn.PReLU())
        self.TAC_norm = GlobLN(input_size)

    def forward(self, x: Tensor) -> Tensor:
        b, g, n, f = x.shape
        hidden = _linear_prelu(x.reshape(b * g, n, f), self.TAC_input)  # (B*G, H, F)
        h = hidden.shape[1]
        mean = _linear_prelu(hidden.view(b, g, h, f).mean(1), self.TAC_mean)  # (B, H, F)
        linear, act = self.TAC_output
        assert isinstance(linear, nn.Linear) and isinstance(act, nn.PReLU)
        # Linear(cat[hidden, mean]) = W[:, :H] hidden + W[:, H:] mean + bias
        own = batched_affine(hidden, linear.weight[:, :h], linear.bias[:, None])  # (B*G, n, F)
        shared = torch.matmul(linear.weight[:, h:], mean)  # (B, n, F)
        out = (own.view(b, g, n, f) + shared.unsqueeze(1)).view(b * g, n, f)
        out = self.TAC_norm(prelu(out, channel_slopes(act, n)))  # (B*G, n, F)
        return x + out.view(b, g, n, f)


class GCUBlock(nn.Module):
    """TAC across G groups, then one improved U-ConvBlock per group (the authors' GC_UConvBlock).

    Args:
        out_channels: bottleneck channels C (divisible by ``num_group``).
        in_channels: channels C_U inside the U-ConvBlock (divisible by ``num_group``).
        upsampling_depth: resolutions of the U-ConvBlock.
        num_group: number of groups G.

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(
        self, out_channels: int, in_channels: int, upsampling_depth: int, num_group: int
    ) -> None:
        super().__init__()
        self.num_group = num_group
        n = out_channels // num_group
        self.TAC = TAC(n, out_channels * 3 // num_group)
        self.UBlock = ImprovedUBlock(n, in_channels // num_group, upsampling_depth)

    def forward(self, x: Tensor) -> Tensor:
        b, c, f = x.shape
        out = self.TAC(x.view(b, self.num_group, -1, f))  # (B, G, C/G, F)
        out = self.UBlock(out.view(b * self.num_group, -1, f))  # (B*G, C/G, F)
        return out.view(b, c, f)


class GroupCommSudoRmRf(MaskingSeparator):
    """SuDoRM-RF++ GC: the authors' ``GroupCommSudoRmRf`` (same arguments and defaults).

    Args:
        in_audio_channels: input channels A (the framework's data are mono: 1).
        out_channels: bottleneck channels C (divisible by ``group_size``).
        in_channels: channels C_U inside the U-ConvBlocks (divisible by ``group_size``).
        num_blocks: number of GC blocks U.
        upsampling_depth: resolutions per block.
        enc_kernel_size: encoder kernel L (odd); the stride is L // 2.
        enc_num_basis: encoder channels N.
        num_sources: number of sources S.
        group_size: number of groups G (the authors' name: it is the count, not the size).

    Shape:
        - Input: (B, T) or (B, A, T), any T >= 1
        - Output: (B, S * A, T)
    """

    def __init__(
        self,
        in_audio_channels: int = 1,
        out_channels: int = 256,
        in_channels: int = 512,
        num_blocks: int = 16,
        upsampling_depth: int = 5,
        enc_kernel_size: int = 21,
        enc_num_basis: int = 512,
        num_sources: int = 2,
        group_size: int = 16,
    ) -> None:
        sizes = dict(out_channels=out_channels, in_channels=in_channels)
        check_sizes("GroupCommSudoRmRf", group_size=group_size, **sizes)
        for key, value in sizes.items():
            if value % group_size:
                raise ValueError(
                    f"GroupCommSudoRmRf: {key}={value} is not divisible by "
                    f"group_size={group_size} (each of the group_size groups gets "
                    f"{key} / group_size channels); choose multiples, e.g. {key}="
                    f"{group_size * max(1, round(value / group_size))}"
                )
        super().__init__(
            "GroupCommSudoRmRf",
            lambda: GCUBlock(out_channels, in_channels, upsampling_depth, group_size),
            in_audio_channels=in_audio_channels,
            out_channels=out_channels,
            in_channels=in_channels,
            num_blocks=num_blocks,
            upsampling_depth=upsampling_depth,
            enc_kernel_size=enc_kernel_size,
            enc_num_basis=enc_num_basis,
            num_sources=num_sources,
        )
        self.group_size = group_size
