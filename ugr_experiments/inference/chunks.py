"""How ``ugr-separate`` cuts a long input into overlapping chunks, and how they are blended.

All lengths are in samples at the model's rate. Neighbouring chunks overlap by
``2 * context + fade``: each discards ``context`` samples at its inner edges and the ``fade``
samples between are cross-faded with a raised-cosine pair of windows that sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["ChunkPlan", "rising_ramp"]


@dataclass(frozen=True)
class ChunkPlan:
    """How a long input is cut: all lengths in samples at the model's rate.

    Chunk ``k`` starts at ``k * hop`` (the last one ends at the input's end); two neighbours
    overlap by ``2 * context + fade``: ``context`` samples at each inner edge are discarded and
    the ``fade`` samples between are cross-faded.
    """

    chunk: int
    context: int
    fade: int
    hop: int

    @classmethod
    def from_seconds(
        cls, chunk: float, context: float, fade: float, sample_rate: int, multiple: int = 1
    ) -> ChunkPlan:
        """A plan whose hop is a multiple of ``multiple`` (the model's padding multiple).

        Raises:
            ValueError: a chunk too short for twice its context and cross-fade.
        """
        c, ctx = round(chunk * sample_rate), round(context * sample_rate)
        f = max(1, round(fade * sample_rate))
        if ctx < 0:
            raise ValueError(f"--context-seconds must be >= 0, got {context}")
        hop = (c - 2 * ctx - f) // multiple * multiple
        f = c - 2 * ctx - hop  # the rounding of the hop goes to the cross-fade
        if hop < max(f, multiple, 1):
            need = (2 * context + 2 * fade) + 2 * multiple / sample_rate
            raise ValueError(
                f"--chunk-seconds {chunk} is too short for --context-seconds {context} and "
                f"--crossfade-seconds {fade}: use a chunk of at least {need:.3f} s"
            )
        return cls(chunk=c, context=ctx, fade=f, hop=hop)

    def starts(self, length: int) -> list[int]:
        """First sample of every chunk of an input of ``length`` samples (> ``chunk``)."""
        n = 1 + math.ceil((length - self.chunk) / self.hop)
        return [k * self.hop for k in range(n - 1)] + [length - self.chunk]

    def window(self, k: int, starts: Sequence[int]) -> torch.Tensor:
        """The weight of chunk ``k``'s samples; the windows of all chunks sum to one.

        Shape:
            -> (chunk,)
        """
        w = torch.ones(self.chunk)
        ramp = rising_ramp(self.fade)
        if k > 0:
            a = self.fade_start(k - 1, starts) - starts[k]
            w[:a] = 0.0
            w[a : a + self.fade] = ramp
        if k < len(starts) - 1:
            b = self.fade_start(k, starts) - starts[k]
            w[b : b + self.fade] *= 1.0 - ramp
            w[b + self.fade :] = 0.0
        return w

    def fade_start(self, k: int, starts: Sequence[int]) -> int:
        """First sample (absolute) of the cross-fade between chunks ``k`` and ``k + 1``."""
        return starts[k] + self.chunk - self.context - self.fade


def rising_ramp(n: int) -> torch.Tensor:
    """``sin^2`` from 0 to 1 over ``n`` samples (half a Hann window); ``1 - ramp`` falls.

    Shape:
        -> (n,)
    """
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return (torch.sin(0.5 * math.pi * t) ** 2).float()
