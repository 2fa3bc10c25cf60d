"""Separate audio files with a trained model: one file per estimated source.

``ugr-separate MODEL INPUT... -o OUT`` (also ``python -m ugr_experiments.inference.separate``):

1. Every input (WAV, FLAC, OGG, ... any rate, mono or multi-channel) is mixed down to mono by
   averaging its channels and resampled to the model's rate with soxr (``data/audio.py``).
2. It is normalised as in training (PAPER.md 4): mean removed, divided by its std.
3. Long inputs are separated in overlapping chunks (:class:`ChunkPlan`), so the model's memory
   is bounded by ``batch_size x chunk`` samples whatever the input's length (the waveforms
   themselves are held in memory). Each chunk discards ``context`` samples at its inner
   edges (where the model sees padding instead of signal), and consecutive chunks are
   cross-faded over ``fade`` samples with a raised-cosine pair of windows that sum to one.
   The model's source order is arbitrary per chunk, so each chunk's sources are reordered to
   best match the previous chunk's in the cross-fade region (the permutation of highest mean
   SI-SDR, a monotone function of the squared normalised correlation): no swaps at seams.
   Chunk starts (but the last, which ends at the input's end) are multiples of the model's
   padding multiple (``model.lcm``), so chunks see the same strided grid as the whole input.
4. The estimates are de-normalised (times the input's std; the removed mean, a DC offset, is
   not put back) and written at the model's rate, or, with ``--keep-rate``, resampled back to
   the input's rate and length.

Outputs are named ``<input stem>_s<k>.<ext>`` (k = 1..S) in the output folder (subfolders of
an input folder are mirrored with ``--recursive``); WAV is written as 32-bit float (no
clipping), FLAC as 24-bit. Every input is checked before anything is written; one that cannot
be decoded is skipped, the others are separated, and the skipped ones are listed at the end
(:class:`SeparationFailures`, exit status 1; nothing is written when no input decodes). Each
input's files are written to temporary names and renamed together, so an error never leaves
partial outputs; existing outputs are never replaced without ``--overwrite``.

The chunk arithmetic is :mod:`ugr_experiments.inference.chunks` and the file handling
:mod:`ugr_experiments.inference.audio_files` (both re-exported here); this module runs the
model over the chunks and drives the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ugr_experiments.data.audio import AudioDecodeError, AudioInfo, probe
from ugr_experiments.inference.audio_files import (
    AUDIO_EXTENSIONS,
    FORMATS,
    check_inputs,
    collect_inputs,
    fit_length,
    output_paths,
    prepare_outputs,
    read_mixture,
    to_rate,
    write_atomically,
)
from ugr_experiments.inference.chunks import ChunkPlan, rising_ramp
from ugr_experiments.inference.export import LoadedModel, ModelFileError, load_model
from ugr_experiments.inference.outputs import remove_empty_dirs
from ugr_experiments.losses import pit_align
from ugr_experiments.training.distributed import resolve_device

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "NORM_EPS",
    "ChunkPlan",
    "SeparateOptions",
    "SeparationFailures",
    "align_to",
    "build_parser",
    "check_inputs",
    "collect_inputs",
    "fit_length",
    "main",
    "make_plan",
    "model_multiple",
    "output_paths",
    "prepare_outputs",
    "read_mixture",
    "rising_ramp",
    "run_model",
    "separate_chunked",
    "separate_file",
    "separate_files",
    "separate_waveform",
    "to_rate",
    "write_atomically",
]

log = logging.getLogger(__name__)


NORM_EPS = 1e-8  # as in data.base.mix_sources


def model_multiple(model: nn.Module) -> int:
    """The length the model pads its input to a multiple of (1 if it does not say)."""
    return int(getattr(model, "lcm", 1) or 1)


@torch.inference_mode()
def run_model(model: nn.Module, batch: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The model's estimates on the CPU in float32.

    Shape:
        batch (B, T) -> (B, S, T)
    """
    return model(batch.to(device)).float().cpu()


def align_to(current: torch.Tensor, previous: torch.Tensor, start: int) -> torch.Tensor:
    """Reorder ``current``'s sources to best match ``previous`` over ``previous``'s span.

    Shape:
        current (S, T), previous (S, F) compared with current[:, start:start + F] -> (S, T)
    """
    region = current[:, start : start + previous.shape[-1]]
    _, perm = pit_align(region.unsqueeze(0), previous.unsqueeze(0))  # perm (1, S)
    return current[perm[0]]


@torch.inference_mode()
def separate_chunked(
    model: nn.Module,
    mixture: torch.Tensor,
    plan: ChunkPlan | None,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Separate a (normalised) mixture of any length, chunk by chunk when it is long.

    Args:
        model: maps (B, T) to (B, S, T).
        mixture: the input at the model's rate.
        plan: how to cut it; None (or an input no longer than a chunk): one pass.
        batch_size: chunks per forward pass.
        device: where the model runs.
        progress: show a progress bar over the chunks.

    Shape:
        mixture (T,) -> (S, T) float32 on the CPU
    """
    length = mixture.shape[-1]
    if plan is None or length <= plan.chunk:
        return run_model(model, mixture[None], device)[0]
    starts = plan.starts(length)
    out: torch.Tensor | None = None
    previous = None  # (S, fade): the last chunk's aligned estimate over the next cross-fade
    bar = tqdm(total=len(starts), desc="chunks", unit="chunk", disable=not progress, leave=False)
    for first in range(0, len(starts), batch_size):
        group = starts[first : first + batch_size]
        est = run_model(model, torch.stack([mixture[s : s + plan.chunk] for s in group]), device)
        for k, (s, current) in enumerate(zip(group, est, strict=True), start=first):
            if out is None:
                out = torch.zeros(current.shape[0], length)
            if previous is not None:
                current = align_to(current, previous, plan.fade_start(k - 1, starts) - s)
            out[:, s : s + plan.chunk] += current * plan.window(k, starts)
            if k < len(starts) - 1:
                b = plan.fade_start(k, starts) - s
                previous = current[:, b : b + plan.fade].clone()
        bar.update(len(group))
    bar.close()
    assert out is not None
    return out


def separate_waveform(
    loaded: LoadedModel,
    mixture: np.ndarray,
    plan: ChunkPlan | None,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Normalise as in training, separate, de-normalise (mixture at ``loaded.sample_rate``).

    Shape:
        mixture (T,) -> (S, T) float32
    """
    x = np.asarray(mixture, dtype=np.float64)
    x = x - x.mean()
    scale = float(x.std()) + NORM_EPS
    normalised = torch.from_numpy((x / scale).astype(np.float32))
    est = separate_chunked(loaded.model, normalised, plan, batch_size, device, progress)
    return (est.double().numpy() * scale).astype(np.float32)


@dataclass(frozen=True)
class SeparateOptions:
    """What ``separate_files`` does besides choosing the files."""

    chunk_seconds: float = 8.0
    context_seconds: float = 0.5
    crossfade_seconds: float = 0.25
    batch_size: int = 4
    keep_rate: bool = False
    fmt: str = "wav"
    overwrite: bool = False
    recursive: bool = False
    progress: bool = True


def make_plan(loaded: LoadedModel, opts: SeparateOptions) -> ChunkPlan | None:
    """The chunk plan of ``opts`` for this model (None when chunking is off)."""
    if opts.chunk_seconds <= 0:
        return None
    return ChunkPlan.from_seconds(
        opts.chunk_seconds,
        opts.context_seconds,
        opts.crossfade_seconds,
        loaded.sample_rate,
        model_multiple(loaded.model),
    )


class SeparationFailures(RuntimeError):
    """Some inputs could not be separated; the others were (``written``)."""

    def __init__(
        self, failures: Sequence[tuple[Path, str]], written: list[list[Path]], total: int
    ) -> None:
        self.failures, self.written, self.total = list(failures), written, total
        lines = "".join(f"\n  {path}: {why}" for path, why in self.failures)
        super().__init__(
            f"{len(self.failures)} of {total} input(s) failed and have no outputs (the "
            f"{len(written)} other(s) were separated):{lines}"
        )


def separate_files(
    loaded: LoadedModel,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    opts: SeparateOptions = SeparateOptions(),  # noqa: B008 (frozen, never mutated)
    device: torch.device | str = "cpu",
) -> list[list[Path]]:
    """Separate every input file (or folder of files) into ``out_dir``.

    An input that cannot be decoded is skipped and the others are separated; the skipped
    ones are then raised together (:class:`SeparationFailures`, whose ``written`` lists what
    was written).

    Returns:
        The written paths, one list of ``S`` paths per input.

    Raises:
        SeparationFailures: some inputs could not be decoded (the others were separated).
        AudioDecodeError: no input can be decoded (nothing is written).
    """
    if opts.fmt not in FORMATS:
        raise ValueError(f"unsupported output format {opts.fmt!r}; choose from {list(FORMATS)}")
    out_dir = Path(out_dir)
    plan = make_plan(loaded, opts)
    found = collect_inputs(inputs, opts.recursive)
    checked, failures = check_inputs(found)
    files = [(f, info) for f, info in zip(found, checked, strict=True) if info is not None]
    targets = [output_paths(stem, out_dir, loaded.num_sources, opts.fmt) for (_, stem), _ in files]
    created = prepare_outputs(targets, out_dir, opts.overwrite)
    written: list[list[Path]] = []
    path = None
    try:
        bar = tqdm(files, desc="separate", unit="file", disable=not opts.progress)
        for ((path, _), info), paths in zip(bar, targets, strict=True):
            try:
                separate_file(loaded, path, info, paths, plan, opts, device)
            except AudioDecodeError as err:  # damaged past its header: the others go on
                failures.append((path, str(err)))
                continue
            written.append(paths)
    except BaseException:
        if not written:
            remove_empty_dirs(created)
        else:
            log.error(
                "stopped at %s: the outputs of the %d input(s) before it are complete",
                path,
                len(written),
            )
        raise
    if failures:
        if not written:
            remove_empty_dirs(created)
        raise SeparationFailures(failures, written, len(found))
    return written


def separate_file(
    loaded: LoadedModel,
    path: Path,
    info: AudioInfo,
    paths: Sequence[Path],
    plan: ChunkPlan | None,
    opts: SeparateOptions,
    device: torch.device | str,
) -> None:
    """Read, separate and write one input (its ``S`` outputs appear together or not at all)."""
    rate = loaded.sample_rate
    mixture = read_mixture(path, rate, info)
    est = separate_waveform(loaded, mixture, plan, opts.batch_size, device, opts.progress)
    if opts.keep_rate:
        est, rate = to_rate(est, rate, info), info.sample_rate
    write_atomically(paths, est, rate, opts.fmt)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ugr-separate",
        description="Separate audio files with a trained model: one file per estimated "
        "source, named <input stem>_s<k>.<format>.",
    )
    p.add_argument("model", help="an export (ugr-export), a checkpoint or a run directory")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders of audio files")
    p.add_argument("-o", "--output", required=True, help="the folder to write to")
    p.add_argument("--format", default="wav", choices=sorted(FORMATS), help="default: wav")
    p.add_argument(
        "--keep-rate", action="store_true", help="write at the input's rate (resampled back)"
    )
    p.add_argument("--chunk-seconds", type=float, default=8.0, help="0: whole input at once")
    p.add_argument("--context-seconds", type=float, default=0.5)
    p.add_argument("--crossfade-seconds", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4, help="chunks per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--recursive", action="store_true", help="also search subfolders of folders")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> None:
    """``ugr-separate MODEL INPUT... -o OUT``; errors exit with a message, nothing partial."""
    args = build_parser().parse_intermixed_args(argv)
    opts = SeparateOptions(
        chunk_seconds=args.chunk_seconds,
        context_seconds=args.context_seconds,
        crossfade_seconds=args.crossfade_seconds,
        batch_size=max(1, args.batch_size),
        keep_rate=args.keep_rate,
        fmt=args.format,
        overwrite=args.overwrite,
        recursive=args.recursive,
        progress=not args.no_progress,
    )
    try:
        device = resolve_device(args.device)
        loaded = load_model(args.model, device)
        start = time.perf_counter()
        written = separate_files(loaded, args.inputs, args.output, opts, device)
    except SeparationFailures as err:  # the other inputs were separated
        report_written(err.written, args.output, start)
        print(f"ugr-separate: error: {err}", file=sys.stderr)
        sys.exit(1)
    except (ModelFileError, AudioDecodeError, OSError, ValueError) as err:
        sys.exit(f"ugr-separate: error: {err}")
    report_written(written, args.output, start)


def report_written(written: list[list[Path]], output: str | Path, start: float) -> None:
    """What was written, and the real-time factor: reading, resampling, separating and
    writing, model loading excluded (seconds of audio separated per second of wall time)."""
    elapsed = time.perf_counter() - start
    seconds = sum(probe(paths[0]).duration for paths in written if paths)
    count = sum(len(w) for w in written)
    print(f"wrote {count} file(s) for {len(written)} input(s) to {output}")
    print(
        f"separated {seconds:.1f} s of audio in {elapsed:.1f} s: "
        f"{seconds / max(elapsed, 1e-9):.1f} s of audio per second (real-time factor)"
    )


if __name__ == "__main__":
    main()
