"""Before any work: the audio files a run reads, and what decides its data.

:func:`check_data` reads the header of every file of the train, valid and test splits of each
manifest the data set uses (thousands of files a second: nothing is decoded) and refuses the
run, naming the files, if one is missing, empty, unreadable, or no longer what the manifest
recorded (frames, sample rate, channels): otherwise the run would train for hours and fail at
its final test. It also returns each manifest's content digest: a resumed run must read the
same data (``training.resume`` compares the digests, not the paths, which may change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ugr_experiments.data.audio import AudioDecodeError, AudioInfo, probe
from ugr_experiments.data.corpus import GROUPS_OF, PREP_COMMAND, load_group_manifest
from ugr_experiments.data.manifest import DIGEST_KEY, Manifest, manifest_digest

__all__ = ["SHOWN_FILES", "USED_SPLITS", "DataError", "check_data", "manifest_digest"]

USED_SPLITS = ("train", "valid", "test")
SHOWN_FILES = 5  # bad files named in a message; the rest are counted


class DataError(ValueError):
    """Audio files that a run would read cannot be used; the message names them and the fix."""


def _problem(path: Path, recorded: AudioInfo) -> str | None:
    """What is wrong with one file, or None."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    try:
        info = probe(path)
    except AudioDecodeError as err:
        return f"unreadable ({str(err).splitlines()[0][:160]})"
    if info.frames <= 0:
        return "holds no audio frames"
    if info != recorded:
        return (
            f"changed since the manifest was written ({info.frames} frames at "
            f"{info.sample_rate} Hz, {info.channels} channel(s); the manifest says "
            f"{recorded.frames} at {recorded.sample_rate} Hz, {recorded.channels})"
        )
    return None


def check_files(manifest: Manifest, key: str, command: str) -> None:
    """Every file of the used splits of ``manifest`` is readable and as recorded.

    Raises:
        DataError: naming the first :data:`SHOWN_FILES` bad files, their count, and the fix.
    """
    rows = manifest.table[manifest.table["split"].isin(USED_SPLITS)]
    bad = []
    for rel, frames, rate, channels in zip(
        rows["path"], rows["frames"], rows["sample_rate"], rows["channels"], strict=True
    ):
        path = manifest.absolute(rel)
        problem = _problem(path, AudioInfo(int(frames), int(rate), int(channels)))
        if problem:
            bad.append(f"{path}: {problem}")
    if not bad:
        return
    shown = "\n  - ".join(bad[:SHOWN_FILES])
    more = f"\n  ... and {len(bad) - SHOWN_FILES} more" if len(bad) > SHOWN_FILES else ""
    raise DataError(
        f"{key}: {len(bad)} of the {len(rows)} audio files of the {'/'.join(USED_SPLITS)} "
        f"splits of {manifest.source} cannot be used:\n  - {shown}{more}\nRestore them under "
        f"the corpus root {manifest.root} (or set {key.replace('manifests', 'roots')}=<the "
        f"corpus folder>), or rebuild the manifest without them: `{command}` (it lists and "
        "skips unreadable files)"
    )


def check_data(dataset: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Check the audio files of every manifest the data set reads; return their digests.

    Args:
        dataset: the plain ``dataset`` config group (the synthetic data set reads no file).

    Returns:
        ``{group: {"manifest": path, "digest": sha256 of its rows}}``; empty for synthetic data.

    Raises:
        ValueError: a manifest that cannot be read (see ``data.corpus.load_group_manifest``).
        DataError: files that are missing, empty, unreadable or changed.
    """
    out = {}
    for group in GROUPS_OF.get(dataset.get("name", ""), ()):
        manifest = load_group_manifest(dataset, group)
        path = dataset["manifests"][group]
        check_files(manifest, f"dataset.manifests.{group}", PREP_COMMAND[group].format(path=path))
        # record_manifests has already hashed it when the run started (dataset.manifest_sha256)
        digest = (dataset.get(DIGEST_KEY) or {}).get(group) or manifest_digest(path)
        out[group] = {"manifest": str(path), "digest": digest}
    return out
