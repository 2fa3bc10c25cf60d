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
clipping), FLAC as 24-bit. Every input is checked before anything is written; each input's
files are written to temporary names and renamed together, so an error never leaves partial
outputs; existing outputs are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from ugr_experiments.data.audio import AudioDecodeError, AudioInfo, check_decodable, read_frames
from ugr_experiments.data.audio import resample as soxr_resample
from ugr_experiments.inference.export import (
    LoadedModel,
    ModelFileError,
    OutputError,
    file_mode,
    load_model,
    make_output_dir,
    remove_empty_dirs,
)
from ugr_experiments.losses import pit_align
from ugr_experiments.training.distributed import resolve_device

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
# Output format -> (libsndfile format, subtype).
FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}
NORM_EPS = 1e-8  # as in data.base.mix_sources


# ---------------------------------------------------------------------------------------------
# Chunked separation
# ---------------------------------------------------------------------------------------------


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


def model_multiple(model: nn.Module) -> int:
    """The length the model pads its input to a multiple of (1 if it does not say)."""
    return int(getattr(model, "lcm", 1) or 1)


@torch.no_grad()
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


@torch.no_grad()
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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the last axis to ``length``."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def read_mixture(path: Path, sample_rate: int, info: AudioInfo) -> np.ndarray:
    """The whole file, mixed down to mono, at ``sample_rate``.

    Shape:
        -> (frames * sample_rate // file rate,) float32
    """
    x = read_frames(path, 0, info.frames)
    y = soxr_resample(x, info.sample_rate, sample_rate)
    return fit_length(y, info.frames * sample_rate // info.sample_rate)


def to_rate(sources: np.ndarray, rate: int, info: AudioInfo) -> np.ndarray:
    """Estimates at the model's rate resampled back to the input's rate and length.

    Shape:
        sources (S, T) -> (S, info.frames)
    """
    back = np.stack([soxr_resample(s, rate, info.sample_rate) for s in sources])
    return fit_length(back, info.frames)


def write_atomically(paths: Sequence[Path], signals: np.ndarray, rate: int, fmt: str) -> None:
    """Write ``signals[k]`` to ``paths[k]``: all files appear together, or none does."""
    container, subtype = FORMATS[fmt]
    mode, tmps = file_mode(), []
    try:
        for path, signal in zip(paths, signals, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
            sf.write(tmp, signal, rate, format=container, subtype=subtype)
            os.chmod(tmp, mode)
        for tmp, path in zip(tmps, paths, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    peak = float(np.abs(signals).max()) if signals.size else 0.0
    if subtype.startswith("PCM") and peak > 1.0:
        log.warning("%s: peak %.2f clipped to 1.0 in %s (use --format wav)", paths[0], peak, fmt)


def output_paths(stem: Path, out_dir: Path, num_sources: int, fmt: str) -> list[Path]:
    """``<out_dir>/<stem>_s1.<fmt>`` ... ``_s<S>``."""
    return [out_dir / stem.parent / f"{stem.name}_s{k}.{fmt}" for k in range(1, num_sources + 1)]


def collect_inputs(
    inputs: Sequence[str | Path], recursive: bool = False
) -> list[tuple[Path, Path]]:
    """``(file, output stem)`` of every input; folders give their audio files, sorted.

    Raises:
        FileNotFoundError: an input that does not exist, or a folder without audio files.
    """
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_file():
            found.append((item, Path(item.stem)))
        elif item.is_dir():
            pattern = item.rglob("*") if recursive else item.glob("*")
            files = sorted(p for p in pattern if p.suffix.lower() in AUDIO_EXTENSIONS)
            files = [p for p in files if p.is_file()]
            if not files:
                raise FileNotFoundError(
                    f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {item}"
                    + ("" if recursive else "; pass --recursive to search its subfolders")
                )
            found += [(p, p.relative_to(item).with_suffix("")) for p in files]
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    return found


def check_inputs(inputs: Sequence[tuple[Path, Path]]) -> list[AudioInfo]:
    """Header facts of every input; the first unreadable one raises before any output."""
    infos = []
    for path, _ in inputs:
        try:
            infos.append(check_decodable(path))
        except AudioDecodeError as err:
            raise AudioDecodeError(
                f"{path} is not an audio file libsndfile can decode ({err}); nothing was written"
            ) from None
    return infos


def prepare_outputs(
    targets: Sequence[Sequence[Path]], out_dir: Path, overwrite: bool
) -> list[Path]:
    """Check that no output clashes or is already there, then create the output folder.

    Returns:
        The folders created (removed again if nothing gets written).

    Raises:
        OutputError: two inputs map to the same output, outputs exist and ``overwrite`` is
            false, or the folder cannot be created or written.
    """
    counts = Counter(p for group in targets for p in group)
    dupes = sorted(str(p) for p, n in counts.items() if n > 1)
    if dupes:
        raise OutputError(
            f"several inputs would write {dupes[:3]}: rename the inputs or separate them apart"
        )
    existing = sorted(str(p) for p in counts if p.exists())
    if existing and not overwrite:
        raise OutputError(
            f"{len(existing)} output file(s) exist, e.g. {existing[:3]}; "
            "pass --overwrite to replace them, or choose another --output folder"
        )
    return make_output_dir(out_dir)


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


def separate_files(
    loaded: LoadedModel,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    opts: SeparateOptions = SeparateOptions(),  # noqa: B008 (frozen, never mutated)
    device: torch.device | str = "cpu",
) -> list[list[Path]]:
    """Separate every input file (or folder of files) into ``out_dir``.

    Returns:
        The written paths, one list of ``S`` paths per input.
    """
    if opts.fmt not in FORMATS:
        raise ValueError(f"unsupported output format {opts.fmt!r}; choose from {list(FORMATS)}")
    out_dir = Path(out_dir)
    plan = make_plan(loaded, opts)
    files = collect_inputs(inputs, opts.recursive)
    infos = check_inputs(files)
    targets = [output_paths(stem, out_dir, loaded.num_sources, opts.fmt) for _, stem in files]
    created = prepare_outputs(targets, out_dir, opts.overwrite)
    bar = tqdm(files, desc="separate", unit="file", disable=not opts.progress)
    done = 0
    try:
        for (path, _), info, paths in zip(bar, infos, targets, strict=True):
            separate_file(loaded, path, info, paths, plan, opts, device)
            done += 1
    except BaseException:
        if done == 0:
            remove_empty_dirs(created)
        else:
            log.error(
                "stopped at %s: the outputs of the %d input(s) before it are complete",
                files[done][0],
                done,
            )
        raise
    return targets


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
        written = separate_files(loaded, args.inputs, args.output, opts, device)
    except (ModelFileError, AudioDecodeError, OSError, ValueError) as err:
        sys.exit(f"ugr-separate: error: {err}")
    count = sum(len(w) for w in written)
    print(f"wrote {count} file(s) for {len(written)} input(s) to {args.output}")


if __name__ == "__main__":
    main()
