"""Sudo rm -rf (Tzinis, Casebeer, Wang, Smaragdis, MLSP 2020): the original network, fast.

The network is the one of PAPER.md section 4 and of the authors' code
(etzinis/sudo_rm_rf, ``sudo_rm_rf/dnn/models/sudormrf.py``): same function, same
parameter names and shapes (so the authors' checkpoints load as they are, see
:func:`load_authors_state_dict`), same parameter count (1.0x: 2,662,022). Only the
way it is computed differs (see docs/models.md for the measurements):

* The mask head, a ``Conv2d(1 -> S, kernel (N+1, 1))`` that slides along the N
  encoder channels, is a banded Toeplitz N x N matrix per source. It is built
  from the kernel and folded, with the 1x1 convolution before it, into one
  (N x C) matrix, so the head is one matrix product on the C = 128 bottleneck
  channels instead of a convolution over N x N x frames. With two sources the
  softmax only needs the difference of the two logits, which halves it again.
* On CPU, the convolutions, GroupNorm + PReLU, the decoder and the upsampling
  sums run through the formulations of :mod:`ugr_experiments.models.ops` (faster
  kernels, fewer stored activations); elsewhere through the plain layers.
* Nearest-neighbour upsampling plus the top-down sum is a broadcast add on a
  (..., F/2, 2) view: the upsampled tensor is never materialised.
* Input padding is ``F.pad`` (the authors' code allocated a CPU float32 tensor).

The building blocks (ConvNorm, NormAct, UBlock) are in :mod:`ugr_experiments.models.blocks`.
``tests/reference_sudormrf.py`` keeps the direct formulation; the tests check
that outputs and gradients agree to float32 tolerance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ugr_experiments.models.blocks import GN_EPS, UBlock
from ugr_experiments.models.common import (
    as_batch_channel_time,
    check_sizes,
    load_authors_state_dict,
)
from ugr_experiments.models.ops import batched_affine, decode_overlap_add, pointwise_conv1d

__all__ = [
    "GN_EPS",
    "PRESETS",
    "SuDORMRF",
    "UBlock",
    "load_authors_state_dict",
    "pad_multiple",
    "toeplitz_index",
]


# Sizes of the authors' networks (PAPER.md section 4) and a CPU-sized one.
# Parameter counts (2 sources): 0.25x 791,174; 0.5x 1,414,790; 1.0x 2,662,022.
_PAPER = dict(
    out_channels=128,
    in_channels=512,
    upsampling_depth=5,
    enc_kernel_size=21,
    enc_num_basis=512,
    num_sources=2,
)
PRESETS: dict[str, dict[str, int]] = {
    "sudormrf_025x": {**_PAPER, "num_blocks": 4},
    "sudormrf_05x": {**_PAPER, "num_blocks": 8},
    "sudormrf_1x": {**_PAPER, "num_blocks": 16},
    # Trains in seconds per step on 2 CPU cores at 8 kHz, 1 s segments, batch 8.
    "sudormrf_cpu": dict(
        out_channels=64,
        in_channels=256,
        num_blocks=4,
        upsampling_depth=4,
        enc_kernel_size=21,
        enc_num_basis=256,
        num_sources=2,
    ),
}


def pad_multiple(enc_kernel_size: int, upsampling_depth: int) -> int:
    """The length the input is zero-padded to a multiple of.

    The authors pad to ``lcm(L // 2, 2 ** depth)``. The network needs the number of
    encoder frames (length / (L // 2)) to be divisible by ``2 ** (depth - 1)`` (the
    coarsest resolution); the authors' rule gives that when L // 2 has exactly one
    factor 2 (L = 21: 160 samples for depth 5). We take the lcm of both, which is
    the authors' value whenever theirs works (same function, same padding) and a
    valid one otherwise.

    Args:
        enc_kernel_size: encoder kernel size L (odd); the stride is L // 2.
        upsampling_depth: number of resolutions in a U-ConvBlock.

    Returns:
        The padding multiple in samples.
    """
    stride = enc_kernel_size // 2
    authors = math.lcm(stride, 2**upsampling_depth)
    return math.lcm(authors, stride * 2 ** (upsampling_depth - 1))


def toeplitz_index(num_basis: int) -> Tensor:
    """Index that turns the mask kernel into its banded Toeplitz matrix.

    The mask ``Conv2d(1, S, kernel (N+1, 1), padding (P, 0))``, P = N - N // 2, gives
    ``out[n] = sum_k w[k] x[n + k - P]``, i.e. ``out = M x`` with
    ``M[n, m] = w[m - n + P]`` where ``0 <= m - n + P <= N`` and 0 elsewhere. The
    index points into the kernel shifted by one, with 0 pointing at a prepended zero.

    Args:
        num_basis: number of encoder channels N (even).

    Returns:
        Long tensor of shape (N, N).
    """
    pad = num_basis - num_basis // 2
    n = torch.arange(num_basis)
    k = n[None, :] - n[:, None] + pad  # (N, N): k = m - n + P
    return torch.where((k >= 0) & (k <= num_basis), k + 1, torch.zeros_like(k))


class SuDORMRF(nn.Module):
    """The original Sudo rm -rf separation network (parameter names as the authors').

    Args:
        out_channels: bottleneck channels C (128 in the paper).
        in_channels: channels C_U inside the U-ConvBlocks (512).
        num_blocks: number of U-ConvBlocks U (4 / 8 / 16 for 0.25x / 0.5x / 1.0x).
        upsampling_depth: resolutions per block (5 in the paper: 4 stride-2 convs).
        enc_kernel_size: encoder kernel L (odd); the stride is L // 2.
        enc_num_basis: encoder channels N (even).
        num_sources: number of sources S.

    Shape:
        - Input: (B, T) or (B, 1, T), any T >= 1
        - Output: (B, S, T)
    """

    toeplitz_index: Tensor  # buffer (N, N), registered in __init__

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
        check_sizes(
            "SuDORMRF",
            out_channels=out_channels,
            in_channels=in_channels,
            num_blocks=num_blocks,
            upsampling_depth=upsampling_depth,
            enc_kernel_size=enc_kernel_size,
            enc_num_basis=enc_num_basis,
            num_sources=num_sources,
        )
        if enc_num_basis % 2:
            raise ValueError(
                f"SuDORMRF: enc_num_basis must be even (the mask Conv2d returns N + 1 rows for "
                f"odd N), got {enc_num_basis}"
            )
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.num_blocks = num_blocks
        self.upsampling_depth = upsampling_depth
        self.enc_kernel_size = enc_kernel_size
        self.enc_num_basis = enc_num_basis
        self.num_sources = num_sources
        self.lcm = pad_multiple(enc_kernel_size, upsampling_depth)
        stride = enc_kernel_size // 2
        n, s = enc_num_basis, num_sources

        self.encoder = nn.Sequential(
            nn.Conv1d(1, n, enc_kernel_size, stride=stride, padding=stride), nn.ReLU()
        )
        self.ln = nn.GroupNorm(1, n, eps=GN_EPS)
        self.l1 = nn.Conv1d(n, out_channels, 1)
        self.sm = nn.Sequential(
            *(UBlock(out_channels, in_channels, upsampling_depth) for _ in range(num_blocks))
        )
        self.reshape_before_masks = nn.Conv1d(out_channels, n, 1) if out_channels != n else None
        # Kept as a Conv2d for its parameter names/shapes; computed as a matrix product.
        self.m = nn.Conv2d(1, s, (n + 1, 1), padding=(n - n // 2, 0))
        self.decoder = nn.ConvTranspose1d(
            n * s,
            s,
            enc_kernel_size,
            stride=stride,
            padding=stride,
            output_padding=stride - 1,
            groups=s,
        )
        # Unused in the forward pass; kept because the authors' model has it (it counts
        # in their parameter numbers and is in their state dicts).
        self.ln_mask_in = nn.GroupNorm(1, n, eps=GN_EPS)
        self.register_buffer("toeplitz_index", toeplitz_index(n), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        x, length = as_batch_channel_time(wav, "SuDORMRF")  # (B, 1, T)
        x = F.pad(x, (0, -length % self.lcm))  # (B, 1, T')
        enc = self.encoder(x)  # (B, N, F)
        l1, dec = self.l1, self.decoder
        # Both built with a bias and integer padding (see __init__).
        assert l1.bias is not None and dec.bias is not None and not isinstance(dec.padding, str)
        h = pointwise_conv1d(self.ln(enc), l1.weight, l1.bias)  # (B, C, F)
        h = self.sm(h)  # (B, C, F)
        est = decode_overlap_add(
            self._masked(h, enc), dec.weight, dec.bias, dec.stride[0], dec.padding[0]
        )  # (B, S, T')
        return est[..., :length]  # (B, S, T)

    def _mask_matrix(self) -> tuple[Tensor, Tensor]:
        """The mask head (1x1 conv C -> N, then the channel-sliding Conv2d) as one matrix.

        Returns:
            Weight (S', N, C) and bias (S', N, 1), where S' = 1 holds the logit
            difference of source 0 and 1 when S == 2 (softmax of two = sigmoid of
            the difference), else S' = S.
        """
        w = self.m.weight.flatten(1)  # (S, N+1)
        b = self.m.bias  # (S,)
        assert b is not None  # the Conv2d is built with a bias
        if self.num_sources == 2:
            w, b = w[:1] - w[1:], b[:1] - b[1:]  # (1, N+1), (1,)
        toeplitz = F.pad(w, (1, 0))[:, self.toeplitz_index]  # (S', N, N)
        bias = b[:, None, None].expand(-1, self.enc_num_basis, 1)  # (S', N, 1)
        if self.reshape_before_masks is None:
            return toeplitz, bias
        w_r = self.reshape_before_masks.weight.squeeze(-1)  # (N, C)
        b_r = self.reshape_before_masks.bias  # (N,)
        assert b_r is not None  # the Conv1d is built with a bias
        return toeplitz @ w_r, bias + (toeplitz @ b_r)[..., None]

    def _masked(self, h: Tensor, enc: Tensor) -> list[Tensor]:
        """Masked encoder frames of every source, from the separation features.

        Args:
            h: separation features, (B, C, F).
            enc: encoder output, (B, N, F).

        Returns:
            S tensors of shape (B, N, F).
        """
        weight, bias = self._mask_matrix()  # (S', N, C), (S', N, 1)
        if self.num_sources == 2:
            # softmax([l0, l1]) = [sigmoid(l0 - l1), 1 - sigmoid(l0 - l1)]
            diff = batched_affine(h, weight[0], bias[0])  # (B, N, F)
            first = torch.sigmoid(diff) * enc  # (B, N, F)
            return [first, enc - first]
        logits = torch.matmul(weight, h.unsqueeze(1)) + bias  # (B, S', N, F)
        masks = torch.sigmoid(logits) if self.num_sources == 1 else torch.softmax(logits, dim=1)
        return list((masks * enc.unsqueeze(1)).unbind(1))  # S x (B, N, F)
