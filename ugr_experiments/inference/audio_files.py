"""The files of ``ugr-separate``: finding and checking inputs, reading and writing audio.

Inputs are read whole, mixed down to mono and resampled with soxr; outputs are named
``<input stem>_s<k>.<ext>``, checked for clashes before anything is written, and the ``S``
files of one input are written to temporary names and renamed together.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ugr_experiments.data.audio import AudioDecodeError, AudioInfo, check_decodable, read_frames
from ugr_experiments.data.audio import resample as soxr_resample
from ugr_experiments.inference.outputs import OutputError, file_mode, make_output_dir

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "check_inputs",
    "collect_inputs",
    "fit_length",
    "output_paths",
    "prepare_outputs",
    "read_mixture",
    "to_rate",
    "write_atomically",
]

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
# Output format -> (libsndfile format, subtype).
FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}


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
    mode, tmps = file_mode(), list[Path]()
    try:
        for path, signal in zip(paths, signals, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmps.append(Path(name))
            sf.write(name, signal, rate, format=container, subtype=subtype)
            os.chmod(name, mode)
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


def check_inputs(
    inputs: Sequence[tuple[Path, Path]],
) -> tuple[list[AudioInfo | None], list[tuple[Path, str]]]:
    """Header facts of every input (None where it cannot be decoded), and the failures.

    Raises:
        AudioDecodeError: no input at all can be decoded (nothing will be written).
    """
    infos: list[AudioInfo | None] = []
    failures: list[tuple[Path, str]] = []
    for path, _ in inputs:
        try:
            infos.append(check_decodable(path))
        except AudioDecodeError as err:
            infos.append(None)
            failures.append((path, f"not an audio file libsndfile can decode ({err})"))
    if inputs and len(failures) == len(inputs):
        path, why = failures[0]
        more = f" (and {len(failures) - 1} more input(s) like it)" if len(failures) > 1 else ""
        raise AudioDecodeError(f"{path} is {why}{more}; nothing was written")
    return infos, failures


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
