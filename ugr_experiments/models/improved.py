"""SuDoRM-RF++ (Tzinis, Wang, Jiang, Smaragdis, J. Signal Process. Syst. 2022), improved.

The function of the authors' ``SuDORMRF`` in ``sudo_rm_rf/dnn/models/improved_sudormrf.py``
(etzinis/sudo_rm_rf), with their parameter names and shapes, so their checkpoints load
(:func:`~ugr_experiments.models.common.load_authors_state_dict`). What changed from the
original Sudo rm -rf (``sudormrf.py``):

* the encoder is a bias-free Conv1d without ReLU (``encoder.weight``); its output, kept
  aside, is what the masks multiply;
* global layer norms are the authors' ``GlobLN`` (``gamma`` / ``beta``), PReLUs have one
  slope per layer;
* the U-ConvBlock merges with a plain 1x1 convolution (``res_conv``) and no activation
  after the residual sum (:class:`~ugr_experiments.models.blocks.ImprovedUBlock`);
* the mask head is PReLU then one 1x1 convolution to S x N channels with a ReLU
  (``mask_net``), no softmax over the sources;
* the decoder is one (ungrouped) ConvTranspose1d from all S x N masked channels to the S
  signals, without bias;
* the input is padded to a multiple of ``(L // 2) * 2 ** upsampling_depth``.

The layers run through the CPU formulations of :mod:`ugr_experiments.models.ops` (1x1 and
depthwise convolutions, fused norm + PReLU, upsample-and-add). ``tests/reference_sudormrf_pp.py``
keeps a direct formulation; tests check outputs and gradients against it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ugr_experiments.models import sudormrf
from ugr_experiments.models.blocks import GlobLN, ImprovedUBlock, channel_slopes
from ugr_experiments.models.common import as_batch_channel_time, check_sizes
from ugr_experiments.models.ops import pointwise_conv1d, prelu

__all__ = ["PRESETS", "ImprovedSuDORMRF", "MaskingSeparator", "improved_pad_multiple"]

# The released WSJ0-2mix model (Improved_Sudormrf_U16_Bases512: the original 1.0x network
# with 256 bottleneck channels) and its half-depth sibling, named as the MLSP paper names 16
# and 8 blocks (1.0x, 0.5x). Parameters (S = 2), the authors' class with the same
# arguments: 1.0x 5,016,353; 0.5x 2,732,817. The CPU preset has sudormrf_cpu's sizes.
_PAPER = {**sudormrf.PRESETS["sudormrf_1x"], "out_channels": 256}
PRESETS: dict[str, dict[str, int]] = {
    "sudormrf_improved_05x": {**_PAPER, "num_blocks": 8},
    "sudormrf_improved_1x": _PAPER,
    "sudormrf_improved_cpu": dict(sudormrf.PRESETS["sudormrf_cpu"]),
}


def improved_pad_multiple(enc_kernel_size: int, upsampling_depth: int) -> int:
    """The authors' padding multiple for the improved networks: ``(L // 2) * 2 ** depth``.

    It gives ``2 ** depth`` encoder frames per multiple, which every stride-2 level halves.
    """
    return enc_kernel_size // 2 * 2**upsampling_depth


class MaskingSeparator(nn.Module):
    """Encoder, separation blocks, ReLU masks, decoder: the body of SuDoRM-RF++ and its GC form.

    Args:
        model: the class name, for messages.
        block: builds one separation block, ``(B, C, F) -> (B, C, F)``.
        in_audio_channels: input channels A (each gets its S estimates).
        out_channels: bottleneck channels C.
        in_channels: channels C_U inside the blocks.
        num_blocks: number of separation blocks U.
        upsampling_depth: resolutions per block (sets the padding multiple).
        enc_kernel_size: encoder kernel L (odd); the stride is L // 2.
        enc_num_basis: encoder channels N.
        num_sources: number of sources S.

    Shape:
        - Input: (B, T) or (B, A, T), any T >= 1
        - Output: (B, S * A, T)
    """

    def __init__(
        self,
        model: str,
        block: Callable[[], nn.Module],
        *,
        in_audio_channels: int,
        out_channels: int,
        in_channels: int,
        num_blocks: int,
        upsampling_depth: int,
        enc_kernel_size: int,
        enc_num_basis: int,
        num_sources: int,
    ) -> None:
        super().__init__()
        check_sizes(
            model,
            in_audio_channels=in_audio_channels,
            out_channels=out_channels,
            in_channels=in_channels,
            num_blocks=num_blocks,
            upsampling_depth=upsampling_depth,
            enc_kernel_size=enc_kernel_size,
            enc_num_basis=enc_num_basis,
            num_sources=num_sources,
        )
        self.model_name = model
        self.in_audio_channels = in_audio_channels
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.num_blocks = num_blocks
        self.upsampling_depth = upsampling_depth
        self.enc_kernel_size = enc_kernel_size
        self.enc_num_basis = enc_num_basis
        self.num_sources = num_sources
        self.lcm = improved_pad_multiple(enc_kernel_size, upsampling_depth)
        stride = enc_kernel_size // 2
        n, outputs = enc_num_basis, num_sources * in_audio_channels

        self.encoder = nn.Conv1d(
            in_audio_channels, n, enc_kernel_size, stride=stride, padding=stride, bias=False
        )
        nn.init.xavier_uniform_(self.encoder.weight)  # as the authors initialise it
        self.ln = GlobLN(n)
        self.bottleneck = nn.Conv1d(n, out_channels, 1)
        self.sm = nn.Sequential(*(block() for _ in range(num_blocks)))
        self.mask_net = nn.Sequential(nn.PReLU(), nn.Conv1d(out_channels, outputs * n, 1))
        self.decoder = nn.ConvTranspose1d(
            outputs * n,
            outputs,
            enc_kernel_size,
            stride=stride,
            padding=stride,
            output_padding=stride - 1,
            bias=False,
        )
        nn.init.xavier_uniform_(self.decoder.weight)

    def forward(self, wav: Tensor) -> Tensor:
        x, length = as_batch_channel_time(wav, self.model_name, self.in_audio_channels)
        x = F.pad(x, (0, -length % self.lcm))  # (B, A, T')
        enc = self.encoder(x)  # (B, N, F)
        bottleneck = self.bottleneck
        assert bottleneck.bias is not None  # built with a bias
        h = pointwise_conv1d(self.ln(enc), bottleneck.weight, bottleneck.bias)  # (B, C, F)
        h = self.sm(h)  # (B, C, F)
        act, conv = self.mask_net
        assert isinstance(act, nn.PReLU) and isinstance(conv, nn.Conv1d) and conv.bias is not None
        h = prelu(h, channel_slopes(act, h.shape[1]))
        logits = pointwise_conv1d(h, conv.weight, conv.bias)  # (B, S*A*N, F)
        batch, frames = enc.shape[0], enc.shape[-1]
        masks = torch.relu(logits).view(batch, -1, self.enc_num_basis, frames)  # (B, S*A, N, F)
        masked = masks * enc.unsqueeze(1)  # (B, S*A, N, F)
        est = self.decoder(masked.view(batch, -1, frames))  # (B, S*A, T')
        return est[..., :length]


class ImprovedSuDORMRF(MaskingSeparator):
    """SuDoRM-RF++: the authors' ``improved_sudormrf.SuDORMRF`` (same arguments and defaults).

    Args:
        out_channels: bottleneck channels C.
        in_channels: channels C_U inside the U-ConvBlocks.
        num_blocks: number of U-ConvBlocks U.
        upsampling_depth: resolutions per block (the authors' class default 4; their
            released models and scripts use 5).
        enc_kernel_size: encoder kernel L (odd); the stride is L // 2.
        enc_num_basis: encoder channels N.
        num_sources: number of sources S.

    Shape:
        - Input: (B, T) or (B, 1, T), any T >= 1
        - Output: (B, S, T)
    """

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
        super().__init__(
            "ImprovedSuDORMRF",
            lambda: ImprovedUBlock(out_channels, in_channels, upsampling_depth),
            in_audio_channels=1,
            out_channels=out_channels,
            in_channels=in_channels,
            num_blocks=num_blocks,
            upsampling_depth=upsampling_depth,
            enc_kernel_size=enc_kernel_size,
            enc_num_basis=enc_num_basis,
            num_sources=num_sources,
        )
