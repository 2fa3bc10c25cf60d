"""The embedded default data set: mixtures synthesised on the fly, no files needed.

Four source classes in the paper's two groups, so that every weighting mode (class biasing
included) can be tried without a corpus:

- ``speech`` group, harmonic and speech-like: ``voice_low`` (f0 85-150 Hz) and ``voice_high``
  (f0 165-300 Hz). A glottal-like harmonic series with a gliding, vibrating pitch, shaped by
  two formants and chopped into syllables of 120-350 ms.
- ``environmental`` group: ``noise`` (band-limited noise with a slow amplitude drift, like rain
  or an engine) and ``impacts`` (a train of decaying resonant clicks, like knocks or steps).

Mixtures pair two different classes, so the set holds easy pairs (voice + noise) and hard
ones (two voices, or two noises), which spreads SI-SDRi widely enough that the percentile
table says more than the mean. Every source is checked against the energy floor of
``min_rms`` (relative to its peak) before mixing; the generators never produce silence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ugr_experiments.data.base import ENVIRONMENTAL, SPEECH, MixtureDataset, make_item, split_seed

CLASSES: dict[str, str] = {
    "voice_low": SPEECH,
    "voice_high": SPEECH,
    "noise": ENVIRONMENTAL,
    "impacts": ENVIRONMENTAL,
}


def _syllable_envelope(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Raised-cosine bursts of 120-350 ms separated by 20-150 ms pauses, starting anywhere."""
    env = np.zeros(n)
    t = -int(rng.uniform(0.0, 0.3) * sr)
    while t < n:
        length = int(rng.uniform(0.12, 0.35) * sr)
        burst = np.sin(np.linspace(0.0, np.pi, length)) ** 0.7 * rng.uniform(0.5, 1.0)
        lo, hi = max(t, 0), min(t + length, n)
        if hi > lo:
            env[lo:hi] = burst[lo - t : hi - t]
        t += length + int(rng.uniform(0.02, 0.15) * sr)
    return env


def voice(rng: np.random.Generator, n: int, sr: int, f0_range: tuple[float, float]) -> np.ndarray:
    """A speech-like harmonic source: gliding pitch with vibrato, two formants, syllables."""
    t = np.arange(n) / sr
    f_start, f_end = rng.uniform(*f0_range, size=2)
    f0 = np.linspace(f_start, f_end, n) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(0.45 * sr / f0_range[0])
    k = np.arange(1, n_harm + 1)[:, None]  # (K, 1)
    formants = rng.uniform([300, 900], [900, 2600])
    # Amplitude of harmonic k follows the formant envelope at its (time-varying) frequency.
    fk = k * f0[None, :]  # (K, T)
    gain = sum(np.exp(-0.5 * ((fk - f) / 120.0) ** 2) for f in formants) + 0.05 / k
    gain = np.where(fk < 0.48 * sr, gain, 0.0)
    wave = (gain * np.sin(k * phase[None, :])).sum(axis=0)  # (T,)
    return wave * _syllable_envelope(rng, n, sr)


def noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Band-limited noise with a slowly drifting level (rain, wind, engines)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    lo = rng.uniform(50, 1500)
    hi = min(lo * rng.uniform(1.5, 6.0), 0.49 * sr)
    spec *= ((freqs >= lo) & (freqs <= hi)) * (1.0 + rng.uniform(0, 1) * np.cos(freqs / 300.0))
    wave = np.fft.irfft(spec, n)
    t = np.arange(n) / sr
    drift = 1.0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * t + rng.uniform(0, 2 * np.pi))
    return wave * drift


def impacts(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Decaying resonant clicks at random times (knocks, footsteps, dripping)."""
    wave = np.zeros(n)
    times = np.cumsum(rng.uniform(0.06, 0.35, size=int(4 * n / sr) + 8) * sr).astype(int)
    times -= int(rng.uniform(0, 0.2) * sr)
    freq, decay = rng.uniform(250, 3000), rng.uniform(0.01, 0.06)
    length = int(5 * decay * sr)
    tk = np.arange(length) / sr
    for start in times[(times > -length) & (times < n)]:
        f = freq * rng.uniform(0.9, 1.1)
        click = np.exp(-tk / decay) * (
            np.sin(2 * np.pi * f * tk) + 0.3 * rng.standard_normal(length)
        )
        lo, hi = max(start, 0), min(start + length, n)
        wave[lo:hi] += rng.uniform(0.3, 1.0) * click[lo - start : hi - start]
    return wave


GENERATORS = {
    "voice_low": lambda rng, n, sr: voice(rng, n, sr, (85.0, 150.0)),
    "voice_high": lambda rng, n, sr: voice(rng, n, sr, (165.0, 300.0)),
    "noise": noise,
    "impacts": impacts,
}


class SyntheticMixtures(MixtureDataset):
    """Two-or-more-source mixtures of synthetic sources from distinct classes."""

    def __init__(
        self,
        split: str,
        length: int,
        seed: int,
        sample_rate: int,
        segment_seconds: float,
        n_sources: int = 2,
        snr_db: tuple[float, float] = (-5.0, 5.0),
        classes: list[str] | None = None,
        min_rms: float = 1e-3,
    ) -> None:
        super().__init__(split, length, seed)
        self.class_names = list(classes or CLASSES)
        unknown = [c for c in self.class_names if c not in CLASSES]
        if unknown:
            raise ValueError(
                f"unknown synthetic classes {unknown}; choose from {list(CLASSES)} "
                "(dataset.classes)"
            )
        if not 2 <= n_sources <= len(self.class_names):
            raise ValueError(
                f"dataset.n_sources={n_sources} needs 2 to {len(self.class_names)} "
                f"distinct classes among {self.class_names}"
            )
        self.group_names = sorted({CLASSES[c] for c in self.class_names})
        self.sample_rate, self.n_sources = int(sample_rate), int(n_sources)
        self.n_samples = int(round(segment_seconds * sample_rate))
        self.snr_db, self.min_rms = (float(snr_db[0]), float(snr_db[1])), float(min_rms)

    def _source(self, rng: np.random.Generator, name: str) -> np.ndarray:
        # Redraw in the (never seen) case of a near-silent draw, so no silent source is mixed.
        for _ in range(10):
            wave = GENERATORS[name](rng, self.n_samples, self.sample_rate)
            peak = np.abs(wave).max()
            if peak > 0 and np.sqrt(np.mean(wave**2)) > self.min_rms * peak:
                return wave
        raise RuntimeError(f"synthetic class {name!r} kept producing near-silent sources")

    def make(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        picks = rng.choice(len(self.class_names), size=self.n_sources, replace=False)
        names = [self.class_names[i] for i in picks]
        sources = np.stack([self._source(rng, name) for name in names])  # (S, T)
        snr = rng.uniform(*self.snr_db)
        groups = [CLASSES[name] for name in names]
        info = [
            {"class": name, "group": group, "file": f"synthetic:{self.split}:{index}", "offset": 0}
            for name, group in zip(names, groups, strict=True)
        ]
        group_idx = [self.group_names.index(g) for g in groups]
        return make_item(index, sources, snr, picks.tolist(), group_idx, info)


def build_synthetic_datasets(
    cfg: dict[str, Any], seed: int, train_length: int
) -> dict[str, MixtureDataset]:
    """The three splits of the synthetic data set from the ``dataset`` config group."""
    common = {
        "sample_rate": cfg["sample_rate"],
        "segment_seconds": cfg["segment_seconds"],
        "n_sources": cfg.get("n_sources", 2),
        "snr_db": tuple(cfg.get("snr_db", (-5.0, 5.0))),
        "classes": cfg.get("classes"),
    }
    lengths = {"train": train_length, "valid": cfg["n_valid"], "test": cfg["n_test"]}
    return {
        split: SyntheticMixtures(split, n, seed=split_seed(cfg, seed, split), **common)
        for split, n in lengths.items()
    }
