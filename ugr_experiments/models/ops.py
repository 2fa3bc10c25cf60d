"""Fast CPU formulations of the convolutions of Sudo rm -rf (same functions, same weights).

Each function computes exactly what the named ``torch.nn`` layer computes, given that
layer's weight and bias tensors, but through kernels that are faster on CPU than the
generic (oneDNN) convolution paths for these shapes. Elsewhere (see
:func:`cpu_fast_path`) they fall back to the plain operations. ``tests/test_models.py``
checks outputs and gradients against the direct layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cpu_fast_path",
    "decode_overlap_add",
    "depthwise_conv1d",
    "pointwise_conv1d",
    "pointwise_conv_group_norm",
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


class _BatchedAffine(torch.autograd.Function):
    """``y[b] = W[b] @ x[b] + c[b]`` with W, c shared (leading 1) or per example (leading B).

    Forward and backward are batched matrix products; the bias gradient is a plain sum,
    so no (B, C_out, F) temporary is made for it (autograd's ``baddbmm`` makes one).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, shift: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.shared = weight.shape[0] == 1 and x.shape[0] != 1
        batch = x.shape[0]
        return torch.baddbmm(shift.expand(batch, -1, -1), weight.expand(batch, -1, -1), x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_shift = None
        if ctx.needs_input_grad[0]:
            w_t = weight.transpose(1, 2).expand(grad.shape[0], -1, -1)  # (B, C_in, C_out)
            grad_x = torch.bmm(w_t, grad)  # (B, C_in, F)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad, x.transpose(1, 2))  # (B, C_out, C_in)
            if ctx.shared:
                grad_w = grad_w.sum(0, keepdim=True)
        if ctx.needs_input_grad[2]:
            grad_shift = grad.sum((0, 2) if ctx.shared else 2).view(-1, grad.shape[1], 1)
        return grad_x, grad_w, grad_shift


def pointwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``nn.Conv1d(C_in, C_out, 1)`` as batched matrix products with the bias fused.

    Args:
        x: input features.
        weight: the Conv1d weight, (C_out, C_in, 1).
        bias: the Conv1d bias, (C_out,).

    Shape:
        x (B, C_in, F) -> (B, C_out, F)
    """
    if not cpu_fast_path(x):
        return F.conv1d(x, weight, bias)
    return _BatchedAffine.apply(x, weight.squeeze(-1)[None], bias[None, :, None])


def pointwise_conv_group_norm(
    x: Tensor, weight: Tensor, bias: Tensor, gamma: Tensor, beta: Tensor, eps: float
) -> Tensor:
    """``GroupNorm(1, C_out, eps)(Conv1d(C_in, C_out, 1)(x))`` without the C_out-wide pass.

    The statistics of ``y = W x + b`` over all (channel, frame) follow from the narrow
    input: with ``m`` the time mean and ``S`` the (centred) covariance of x, the channel
    means are ``W m + b`` and the variance is
    ``mean_c(w_c^T S w_c + (channel mean_c - mean)^2)``, both exact. The normalisation
    and affine then fold into a per-example weight and bias, so the wide output is
    written once, already normalised, and never normalised (or stored) again.

    Args:
        x: input features (C_in narrow, e.g. 128 against C_out = 512).
        weight: the Conv1d weight, (C_out, C_in, 1).
        bias: the Conv1d bias, (C_out,).
        gamma: the GroupNorm weight, (C_out,).
        beta: the GroupNorm bias, (C_out,).
        eps: the GroupNorm epsilon.

    Shape:
        x (B, C_in, F) -> (B, C_out, F)
    """
    if not cpu_fast_path(x):
        return F.group_norm(F.conv1d(x, weight, bias), 1, gamma, beta, eps)
    w = weight.squeeze(-1)  # (C_out, C_in)
    mean_x = x.mean(-1, keepdim=True)  # (B, C_in, 1)
    centred = x - mean_x  # (B, C_in, F)
    cov = torch.bmm(centred, centred.transpose(1, 2)) / x.shape[-1]  # (B, C_in, C_in)
    chan_mean = torch.matmul(w, mean_x).squeeze(-1) + bias  # (B, C_out)
    mean = chan_mean.mean(-1, keepdim=True)  # (B, 1)
    within = (torch.matmul(w, cov) * w).sum(-1)  # (B, C_out): w_c^T S w_c
    var = (within + (chan_mean - mean) ** 2).mean(-1, keepdim=True)  # (B, 1)
    scale = gamma * torch.rsqrt(var + eps)  # (B, C_out)
    shift = beta + scale * (bias - mean)  # (B, C_out)
    return _BatchedAffine.apply(x, scale.unsqueeze(-1) * w, shift.unsqueeze(-1))  # (B, C_out, F)


class _DepthwiseConv1d(torch.autograd.Function):
    """Depthwise Conv1d whose weight gradient is one grouped correlation.

    oneDNN's weight gradient for a depthwise convolution is several times slower than
    its forward pass on CPU. ``dL/dw[c, k] = sum_{b,t} g[b,c,t] x_pad[b,c,s*t+k]`` is a
    correlation of every (b, c) row of the input with the matching row of the output
    gradient (kernel length F_out, dilation s): one grouped conv1d on views, no copies.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv1d(x, weight, bias, stride, padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
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
    x: Tensor, weight: Tensor, bias: Tensor, num_sources: int, stride: int, padding: int
) -> Tensor:
    """The grouped ``nn.ConvTranspose1d`` decoder as a matrix product and an overlap-add.

    ``ConvTranspose1d(S*N -> S, L, stride, padding, output_padding=stride - 1,
    groups=S)``: each source's N masked basis coefficients per frame become L samples
    (a matrix product), which are overlap-added with hop ``stride`` (``F.fold``),
    cropped by ``padding`` on the left, plus the bias.

    Args:
        x: masked encoder frames of all sources, source-major channels.
        weight: the ConvTranspose1d weight, (S*N, 1, L).
        bias: the ConvTranspose1d bias, (S,).
        num_sources: S.
        stride: the hop.
        padding: samples cropped on each side (the output keeps ``F * stride``).

    Shape:
        x (B, S*N, F) -> (B, S, F * stride)
    """
    batch, _, frames = x.shape
    kernel = weight.shape[-1]
    if kernel != 2 * padding + 1 or not cpu_fast_path(x):
        return F.conv_transpose1d(x, weight, bias, stride, padding, stride - 1, num_sources)
    basis = weight.view(num_sources, -1, kernel).transpose(1, 2)  # (S, L, N)
    cols = torch.matmul(basis, x.view(batch, num_sources, -1, frames))  # (B, S, L, F)
    out = F.fold(
        cols.flatten(0, 1),
        (1, frames * stride),
        (1, kernel),
        padding=(0, padding),
        stride=(1, stride),
    )  # (B*S, 1, 1, F*stride)
    return out.view(batch, num_sources, -1) + bias.unsqueeze(-1)  # (B, S, F*stride)
