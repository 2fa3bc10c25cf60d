"""Direct reference formulation of Sudo rm -rf (test-only), as PAPER.md section 4 states it.

Every layer is computed the plain way: the mask head is the ``Conv2d(1 -> S, kernel
(N+1, 1))`` sliding along the N encoder channels, upsampling is ``nn.Upsample``
(nearest, x2) followed by the sum, the masks are a softmax over the sources. The
parameter names and shapes are the authors' (and the fast model's), so one state
dict loads into both. ``scripts/bench_model.py`` times it against the fast model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ugr_experiments.models.sudormrf import GN_EPS, pad_multiple


class RefConvNorm(nn.Module):
    """Conv1d (same padding) + GroupNorm(1) [+ PReLU].

    Shape:
        - Input: (B, C_in, F)
        - Output: (B, C_out, ceil(F / stride))
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups)
        self.norm = nn.GroupNorm(1, c_out, eps=GN_EPS)
        self.act = nn.PReLU(c_out) if act else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.conv(x))
        return self.act(y) if self.act is not None else y


class RefNormAct(nn.Module):
    """GroupNorm(1) + PReLU.

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, eps=GN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(x))


class RefUBlock(nn.Module):
    """U-ConvBlock with an explicit list of resolutions and ``nn.Upsample``.

    Shape:
        - Input: (B, C, F)
        - Output: (B, C, F)
    """

    def __init__(self, c: int, c_u: int, depth: int) -> None:
        super().__init__()
        self.proj_1x1 = RefConvNorm(c, c_u, 1, act=True)
        strides = [1] + [2] * (depth - 1)
        self.spp_dw = nn.ModuleList(RefConvNorm(c_u, c_u, 5, s, groups=c_u) for s in strides)
        self.upsampler = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv_1x1_exp = RefConvNorm(c_u, c, 1)
        self.final_norm = RefNormAct(c_u)
        self.module_act = RefNormAct(c)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.spp_dw[0](self.proj_1x1(x))]  # (B, C_U, F)
        for layer in self.spp_dw[1:]:
            outs.append(layer(outs[-1]))  # (B, C_U, F / 2^k)
        for _ in range(len(outs) - 1):
            top = self.upsampler(outs.pop())
            outs[-1] = outs[-1] + top
        return self.module_act(self.conv_1x1_exp(self.final_norm(outs[0])) + x)


class ReferenceSuDORMRF(nn.Module):
    """Sudo rm -rf computed layer by layer as described (the speed baseline).

    Args: as ``ugr_experiments.models.SuDORMRF``.

    Shape:
        - Input: (B, T) or (B, 1, T)
        - Output: (B, S, T)
    """

    def __init__(
        self,
        out_channels: int = 128,
        in_channels: int = 512,
        num_blocks: int = 16,
        upsampling_depth: int = 5,
        enc_kernel_size: int = 21,
        enc_num_basis: int = 512,
        num_sources: int = 2,
    ) -> None:
        super().__init__()
        n, s, stride = enc_num_basis, num_sources, enc_kernel_size // 2
        self.num_sources = num_sources
        self.lcm = pad_multiple(enc_kernel_size, upsampling_depth)
        self.encoder = nn.Sequential(
            nn.Conv1d(1, n, enc_kernel_size, stride=stride, padding=stride), nn.ReLU()
        )
        self.ln = nn.GroupNorm(1, n, eps=GN_EPS)
        self.l1 = nn.Conv1d(n, out_channels, 1)
        self.sm = nn.Sequential(
            *(RefUBlock(out_channels, in_channels, upsampling_depth) for _ in range(num_blocks))
        )
        self.reshape_before_masks = nn.Conv1d(out_channels, n, 1) if out_channels != n else None
        self.m = nn.Conv2d(1, s, (n + 1, 1), padding=(n - n // 2, 0))
        self.decoder = nn.ConvTranspose1d(
            n * s, s, enc_kernel_size, stride, stride, output_padding=stride - 1, groups=s
        )
        self.ln_mask_in = nn.GroupNorm(1, n, eps=GN_EPS)  # unused, as in the authors' code

    def forward(self, wav: Tensor) -> Tensor:
        x = wav.unsqueeze(1) if wav.dim() == 2 else wav  # (B, 1, T)
        length = x.shape[-1]
        padded = torch.zeros(
            *x.shape[:-1], length + (-length % self.lcm), dtype=x.dtype, device=x.device
        )
        padded[..., :length] = x
        enc = self.encoder(padded)  # (B, N, F)
        h = self.sm(self.l1(self.ln(enc)))  # (B, C, F)
        if self.reshape_before_masks is not None:
            h = self.reshape_before_masks(h)  # (B, N, F)
        logits = self.m(h.unsqueeze(1))  # (B, S, N, F)
        if self.num_sources == 1:
            masks = torch.sigmoid(logits)
        else:
            masks = F.softmax(logits, dim=1)
        masked = masks * enc.unsqueeze(1)  # (B, S, N, F)
        est = self.decoder(masked.reshape(masked.shape[0], -1, masked.shape[-1]))  # (B, S, T')
        return est[..., :length]
