"""Fast CPU formulations of the layers of Sudo rm -rf (same functions, same weights).

Each function computes exactly what the named ``torch.nn`` layer(s) compute, given
their weight and bias tensors, but through kernels that are faster on CPU than the
generic (oneDNN / ATen) paths for these shapes, and storing fewer activations for the
backward pass. Elsewhere (see :func:`cpu_fast_path`) they fall back to the plain
operations. ``tests/test_models.py`` checks outputs and gradients against the layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "batched_affine",
    "cpu_fast_path",
    "decode_overlap_add",
    "depthwise_conv1d",
    "group_norm_prelu",
    "pointwise_conv1d",
    "prelu",
    "upsample_add",
]


def cpu_fast_path(x: Tensor) -> bool:
    """Whether the CPU formulations apply: a float32/float64 CPU tensor, autocast off.

    Elsewhere (CUDA, autocast, other dtypes) the plain layers are used: they are fast on
    GPUs, and ``torch.compile`` / bf16 autocast see ordinary operations.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    try:
        return not torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return not torch.is_autocast_cpu_enabled()


def batched_affine(x: Tensor, weight: Tensor, shift: Tensor) -> Tensor:
    """``weight @ x + shift`` per example, the weight shared over the batch.

    Args:
        x: input features.
        weight: (C_out, C_in).
        shift: (C_out, 1).

    Shape:
        x (B, C_in, F) -> (B, C_out, F)
    """
    if not cpu_fast_path(x):
        return torch.matmul(weight, x) + shift
    # oneDNN's 1x1 convolution: faster on the CPU than batched matrix products, forward and
    # backward (scripts/bench_model.py; docs/models.md)
    return F.conv1d(x, weight.unsqueeze(-1), shift.reshape(-1))


def pointwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``nn.Conv1d(C_in, C_out, 1)``: oneDNN's 1x1 convolution, on every device.

    Args:
        x: input features.
        weight: the Conv1d weight, (C_out, C_in, 1).
        bias: the Conv1d bias, (C_out,).

    Shape:
        x (B, C_in, F) -> (B, C_out, F)
    """
    return F.conv1d(x, weight, bias)


def _prelu_backward(grad: Tensor, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of a per-channel PReLU, from fast vectorised kernels.

    ATen's PReLU backward writes a full-size weight-gradient tensor and reduces it
    afterwards, several times the cost of the forward pass. Here the negative part of
    the gradient is split off with ReLU's backward kernel and reused for both results.

    Shape:
        grad (B, C, F), x (B, C, F), weight (C,) -> (B, C, F), (C,)
    """
    slope = weight.view(1, -1, *([1] * (x.dim() - 2)))  # (1, C, 1)
    grad_neg = grad - torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x <= 0
    grad_x = torch.addcmul(grad, grad_neg, slope - 1)  # grad * (1 or slope)
    grad_w = (grad_neg * x).sum([0, *range(2, x.dim())])
    return grad_x, grad_w


class _PReLU(torch.autograd.Function):
    """Per-channel PReLU with the backward of :func:`_prelu_backward`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.prelu(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return _prelu_backward(grad, x, weight)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """``nn.PReLU(C)`` (one slope per channel) with a faster CPU backward.

    Args:
        x: input features.
        weight: the PReLU weight, (C,).

    Shape:
        x (B, C, F) -> (B, C, F)
    """
    if not cpu_fast_path(x) or not torch.is_grad_enabled() or weight.numel() != x.shape[1]:
        return F.prelu(x, weight)
    return _PReLU.apply(x, weight)


class _GroupNormPReLU(torch.autograd.Function):
    """GroupNorm(1, C) then PReLU, keeping only the norm's input for the backward pass.

    The normalised tensor is recomputed from the saved statistics when the gradient arrives
    instead of being stored: one full-size activation less per use. The backward runs one
    example at a time (see :func:`_gn_prelu_backward_one`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, slope: Tensor, eps: float) -> Tensor:
        b, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, gamma, beta, b, c, x[0, 0].numel(), 1, eps)
        ctx.save_for_backward(x, mean, rstd, gamma, beta, slope)
        return torch.prelu(y, slope)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, mean, rstd, gamma, beta, slope = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.empty_like(x)
        sums = torch.zeros(3, x.shape[1], dtype=x.dtype)  # gamma, beta, slope gradients
        for i in range(x.shape[0]):
            one = slice(i, i + 1)
            sums += _gn_prelu_backward_one(
                grad[one], x[one], mean[one], rstd[one], gamma, beta, slope, grad_x[one]
            )
        return grad_x, sums[0], sums[1], sums[2], None


def _gn_prelu_backward_one(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    rstd: Tensor,
    gamma: Tensor,
    beta: Tensor,
    slope: Tensor,
    out: Tensor,
) -> Tensor:
    """Backward of PReLU(GroupNorm(1, C)(x)) for one example; its input gradient into ``out``.

    Profiled on the 1.0x training step (2 CPU cores), the batched form of this backward
    was a chain of full-size element-wise passes over memory. One example's (C, F) slices
    (6.5 MB at C = 512, 4 s) stay in the cache from one pass to the next, where the whole
    batch's do not. PReLU: ``g_pos`` (the gradient where the normalised ``y > 0``), the
    slope's gradient ``sum (g - g_pos) * y`` as a dot product per channel (``einsum``:
    several times faster here than ``bmm``, and no product tensor), and the gradient of
    ``y``, ``g_pos + slope * (g - g_pos)``, written over ``y``. GroupNorm(1): with the
    per-channel sums ``db = sum_f grad_y`` and ``ds = sum_f grad_y * x`` (ATen's formula),
    ``grad_x = rstd gamma grad_y + c2 x + c3`` is written straight into ``out`` (ATen's
    ``native_group_norm_backward`` would return a new tensor, copied into the batch).

    Shape:
        grad, x, out (1, C, F); mean, rstd (1, 1); gamma, beta, slope (C,) -> (3, C): the
        gradients of gamma, beta and slope
    """
    _, c, f = x.shape
    scale = rstd.view(1, 1, 1) * gamma.view(1, c, 1)  # (1, C, 1)
    shift = beta.view(1, c, 1) - mean.view(1, 1, 1) * scale  # (1, C, 1)
    y = torch.addcmul(shift, x, scale)  # the normalised tensor again, (1, C, F)
    g_pos = torch.ops.aten.threshold_backward(grad, y, 0)  # grad where y > 0
    g_neg = torch.sub(grad, g_pos)  # grad where y <= 0
    grad_slope = torch.einsum("bcf,bcf->c", g_neg, y)  # (C,)
    grad_y = torch.addcmul(g_pos, g_neg, slope.view(1, c, 1), out=y)  # grad * (1 or slope)
    del g_pos, g_neg
    db = grad_y.sum((0, 2))  # (C,)
    ds = torch.einsum("bcf,bcf->c", grad_y, x)  # (C,)
    # GroupNorm's backward (ATen's group_norm_kernel formula, one group of C * F values).
    db_total, ds_total = (db * gamma).sum(), (ds * gamma).sum()
    mean_, rstd_ = mean.view(()), rstd.view(())
    c2 = (db_total * mean_ - ds_total) * rstd_**3 / (c * f)
    c3 = -c2 * mean_ - db_total * rstd_ / (c * f)
    torch.addcmul(c3.view(1, 1, 1), x, c2.view(1, 1, 1), out=out)  # c2 x + c3
    out.addcmul_(grad_y, scale)  # + rstd gamma grad_y
    return torch.stack([(ds - mean_ * db) * rstd_, db, grad_slope])


def group_norm_prelu(x: Tensor, gamma: Tensor, beta: Tensor, slope: Tensor, eps: float) -> Tensor:
    """``PReLU(GroupNorm(1, C, eps)(x))`` storing one activation instead of two (CPU).

    Args:
        x: input features.
        gamma: the GroupNorm weight, (C,).
        beta: the GroupNorm bias, (C,).
        slope: the PReLU weight, (C,).
        eps: the GroupNorm epsilon.

    Shape:
        x (B, C, F) -> (B, C, F)
    """
    if not cpu_fast_path(x) or not torch.is_grad_enabled() or x.dim() != 3:
        return F.prelu(F.group_norm(x, 1, gamma, beta, eps), slope)
    return _GroupNormPReLU.apply(x, gamma, beta, slope, eps)


class _DepthwiseConv1d(torch.autograd.Function):
    """Depthwise Conv1d whose weight gradient is one grouped correlation.

    oneDNN's weight gradient for a depthwise convolution is several times slower than
    its forward pass on CPU. ``dL/dw[c, k] = sum_{b,t} g[b,c,t] x_pad[b,c,s*t+k]`` is a
    correlation of every (b, c) row of the input with the matching row of the output
    gradient (kernel length F_out, dilation s): one grouped conv1d on views, no copies.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv1d(x, weight, bias, stride, padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        b, c, _ = x.shape
        k, t_out = weight.shape[-1], grad.shape[-1]
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [stride], [padding], [1], False, [0], c,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            corr = F.conv1d(
                x.reshape(1, b * c, -1),
                grad.reshape(b * c, 1, t_out),
                None,
                1,
                padding,
                stride,
                b * c,
            )  # (1, B*C, >= K)
            grad_w = corr[0, :, :k].reshape(b, c, k).sum(0).unsqueeze(1)  # (C, 1, K)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b, None, None


def depthwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int) -> Tensor:
    """``nn.Conv1d(C, C, K, stride, padding, groups=C)`` with a fast CPU backward.

    Args:
        x: input features.
        weight: the Conv1d weight, (C, 1, K).
        bias: the Conv1d bias, (C,).
        stride: the convolution stride.
        padding: zero padding on both sides.

    Shape:
        x (B, C, F) -> (B, C, (F + 2 padding - K) // stride + 1)
    """
    if not cpu_fast_path(x) or not torch.is_grad_enabled():
        return F.conv1d(x, weight, bias, stride, padding, groups=x.shape[1])
    return _DepthwiseConv1d.apply(x, weight, bias, stride, padding)


def decode_overlap_add(
    sources: Sequence[Tensor], weight: Tensor, bias: Tensor, stride: int, padding: int
) -> Tensor:
    """The grouped ``nn.ConvTranspose1d`` decoder as matrix products and an overlap-add.

    ``ConvTranspose1d(S*N -> S, L, stride, padding, output_padding=stride - 1,
    groups=S)`` applied to the S sources' masked frames concatenated along channels:
    each source's N basis coefficients per frame become L samples (a matrix product),
    which are overlap-added with hop ``stride`` (``F.fold``), cropped by ``padding`` on
    the left, plus the bias. Taking the sources separately saves the concatenation.

    Args:
        sources: S tensors of masked encoder frames, (B, N, F) each.
        weight: the ConvTranspose1d weight, (S*N, 1, L).
        bias: the ConvTranspose1d bias, (S,).
        stride: the hop.
        padding: samples cropped on each side (the output keeps ``F * stride``).

    Shape:
        S x (B, N, F) -> (B, S, F * stride)
    """
    num_sources, kernel = len(sources), weight.shape[-1]
    batch, _, frames = sources[0].shape
    if kernel != 2 * padding + 1 or not cpu_fast_path(sources[0]):
        x = torch.cat(list(sources), dim=1)  # (B, S*N, F)
        return F.conv_transpose1d(x, weight, bias, stride, padding, stride - 1, num_sources)
    basis = weight.view(num_sources, -1, kernel).transpose(1, 2)  # (S, L, N)
    cols = torch.stack(
        [torch.bmm(basis[s].expand(batch, -1, -1), x) for s, x in enumerate(sources)], 1
    )  # (B, S, L, F); bmm on an expanded matrix: no transposed copies in the backward
    out = F.fold(
        cols.flatten(0, 1),  # (B*S, L, F)
        (1, frames * stride),
        (1, kernel),
        padding=(0, padding),
        stride=(1, stride),
    )  # (B*S, 1, 1, F*stride)
    return out.view(batch, num_sources, -1) + bias.unsqueeze(-1)  # (B, S, F*stride)


class _UpsampleAdd(torch.autograd.Function):
    """``fine + nearest_upsample_x2(coarse)`` as a broadcast add; strided-add backward."""

    @staticmethod
    def forward(ctx, fine: Tensor, coarse: Tensor) -> Tensor:
        return (fine.unflatten(-1, (-1, 2)) + coarse.unsqueeze(-1)).flatten(-2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        # Summing pairs as two strided views is several times faster than .sum(-1) over 2.
        return grad, grad[..., 0::2] + grad[..., 1::2]


def upsample_add(fine: Tensor, coarse: Tensor) -> Tensor:
    """``fine + nn.Upsample(scale_factor=2, mode="nearest")(coarse)``, never materialised.

    Args:
        fine: the finer resolution, (B, C, 2 F).
        coarse: the coarser resolution, (B, C, F).

    Shape:
        (B, C, 2 F), (B, C, F) -> (B, C, 2 F)
    """
    if not cpu_fast_path(fine) or not torch.is_grad_enabled():
        return (fine.unflatten(-1, (-1, 2)) + coarse.unsqueeze(-1)).flatten(-2)
    return _UpsampleAdd.apply(fine, coarse)
