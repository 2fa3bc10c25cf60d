"""Audio I/O: partial reads, mix-down, resampling, SPHERE detection (tiny signals made here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ugr_experiments.data import audio
from ugr_experiments.data.audio import (
    AudioDecodeError,
    AudioInfo,
    SphereError,
    load_file,
    probe,
    read_segment,
    target_length,
)


def sine(freq: float, rate: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def write_sphere(path: Path, coding: str) -> None:
    """A minimal NIST SPHERE file: a 1024-byte header, then (fake) sample data."""
    lines = [
        "NIST_1A",
        "   1024",
        "sample_count -i 16000",
        "sample_rate -i 16000",
        "channel_count -i 1",
        "sample_n_bytes -i 2",
        f"sample_coding -s{len(coding)} {coding}",
        "end_head",
    ]
    header = ("\n".join(lines) + "\n").encode().ljust(1024, b" ")
    path.write_bytes(header + bytes(32000))


def test_same_rate_segment_is_the_slice(tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(read_segment(tmp_path / "a.wav", 1234, 500, 8000), x[1234:1734])
    # past the end: zero-padded to the requested length
    tail = read_segment(tmp_path / "a.wav", 7900, 500, 8000)
    np.testing.assert_array_equal(tail[:100], x[7900:])
    assert tail.shape == (500,) and not tail[100:].any()


@pytest.mark.parametrize("rate", [16000, 44100])
def test_resampled_crop_matches_the_signal_at_8k(tmp_path: Path, rate: int) -> None:
    # A 440 Hz sine written at `rate` must read back as the same sine sampled at 8 kHz.
    sf.write(tmp_path / "s.wav", sine(440, rate, 1.0), rate, subtype="FLOAT")
    offset, length = 2000, 3000
    got = read_segment(tmp_path / "s.wav", offset, length, 8000)
    want = sine(440, 8000, 1.0)[offset : offset + length]
    assert np.max(np.abs(got - want)) < 2e-3


@pytest.mark.parametrize("rate", [16000, 44100, 22050])
def test_crop_equals_the_whole_file_resampled(tmp_path: Path, rate: int) -> None:
    x = np.random.default_rng(1).standard_normal(rate).astype(np.float32) * 0.1
    sf.write(tmp_path / "n.wav", x, rate, subtype="FLOAT")
    whole = load_file(tmp_path / "n.wav", 8000)
    assert whole.shape == (target_length(rate, rate, 8000),) == (8000,)
    for offset in (0, 1, 3001, 7000):
        crop = read_segment(tmp_path / "n.wav", offset, 1000, 8000)
        # the read starts on a whole target sample and its context lets the filter settle
        assert np.max(np.abs(crop - whole[offset : offset + 1000])) < 1e-5


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left, right = sine(300, 8000, 0.5), sine(700, 8000, 0.5)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    assert probe(tmp_path / "st.wav") == AudioInfo(4000, 8000, 2)
    np.testing.assert_allclose(
        read_segment(tmp_path / "st.wav", 0, 4000, 8000), (left + right) / 2, atol=1e-7
    )


def test_reads_touch_only_the_needed_frames(tmp_path: Path, monkeypatch) -> None:
    sf.write(tmp_path / "long.wav", sine(200, 16000, 10.0), 16000)
    calls = []
    real_read = sf.read

    def spy(path, start=0, frames=-1, **kw):
        calls.append((start, frames))
        return real_read(path, start=start, frames=frames, **kw)

    monkeypatch.setattr(audio.sf, "read", spy)
    read_segment(tmp_path / "long.wav", 40000, 4000, 8000)  # 0.5 s from 5 s
    ((start, frames),) = calls
    assert 80000 - 2 * audio._CONTEXT - 2 <= start <= 80000
    assert frames <= 8000 + 4 * audio._CONTEXT + 4


def test_shorten_sphere_is_detected_with_the_fix(tmp_path: Path) -> None:
    write_sphere(tmp_path / "x.wv1", "pcm,embedded-shorten-v2.00")
    with pytest.raises(SphereError, match="sph2pipe") as err:
        probe(tmp_path / "x.wv1")
    assert str(tmp_path / "x.wv1") in str(err.value) and "shorten" in str(err.value)
    with pytest.raises(SphereError):
        read_segment(tmp_path / "x.wv1", 0, 100, 8000, AudioInfo(16000, 16000, 1))


def test_uncompressed_sphere_reads(tmp_path: Path) -> None:
    x = sine(500, 16000, 0.25)
    sf.write(tmp_path / "u.sph", x, 16000, format="NIST", subtype="PCM_16")
    assert audio.sphere_header(tmp_path / "u.sph") is not None
    assert probe(tmp_path / "u.sph").sample_rate == 16000
    np.testing.assert_allclose(
        read_segment(tmp_path / "u.sph", 0, 2000, 16000), x[:2000], atol=1e-4
    )


def test_garbage_and_missing_files_raise_decode_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"this is not audio" * 10)
    with pytest.raises(AudioDecodeError, match="bad.wav"):
        probe(tmp_path / "bad.wav")
    with pytest.raises(AudioDecodeError, match="nothere.wav"):
        probe(tmp_path / "nothere.wav")


def test_byte_lru_evicts_oldest() -> None:
    cache = audio._ByteLRU(max_bytes=3 * 400)
    for i in range(4):
        cache.put((str(i), 8000), np.zeros(100, dtype=np.float32))  # 400 bytes each
    assert cache.get(("0", 8000)) is None and cache.get(("3", 8000)) is not None
    assert cache.nbytes == 1200
