"""Audio I/O for the corpus loaders: read only the frames a crop needs, mix down, resample.

- Reads go through ``soundfile`` (libsndfile: WAV, FLAC, OGG, uncompressed NIST SPHERE, ...)
  and touch only the requested frames (``soundfile.read(start=, frames=)``).
- Multi-channel files are mixed down to mono by averaging the channels.
- Other sample rates are converted to the model's rate with soxr (a band-limited resampler,
  quality ``HQ``); a crop is read with a few samples of context on each side so the
  resampling filter sees real signal, not zeros, at the crop's edges.
- Original WSJ0 ``.wv1``/``.wv2`` files are NIST SPHERE with shorten compression, which
  libsndfile cannot decode: they are detected from their header and reported with the
  command that converts them (:class:`SphereError`).

Offsets and lengths of :func:`read_segment` are in samples *at the target rate*; the file-rate
frames are computed from them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SPHERE_MAGIC = b"NIST_1A"
RESAMPLE_QUALITY = "HQ"
# Context (target-rate samples) read on each side of a crop before resampling it: enough for
# soxr HQ's filter to settle (the crop then equals the whole file resampled, to float precision).
_CONTEXT = 128

SPHERE_HOWTO = (
    "Convert the corpus to WAV first, e.g. with LDC's sph2pipe (also built by Kaldi under "
    "tools/sph2pipe):\n"
    "  find <corpus root> -iname '*.wv1' -exec sh -c "
    '\'sph2pipe -f wav "$1" "${1%.*}.wav"\' _ {} \\;\n'
    "then run data_prep on the converted tree (it reads the .wav files)."
)


class AudioDecodeError(RuntimeError):
    """A file that cannot be read as audio."""


class SphereError(AudioDecodeError):
    """A NIST SPHERE file whose sample coding libsndfile cannot decode (e.g. shorten)."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one file."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def sphere_header(path: str | Path) -> dict[str, str] | None:
    """The fields of a NIST SPHERE header, or ``None`` if ``path`` is not a SPHERE file."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head.startswith(SPHERE_MAGIC):
        return None
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines()[2:]:
        if line.strip() == "end_head":
            break
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()
    return fields


def check_sphere(path: str | Path) -> None:
    """Raise :class:`SphereError` if ``path`` is a SPHERE file libsndfile cannot decode."""
    fields = sphere_header(path)
    if fields is None:
        return
    coding = fields.get("sample_coding", "pcm")
    if "shorten" in coding or "embedded" in coding:
        raise SphereError(
            f"{path} is a NIST SPHERE file with sample_coding={coding!r} (shorten-compressed, "
            f"as in the original WSJ0 discs), which libsndfile cannot decode. {SPHERE_HOWTO}"
        )


def probe(path: str | Path) -> AudioInfo:
    """Frames, sample rate and channels from the header (nothing is decoded)."""
    try:
        check_sphere(path)
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        if isinstance(err, SphereError):
            raise
        raise AudioDecodeError(f"cannot read the header of {path}: {err}") from err
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def check_decodable(path: str | Path, block: int = 1024) -> AudioInfo:
    """Probe ``path`` and decode a block at its start and its end (catches truncated files)."""
    info = probe(path)
    if info.frames <= 0:
        raise AudioDecodeError(f"{path} holds no audio frames")
    read_frames(path, 0, min(block, info.frames))
    read_frames(path, max(0, info.frames - block), min(block, info.frames))
    return info


def read_frames(path: str | Path, start: int, frames: int) -> np.ndarray:
    """Decode ``frames`` frames from ``start`` (file rate), mixed down to mono.

    Shape:
        -> (frames,) float32 (shorter if the file ends first).
    """
    try:
        data, _ = sf.read(
            str(path), start=int(start), frames=int(frames), dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError) as err:
        check_sphere(path)
        raise AudioDecodeError(f"cannot decode {path}: {err}") from err
    if data.shape[1] == 1:
        return data[:, 0]
    return data.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (delay-compensated: sample 0 stays at time 0)."""
    if in_rate == out_rate:
        return x
    return soxr.resample(x, in_rate, out_rate, quality=RESAMPLE_QUALITY)


def target_length(frames: int, in_rate: int, out_rate: int) -> int:
    """Samples a file of ``frames`` frames at ``in_rate`` has at ``out_rate`` (rounded down)."""
    return int(frames) * int(out_rate) // int(in_rate)


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    if len(x) >= length:
        return x[:length]
    return np.pad(x, (0, length - len(x)))


def read_segment(
    path: str | Path, offset: int, length: int, target_rate: int, info: AudioInfo | None = None
) -> np.ndarray:
    """Read ``length`` samples from ``offset`` (both at ``target_rate``), resampling as needed.

    Only the file-rate frames under the crop (plus a few samples of context for the
    resampling filter) are decoded. Past the end of the file the crop is zero-padded.

    Shape:
        -> (length,) float32
    """
    info = info or probe(path)
    rate = info.sample_rate
    if rate == target_rate:
        return _fit(read_frames(path, offset, length), length)
    # Start the read on a frame that falls exactly on a target-rate sample (a multiple of
    # rate/gcd frames), so the crop is not shifted by a fraction of a sample.
    g = math.gcd(rate, target_rate)
    step_in, step_out = rate // g, target_rate // g
    k = max(0, offset - _CONTEXT) // step_out
    first, start = k * step_in, offset - k * step_out
    last = min(info.frames, math.ceil((offset + length + _CONTEXT) * rate / target_rate))
    y = resample(read_frames(path, first, max(0, last - first)), rate, target_rate)
    return _fit(y[start : start + length], length)


class _ByteLRU:
    """A per-process LRU cache of decoded arrays, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.nbytes = 0

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: tuple[str, int], value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes or key in self.items:
            return
        self.items[key] = value
        self.nbytes += value.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.nbytes -= old.nbytes


# Short files (spoken digits, < a segment) are read whole and reused: 64 MB per process.
_SHORT_CACHE = _ByteLRU(64 * 2**20)


def load_file(path: str | Path, target_rate: int, info: AudioInfo | None = None) -> np.ndarray:
    """The whole file at ``target_rate``, mono; cached per process (read-only array).

    Meant for short files; long files should be read with :func:`read_segment`.

    Shape:
        -> (target_length(frames, rate, target_rate),) float32
    """
    key = (str(path), int(target_rate))
    cached = _SHORT_CACHE.get(key)
    if cached is not None:
        return cached
    info = info or probe(path)
    x = resample(read_frames(path, 0, info.frames), info.sample_rate, target_rate)
    x = _fit(x, target_length(info.frames, info.sample_rate, target_rate))
    x.setflags(write=False)
    _SHORT_CACHE.put(key, x)
    return x
