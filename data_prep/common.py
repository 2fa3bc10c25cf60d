"""What the data_prep scripts share: finding and probing files, reporting, writing manifests."""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ugr_experiments.data.audio import (
    SPHERE_HOWTO,
    AudioDecodeError,
    AudioInfo,
    SphereError,
    check_decodable,
)
from ugr_experiments.data.manifest import write_manifest

# Listed in full up to this many; beyond, the full list goes to <manifest>.skipped.txt.
_MAX_LISTED = 20


class PrepError(Exception):
    """Bad input to a data_prep script: the message says what was expected and what to do."""


@dataclass
class Probed:
    """Files that decode (relative path -> header facts) and those that do not (path, reason)."""

    good: dict[str, AudioInfo] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)
    sphere: int = 0


def require_root(root: str | Path, command: str, layout: str) -> Path:
    """The corpus root as an absolute path, or a :class:`PrepError` that names it and the fix."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise PrepError(
            f"corpus root not found: {path} (no such folder). Pass the folder that holds "
            f"{layout}, e.g. `{command}`"
        )
    return path.resolve()


def walk_audio(root: Path, extensions: Iterable[str]) -> list[str]:
    """Paths (relative to ``root``, POSIX, sorted) of files whose suffix is in ``extensions``.

    Symlinked folders are followed (corpora are often assembled from links), each real folder
    once, so a link back up the tree cannot loop.
    """
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found: list[str] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if Path(f).suffix.lower() in exts]
    return sorted(found)


def probe_files(root: Path, relpaths: Sequence[str], desc: str, progress: bool = True) -> Probed:
    """Read the header of every file and decode a block at each end; sort good from bad."""
    out = Probed()
    for rel in tqdm(relpaths, desc=desc, unit="file", disable=not progress, file=sys.stderr):
        try:
            out.good[rel] = check_decodable(root / rel)
        except SphereError:
            out.sphere += 1
            out.bad.append((rel, "NIST SPHERE with shorten compression (convert it, see below)"))
        except AudioDecodeError as err:
            out.bad.append((rel, str(err.__cause__ or err)))
    return out


def list_some(title: str, lines: Sequence[str], output: Path, suffix: str) -> None:
    """Print ``title`` and the first lines; when there are more, write them all beside ``output``.

    The listing is ``<output>.<suffix>.txt``, one line per file.
    """
    if not lines:
        return
    print(title, file=sys.stderr)
    for line in lines[:_MAX_LISTED]:
        print(f"  {line}", file=sys.stderr)
    if len(lines) > _MAX_LISTED:
        listing = output.with_name(f"{output.name}.{suffix}.txt")
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        print(f"  ... and {len(lines) - _MAX_LISTED} more: see {listing}", file=sys.stderr)


def report_skipped(probed: Probed, output: Path) -> None:
    """Tell the user which files were skipped and why (and how to convert SPHERE files)."""
    if not probed.bad:
        return
    title = f"skipped {len(probed.bad)} file(s) that cannot be decoded:"
    list_some(title, [f"{rel}: {why}" for rel, why in probed.bad], output, "skipped")
    if probed.sphere:
        print(
            f"{probed.sphere} of them are shorten-compressed SPHERE. {SPHERE_HOWTO}",
            file=sys.stderr,
        )


def require_some(probed: Probed, root: Path) -> None:
    """Fail (writing nothing) when no file at all could be decoded."""
    if probed.good:
        return
    if probed.sphere:
        raise PrepError(
            f"none of the {len(probed.bad)} audio files under {root} can be decoded: they are "
            f"shorten-compressed NIST SPHERE (original WSJ0 .wv1). {SPHERE_HOWTO}"
        )
    raise PrepError(f"none of the {len(probed.bad)} audio files under {root} can be decoded")


def require_splits(split: pd.Series, fixes: dict[str, str]) -> None:
    """Refuse (before any work) a manifest whose train, valid or test split would be empty.

    Args:
        split: the split of every file.
        fixes: per split, the option that fills it (e.g. ``{"valid": "raise --valid-fraction"}``).
    """
    counts = split.value_counts()
    empty = [name for name in ("train", "valid", "test") if counts.get(name, 0) == 0]
    if empty:
        names = " and ".join(empty)
        per_split = {str(k): int(v) for k, v in counts.items()}
        fix = "; ".join(fixes[name] for name in empty if name in fixes)
        raise PrepError(
            f"the {names} split would be empty (files per split: {per_split}); a training "
            "run needs train, valid and test files, ugr-evaluate the test files"
            + (f". {fix}" if fix else "")
        )


def info_columns(table: pd.DataFrame, good: dict[str, AudioInfo]) -> pd.DataFrame:
    """Add duration / sample_rate / frames / channels from the probed headers."""
    infos = [good[p] for p in table["path"]]
    return table.assign(
        duration=[round(i.duration, 6) for i in infos],
        sample_rate=[i.sample_rate for i in infos],
        frames=[i.frames for i in infos],
        channels=[i.channels for i in infos],
    )


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([prog] + [shlex.quote(a) for a in args])


def save(table: pd.DataFrame, output: Path, root: Path, corpus: str, command: str) -> None:
    """Write the manifest atomically with its header, then print a per-split summary."""
    require_splits(table["split"], {})  # files that did not decode may have emptied a split
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    write_manifest(output, table, root, {"corpus": corpus, "command": command, "created": created})
    print(f"wrote {output} ({len(table)} files, root {root})", file=sys.stderr)
    for split, rows in table.groupby("split", sort=False):
        print(
            f"  {split:>6}: {len(rows):6d} files, {rows['class'].nunique():5d} classes, "
            f"{rows['duration'].sum() / 3600:8.2f} h",
            file=sys.stderr,
        )
    for split in ("train", "valid", "test"):
        n = table.loc[table["split"] == split, "class"].nunique()
        if n == 1:
            print(
                f"warning: the {split} split has {n} class(es); mixtures of two sources of the "
                "same corpus need at least 2",
                file=sys.stderr,
            )


def run_main(func: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None) -> int:
    """Run ``func(argv)``; a :class:`PrepError` prints ``error: ...`` and returns status 2."""
    try:
        func(argv)
    except PrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
