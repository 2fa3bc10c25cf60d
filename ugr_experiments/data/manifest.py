"""Manifests: the plain artefact that ``data_prep`` writes and the trainer only reads.

Format (version 1). A UTF-8 CSV file with one row per audio file, preceded by a few header
lines that start with ``#`` and hold ``key: value`` pairs::

    # ugr-manifest: 1
    # corpus: esc50
    # root: /data/ESC-50-master
    # command: ugr-prep-esc50 --root /data/ESC-50-master --output manifests/esc50.csv
    # created: 2025-01-01T12:00:00+00:00
    path,class,group,split,duration,sample_rate,frames,channels,fold,target,...
    audio/1-100032-A-0.wav,dog,environmental,train,5.0,44100,220500,1,1,0,...

Columns every manifest has:

- ``path``: the file, relative to ``root`` (POSIX separators), so the manifest survives
  moving the corpus: edit the ``# root:`` line, or override it at train time
  (``dataset.roots.<group>=/new/place``);
- ``class``: the source class (ESC-50 category, or speaker);
- ``group``: ``speech`` or ``environmental``;
- ``split``: ``train``, ``valid``, ``test``, or ``unused`` (kept for the record, never read);
- ``duration`` (seconds), ``sample_rate`` (Hz), ``frames``, ``channels``: from the file header.

Any further columns are corpus metadata (ESC-50: ``fold``, ``target``, ``esc10``,
``src_file``, ``take``; speech: ``subset``, ``utterance``).

Reading: :func:`read_manifest`, or with pandas alone
``pd.read_csv(path, comment="#", keep_default_na=False)`` (fine unless a value holds ``#``;
``skiprows=<number of header lines>`` is exact). Writing is atomic (a temporary file in the
same folder, then a rename), so a manifest is either complete or absent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ugr_experiments.files import file_mode

MANIFEST_VERSION = 1
COLUMNS = ("path", "class", "group", "split", "duration", "sample_rate", "frames", "channels")
SPLIT_VALUES = ("train", "valid", "test", "unused")
_STRING_COLUMNS = {"path": str, "class": str, "group": str, "split": str}


@dataclass
class Manifest:
    """A manifest in memory: the table, the corpus root it is relative to, its header."""

    table: pd.DataFrame
    root: Path
    header: dict[str, str] = field(default_factory=dict)
    source: Path | None = None

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, in file order."""
        return self.table[self.table["split"] == name].reset_index(drop=True)

    def absolute(self, relpath: str) -> Path:
        return self.root / relpath


def _header_lines(path: Path) -> tuple[dict[str, str], int]:
    header: dict[str, str] = {}
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            count += 1
            key, sep, value = line[1:].strip().partition(":")
            if sep:
                header[key.strip()] = value.strip()
    return header, count


def read_manifest(path: str | Path, root: str | Path | None = None) -> Manifest:
    """Read a manifest written by ``data_prep``.

    Args:
        path: the CSV file.
        root: the corpus root; ``None`` takes the one recorded in the header.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a manifest (no root, missing columns, unknown split values).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    header, skip = _header_lines(path)
    if root is None and not header.get("root"):
        raise ValueError(
            f"{path} records no corpus root (a '# root: ...' header line); "
            "write it with the data_prep scripts or pass the root explicitly"
        )
    table = pd.read_csv(path, skiprows=skip, dtype=_STRING_COLUMNS, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path} is not a manifest: columns {missing} missing (needs {COLUMNS})")
    unknown = sorted(set(table["split"]) - set(SPLIT_VALUES))
    if unknown:
        raise ValueError(f"{path}: unknown split values {unknown}; allowed: {SPLIT_VALUES}")
    return Manifest(table, Path(root if root is not None else header["root"]), header, path)


DIGEST_KEY = "manifest_sha256"  # dataset.manifest_sha256.<group>: what a run was trained on


def manifest_digest(path: str | Path) -> str:
    """SHA-256 of a manifest's rows: what decides the data (files, splits, classes, lengths).

    Its ``#`` header lines (the corpus root, the date) are left out, so a corpus that only
    moved keeps its digest.
    """
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith(b"#"):
                hasher.update(line.rstrip(b"\r\n") + b"\n")
    return hasher.hexdigest()


def record_manifests(dataset: dict[str, Any]) -> dict[str, Any]:
    """The ``dataset`` config with its manifests recorded so that a run finds its own data.

    Each ``manifests.<group>`` becomes an absolute path (relative ones are relative to the
    current directory, where the run starts) and ``manifest_sha256.<group>`` its content
    digest; ``ugr-evaluate`` then reads the same file from any directory and refuses one that
    changed since (see :func:`check_recorded_manifests`). Configs without manifests (the
    synthetic data set) are returned as they are.
    """
    manifests = {g: p for g, p in (dataset.get("manifests") or {}).items() if p}
    if not manifests:
        return dataset
    absolute = {group: str(Path(path).resolve()) for group, path in manifests.items()}
    digests = {group: manifest_digest(path) for group, path in absolute.items()}
    return {**dataset, "manifests": {**dataset["manifests"], **absolute}, DIGEST_KEY: digests}


def check_recorded_manifests(dataset: dict[str, Any]) -> None:
    """Refuse manifests that differ from those a run recorded (:func:`record_manifests`).

    Raises:
        ValueError: a recorded manifest is gone, or its contents changed; the message names
            the file, both digests and the fix.
    """
    for group, digest in (dataset.get(DIGEST_KEY) or {}).items():
        path = Path(dataset["manifests"][group])
        if not path.is_file():
            raise ValueError(
                f"the run's {group} manifest {path} (sha256 {digest[:16]}) no longer exists: "
                f"restore it, or pass --manifest <a manifest of the same data> to evaluate on "
                "another one"
            )
        now = manifest_digest(path)
        if now != digest:
            raise ValueError(
                f"the {group} manifest {path} has changed since the run was trained: sha256 "
                f"{now[:16]} now, {digest[:16]} recorded by the run, so its test mixtures would "
                f"differ. Restore the run's manifest, or pass --manifest {path} to evaluate on "
                "it as it is now"
            )


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, file_mode())  # as a plain open() would, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(
    path: str | Path, table: pd.DataFrame, root: str | Path, header: dict[str, str] | None = None
) -> None:
    """Write ``table`` as a manifest relative to ``root`` (absolute in the header), atomically.

    ``header`` adds ``key: value`` lines (e.g. ``corpus``, ``command``); values are single lines.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"a manifest needs columns {COLUMNS}; {missing} missing")
    fields = {"ugr-manifest": str(MANIFEST_VERSION), "root": str(Path(root).resolve())}
    fields.update(header or {})
    lines = [f"# {k}: {' '.join(str(v).splitlines())}\n" for k, v in fields.items()]
    ordered = list(COLUMNS) + [c for c in table.columns if c not in COLUMNS]
    atomic_write_text(path, "".join(lines) + table[ordered].to_csv(index=False))
