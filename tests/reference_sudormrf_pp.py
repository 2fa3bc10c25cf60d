"""Direct reference formulations of SuDoRM-RF++ and its group-communication form (test-only).

Written from the description of the networks (Tzinis et al., J. Signal Process. Syst. 2022)
and the parameter layout of the authors' classes, every layer the plain way: global layer
norm from its formula (mean and variance over channels and frames), ``nn.PReLU`` with one
slope, ``nn.Upsample`` then a sum, ``nn.Linear`` on (rows, channels) tensors and a
concatenation of each group with the group mean in TAC. Parameter names and shapes are the
authors' (and our fast models'), so one state dict loads into both.
``scripts/bench_model.py`` times them against the fast models.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RefGlobLN(nn.Module):
    """``gamma * (x - mean) / sqrt(var + 1e-8) + beta``, statistics over (C, F) per example."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(1, 2), keepdim=True)
        return self.gamma[:, None] * (x - mean) / torch.sqrt(var + 1e-8) + self.beta[:, None]


class RefConvNorm(nn.Module):
    """Conv1d (same padding), global layer norm, optionally a one-slope PReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act=False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups)
        self.norm = RefGlobLN(c_out)
        self.act = nn.PReLU() if act else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.conv(x))
        return self.act(y) if self.act is not None else y


class RefNormAct(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = RefGlobLN(channels)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(x))


class RefImprovedUBlock(nn.Module):
    """Project up, depthwise pyramid, upsample and sum, norm + PReLU, 1x1 down, residual."""

    def __init__(self, c: int, c_u: int, depth: int) -> None:
        super().__init__()
        self.proj_1x1 = RefConvNorm(c, c_u, 1, act=True)
        strides = [1] + [2] * (depth - 1)
        self.spp_dw = nn.ModuleList(RefConvNorm(c_u, c_u, 5, s, groups=c_u) for s in strides)
        self.upsampler = nn.Upsample(scale_factor=2, mode="nearest")
        self.final_norm = RefNormAct(c_u)
        self.res_conv = nn.Conv1d(c_u, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.spp_dw[0](self.proj_1x1(x))]
        for layer in self.spp_dw[1:]:
            outs.append(layer(outs[-1]))
        while len(outs) > 1:
            top = self.upsampler(outs.pop())
            outs[-1] = outs[-1] + top
        return self.res_conv(self.final_norm(outs[0])) + x


class RefTAC(nn.Module):
    """Per-group transform, group mean transformed, [own, mean] concatenated, back to n."""

    def __init__(self, n: int, hidden: int) -> None:
        super().__init__()
        self.TAC_input = nn.Sequential(nn.Linear(n, hidden), nn.PReLU())
        self.TAC_mean = nn.Sequential(nn.Linear(hidden, hidden), nn.PReLU())
        self.TAC_output = nn.Sequential(nn.Linear(2 * hidden, n), nn.PReLU())
        self.TAC_norm = RefGlobLN(n)

    def forward(self, x: Tensor) -> Tensor:  # (B, G, n, F)
        b, g, n, f = x.shape
        rows = x.permute(0, 3, 1, 2)  # (B, F, G, n)
        own = self.TAC_input(rows)  # (B, F, G, H)
        mean = self.TAC_mean(own.mean(dim=2, keepdim=True)).expand_as(own)  # (B, F, G, H)
        out = self.TAC_output(torch.cat([own, mean], dim=-1))  # (B, F, G, n)
        out = out.permute(0, 2, 3, 1).reshape(b * g, n, f)  # (B*G, n, F)
        return x + self.TAC_norm(out).view(b, g, n, f)


class RefGCUBlock(nn.Module):
    def __init__(self, c: int, c_u: int, depth: int, groups: int) -> None:
        super().__init__()
        self.num_group = groups
        self.TAC = RefTAC(c // groups, 3 * c // groups)
        self.UBlock = RefImprovedUBlock(c // groups, c_u // groups, depth)

    def forward(self, x: Tensor) -> Tensor:
        b, c, f = x.shape
        y = self.TAC(x.view(b, self.num_group, c // self.num_group, f))
        return self.UBlock(y.reshape(b * self.num_group, -1, f)).view(b, c, f)


class _RefMasking(nn.Module):
    """Encoder (no bias, no ReLU), norm, bottleneck, blocks, PReLU + 1x1 masks, ReLU, decoder."""

    def __init__(
        self, blocks: list[nn.Module], c: int, kernel: int, n: int, outputs: int, depth: int
    ) -> None:
        super().__init__()
        stride = kernel // 2
        self.n, self.outputs = n, outputs
        self.multiple = stride * 2**depth  # the authors' padding rule
        self.encoder = nn.Conv1d(1, n, kernel, stride, stride, bias=False)
        self.ln = RefGlobLN(n)
        self.bottleneck = nn.Conv1d(n, c, 1)
        self.sm = nn.Sequential(*blocks)
        self.mask_net = nn.Sequential(nn.PReLU(), nn.Conv1d(c, outputs * n, 1))
        self.decoder = nn.ConvTranspose1d(
            outputs * n, outputs, kernel, stride, stride, output_padding=stride - 1, bias=False
        )

    def forward(self, wav: Tensor) -> Tensor:
        x = wav.unsqueeze(1) if wav.dim() == 2 else wav  # (B, 1, T)
        length = x.shape[-1]
        padded = torch.zeros(*x.shape[:-1], length + (-length % self.multiple), dtype=x.dtype)
        padded[..., :length] = x
        enc = self.encoder(padded)  # (B, N, F)
        masks = self.mask_net(self.sm(self.bottleneck(self.ln(enc))))  # (B, S*N, F)
        masks = torch.relu(masks.view(enc.shape[0], self.outputs, self.n, -1))
        masked = (masks * enc.unsqueeze(1)).flatten(1, 2)  # (B, S*N, F)
        return self.decoder(masked)[..., :length]


class ReferenceImprovedSuDORMRF(_RefMasking):
    """SuDoRM-RF++ computed directly. Args: as ``ImprovedSuDORMRF``."""

    def __init__(
        self,
        out_channels: int = 128,
        in_channels: int = 512,
        num_blocks: int = 16,
        upsampling_depth: int = 4,
        enc_kernel_size: int = 21,
        enc_num_basis: int = 512,
        num_sources: int = 2,
    ) -> None:
        blocks = [
            RefImprovedUBlock(out_channels, in_channels, upsampling_depth)
            for _ in range(num_blocks)
        ]
        super().__init__(
            blocks, out_channels, enc_kernel_size, enc_num_basis, num_sources, upsampling_depth
        )


class ReferenceGroupCommSudoRmRf(_RefMasking):
    """SuDoRM-RF++ GC computed directly (mono input). Args: as ``GroupCommSudoRmRf``."""

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
        assert in_audio_channels == 1, "the reference is mono"
        blocks = [
            RefGCUBlock(out_channels, in_channels, upsampling_depth, group_size)
            for _ in range(num_blocks)
        ]
        super().__init__(
            blocks, out_channels, enc_kernel_size, enc_num_basis, num_sources, upsampling_depth
        )
