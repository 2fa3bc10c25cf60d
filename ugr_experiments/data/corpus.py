"""Mixtures of real recordings, read through manifests: esc50, speech, cross, random_mix.

Recipe (PAPER.md 4): every mixture takes ``n_sources`` sources of *different* classes (ESC-50
categories or speakers), a random segment of each (``segment_seconds`` at ``sample_rate``), an
SNR of source 0 against source 1 uniform in ``snr_db``, and the paper's mixing rule
(:func:`ugr_experiments.data.base.mix_sources`). Which group each source comes from:

- ``esc50``: environmental vs environmental; ``speech``: speaker vs speaker;
- ``cross``: source 0 speech, source 1 environmental (so ``snr_db`` reads speech-over-env);
- ``random_mix``: each source speech with probability ``p_speech`` (0.5), else environmental.

A class is drawn uniformly among the classes of the group not yet in the mixture, then a file
uniformly among that class's files in the split. Training items change with the epoch,
validation and test items are fixed by ``dataset.eval_seed`` (see ``base.item_rng`` and
``base.split_seed``), so DataLoader workers never repeat each other and every run, whatever
its training seed, sees the same test set.

Decisions **[ours]**:

- *No silent sources.* A crop whose RMS (after removing its mean) is below ``min_rms_db``
  dB full scale (default -65; digital silence is about -200, the quietest ESC-50 clips about -55)
  is redrawn (new file of the same class, new crop), up to ``max_tries`` times, after which
  the item fails with an error naming the class.
- *Short files* (most spoken digits are under 1 s, far shorter than a 4 s segment):
  ``short_sources: concat`` (default) appends further random utterances of the *same*
  speaker/class until the segment is filled, then crops at a random offset, so a speech
  source sounds like continuous speech; ``pad`` places the file at a random position in a
  zero segment.
- *Traceability.* ``info["file"]`` is the absolute path (``|``-joined paths, in order, for a
  concatenation); ``info["offset"]`` is the first sample of the segment in that file (or
  concatenation) at ``sample_rate``; negative for ``pad``: the file starts ``-offset``
  samples into the segment. In every case ``segment = stream[offset : offset + T]`` with
  zeros outside the stream, ``stream`` being the file(s) resampled to ``sample_rate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ugr_experiments.data.audio import AudioInfo, load_file, read_segment, target_length
from ugr_experiments.data.base import ENVIRONMENTAL, SPEECH, MixtureDataset, make_item, split_seed
from ugr_experiments.data.manifest import Manifest, read_manifest

GROUPS_OF = {
    "esc50": (ENVIRONMENTAL,),
    "speech": (SPEECH,),
    "cross": (SPEECH, ENVIRONMENTAL),
    "random_mix": (SPEECH, ENVIRONMENTAL),
}
PREP_COMMAND = {
    ENVIRONMENTAL: "ugr-prep-esc50 --root <ESC-50 folder> --output {path}",
    SPEECH: "ugr-prep-speech --root <speech corpus folder> --output {path}",
}
SHORT_SOURCES = ("concat", "pad")
# A concatenation stops after this many files (a class of near-empty files cannot loop forever).
_MAX_PARTS = 1000


def rms_db(x: np.ndarray) -> float:
    """RMS of ``x`` after removing its mean, in dB relative to full scale (1.0)."""
    x = np.asarray(x, dtype=np.float64)
    return float(10.0 * np.log10(np.mean((x - x.mean()) ** 2) + 1e-20))


@dataclass
class SourcePool:
    """The files of one group in one split, with their header facts and classes."""

    group: str
    files: list[str]  # absolute paths
    infos: list[AudioInfo]
    class_of: np.ndarray  # (F,) global class index of each file
    by_class: dict[int, np.ndarray]  # global class index -> file indices

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, group: str, split: str, class_index: dict[str, int]
    ) -> SourcePool:
        rows = manifest.split(split)
        files = [str(manifest.absolute(p)) for p in rows["path"]]
        infos = [
            AudioInfo(int(f), int(r), int(c))
            for f, r, c in zip(rows["frames"], rows["sample_rate"], rows["channels"], strict=True)
        ]
        class_of = np.array([class_index[c] for c in rows["class"]], dtype=np.int64)
        by_class = {int(c): np.flatnonzero(class_of == c) for c in np.unique(class_of)}
        return cls(group, files, infos, class_of, by_class)


class CorpusMixtures(MixtureDataset):
    """Mixtures of real recordings from one or two source pools (see the module docstring)."""

    def __init__(
        self,
        split: str,
        length: int,
        seed: int,
        pools: dict[str, SourcePool],
        class_names: list[str],
        composition: str,
        sample_rate: int = 8000,
        segment_seconds: float = 4.0,
        n_sources: int = 2,
        snr_db: tuple[float, float] = (-5.0, 5.0),
        min_rms_db: float = -65.0,
        short_sources: str = "concat",
        p_speech: float = 0.5,
        max_tries: int = 100,
    ) -> None:
        super().__init__(split, length, seed)
        if composition not in GROUPS_OF:
            raise ValueError(f"unknown composition {composition!r}; choose from {list(GROUPS_OF)}")
        if short_sources not in SHORT_SOURCES:
            raise ValueError(
                f"dataset.short_sources={short_sources!r}; choose from {list(SHORT_SOURCES)}"
            )
        if composition == "cross" and n_sources != 2:
            raise ValueError(
                f"dataset=cross mixes one speech and one environmental source; "
                f"n_sources must be 2, got {n_sources}"
            )
        self.pools, self.class_names = pools, list(class_names)
        self.group_names = list(GROUPS_OF[composition])
        self.composition = composition
        self.sample_rate, self.n_sources = int(sample_rate), int(n_sources)
        self.segment = round(float(segment_seconds) * self.sample_rate)
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.min_rms_db, self.short_sources = float(min_rms_db), short_sources
        self.p_speech, self.max_tries = float(p_speech), int(max_tries)

    def source_groups(self, rng: np.random.Generator) -> list[str]:
        if self.composition == "cross":
            return [SPEECH, ENVIRONMENTAL]
        if self.composition == "random_mix":
            return [
                SPEECH if rng.random() < self.p_speech else ENVIRONMENTAL
                for _ in range(self.n_sources)
            ]
        return [self.group_names[0]] * self.n_sources

    def make(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        classes: list[int] = []
        waves, infos = [], []
        for group in self.source_groups(rng):
            pool = self.pools[group]
            free = [c for c in pool.by_class if c not in classes]
            cls = free[rng.integers(len(free))]
            wave, info = self.draw_source(pool, cls, rng)
            classes.append(cls)
            waves.append(wave)
            infos.append(info)
        snr = float(rng.uniform(*self.snr_db))
        groups = [self.group_names.index(i["group"]) for i in infos]
        return make_item(index, np.stack(waves), snr, classes, groups, infos)

    def draw_source(
        self, pool: SourcePool, cls: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A segment of class ``cls`` above the energy floor, and where it came from."""
        members = pool.by_class[cls]
        for _ in range(self.max_tries):
            wave, file, offset = self.crop(pool, int(members[rng.integers(len(members))]), rng)
            if rms_db(wave) >= self.min_rms_db:
                info = {
                    "class": self.class_names[cls],
                    "group": pool.group,
                    "file": file,
                    "offset": int(offset),
                }
                return wave, info
        raise RuntimeError(
            f"no {self.segment}-sample segment of class {self.class_names[cls]!r} "
            f"({pool.group}, {self.split}) reached dataset.min_rms_db={self.min_rms_db} dB in "
            f"{self.max_tries} draws from its {len(members)} file(s): are they silent? "
            "Remove them from the manifest or lower dataset.min_rms_db"
        )

    def crop(
        self, pool: SourcePool, f: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, str, int]:
        """A random segment starting in file ``f`` (see the module docstring for short files)."""
        info, seg, sr = pool.infos[f], self.segment, self.sample_rate
        n = target_length(info.frames, info.sample_rate, sr)
        if n >= seg:
            offset = int(rng.integers(0, n - seg + 1))
            return read_segment(pool.files[f], offset, seg, sr, info), pool.files[f], offset
        if self.short_sources == "pad":
            start = int(rng.integers(0, seg - n + 1))
            wave = np.zeros(seg, dtype=np.float32)
            wave[start : start + n] = load_file(pool.files[f], sr, info)
            return wave, pool.files[f], -start
        members = pool.by_class[int(pool.class_of[f])]
        parts, total = [f], n
        while total < seg and len(parts) < _MAX_PARTS:
            parts.append(int(members[rng.integers(len(members))]))
            last = pool.infos[parts[-1]]
            total += target_length(last.frames, last.sample_rate, sr)
        stream = np.concatenate([load_file(pool.files[p], sr, pool.infos[p]) for p in parts])
        stream = np.pad(stream, (0, max(0, seg - len(stream))))  # only if _MAX_PARTS ran out
        offset = int(rng.integers(0, len(stream) - seg + 1))
        return stream[offset : offset + seg], "|".join(pool.files[p] for p in parts), offset


def load_group_manifest(cfg: dict[str, Any], group: str) -> Manifest:
    """The manifest of ``group`` named by ``cfg["manifests"]``, checked against the corpus."""
    name = cfg["name"]
    path = (cfg.get("manifests") or {}).get(group)
    if not path:
        raise ValueError(f"dataset={name} needs dataset.manifests.{group} (the path of a manifest)")
    command = PREP_COMMAND[group].format(path=path)
    root = (cfg.get("roots") or {}).get(group)
    try:
        manifest = read_manifest(path, root)
    except FileNotFoundError:
        raise ValueError(
            f"dataset={name}: the {group} manifest {Path(path).resolve()} does not exist. "
            f"Write it once with `{command}` (or `python -m data_prep.{_module(group)} ...`), "
            "and point paths.manifests (environment variable UGR_MANIFESTS) at its folder"
        ) from None
    if not manifest.root.is_dir():
        raise ValueError(
            f"dataset={name}: the corpus root {manifest.root} of {path} does not exist. If the "
            f"corpus moved, set dataset.roots.{group}=<its new folder>; otherwise run `{command}`"
        )
    groups = set(manifest.table["group"])
    if groups - {group}:
        raise ValueError(
            f"{path} holds groups {sorted(groups)}; dataset.manifests.{group} "
            f"must list {group} files only (wrong manifest?)"
        )
    first = manifest.absolute(manifest.table["path"].iloc[0]) if len(manifest.table) else None
    if first is None or not first.is_file():
        raise ValueError(
            f"{path}: {first} is missing under the root {manifest.root}; "
            f"set dataset.roots.{group}=<the corpus folder> or rerun `{command}`"
        )
    return manifest


def _module(group: str) -> str:
    return "speech" if group == SPEECH else "esc50"


def _check_pools(pools: dict[str, SourcePool], cfg: dict[str, Any], split: str) -> None:
    """Enough classes in every pool of ``split`` for the composition's worst case."""
    name, s = cfg["name"], int(cfg.get("n_sources", 2))
    # cross: one source of each group; the others: n_sources sources of different classes.
    need = 1 if name == "cross" else s
    for group, pool in pools.items():
        if len(pool.by_class) < need:
            have = len(pool.by_class)
            wanted = (
                f"at least 1 {group} class (one {group} source per mixture)"
                if need == 1
                else f"{need} different {group} classes per mixture"
            )
            raise ValueError(
                f"dataset={name}: the {split} split of {cfg['manifests'][group]} has {have} "
                f"{group} {'class' if have == 1 else 'classes'}; {name} mixtures need {wanted}. "
                f"Rebuild the manifest with another split (data_prep.{_module(group)} --help)"
            )


def build_corpus_datasets(
    cfg: dict[str, Any],
    seed: int,
    train_length: int,
    splits: Sequence[str] = ("train", "valid", "test"),
) -> dict[str, MixtureDataset]:
    """``{"train", "valid", "test"}`` (or ``splits``) of esc50 / speech / cross / random_mix.

    Args:
        cfg: the plain ``dataset`` config dict (see ``conf/dataset/*.yaml``).
        seed: the run's seed (draws the training mixtures; ``cfg["eval_seed"]`` fixes the
            validation and test mixtures, see ``data.split_seed``).
        train_length: mixtures per training epoch.
        splits: the splits to build (the others may have no files).
    """
    name = cfg["name"]
    if name not in GROUPS_OF:
        raise ValueError(f"unsupported corpus dataset {name!r}; choose from {list(GROUPS_OF)}")
    manifests = {g: load_group_manifest(cfg, g) for g in GROUPS_OF[name]}
    class_names: list[str] = []
    for manifest in manifests.values():
        class_names += sorted(set(manifest.table["class"]) - set(class_names))
    class_index = {c: i for i, c in enumerate(class_names)}
    lengths = {"train": train_length, "valid": cfg["n_valid"], "test": cfg["n_test"]}
    options = {
        k: cfg[k]
        for k in (
            "sample_rate",
            "segment_seconds",
            "n_sources",
            "min_rms_db",
            "short_sources",
            "p_speech",
            "max_tries",
        )
        if k in cfg
    }
    out: dict[str, MixtureDataset] = {}
    for split in splits:
        length = lengths[split]
        pools = {
            g: SourcePool.from_manifest(m, g, split, class_index) for g, m in manifests.items()
        }
        _check_pools(pools, cfg, split)
        out[split] = CorpusMixtures(
            split,
            int(length),
            split_seed(cfg, seed, split),
            pools,
            class_names,
            name,
            snr_db=tuple(cfg.get("snr_db", (-5.0, 5.0))),
            **options,
        )
    return out
