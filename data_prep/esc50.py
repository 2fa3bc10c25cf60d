"""ESC-50 as distributed (``audio/*.wav`` + ``meta/esc50.csv``) -> a manifest.

Split rule (PAPER.md 4): clips of the *train folds* (default 1-4) are training clips; the clips
of the *held-out folds* (default 5) are split per category, from the list of their file names
sorted, into consecutive shares ``train:valid:test`` (default ``0:1:1``: the first half of each
category validates, the second half tests). Clips of other folds are kept as ``unused``.
The rule is deterministic: the same files give the same manifest.

Example (the paper's split)::

    ugr-prep-esc50 --root /data/ESC-50-master --output manifests/esc50.csv

The ESC-50 subset in ``../shared/data/esc50_mini`` is almost all fold 4, so its tests split
fold 4 per category three ways::

    ugr-prep-esc50 --root ../shared/data/esc50_mini --output manifests/esc50.csv \\
        --train-folds 1 2 3 5 --heldout-folds 4 --heldout-split 4:1:1
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data_prep.common import (
    PrepError,
    command_line,
    info_columns,
    list_some,
    probe_files,
    report_skipped,
    require_root,
    require_some,
    require_splits,
    run_main,
    save,
    walk_audio,
)
from ugr_experiments.data.base import ENVIRONMENTAL

PROG = "ugr-prep-esc50"
EXAMPLE = f"{PROG} --root /data/ESC-50-master --output manifests/esc50.csv"
LAYOUT = "audio/*.wav and meta/esc50.csv (ESC-50 as downloaded)"
META_COLUMNS = ("filename", "fold", "category")


def parse_shares(text: str) -> tuple[float, float, float]:
    """``"0:1:1"`` -> the train / valid / test shares (any non-negative numbers, not all 0)."""
    try:
        shares = tuple(float(v) for v in text.split(":"))
    except ValueError:
        shares = ()
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise PrepError(
            f"--heldout-split {text!r}: expected TRAIN:VALID:TEST shares such as 0:1:1 "
            "(non-negative, not all zero)"
        )
    return shares  # type: ignore[return-value]


def split_sorted(files: Sequence[str], shares: Sequence[float]) -> list[str]:
    """Assign the sorted ``files`` of one class to train / valid / test in consecutive shares.

    The boundaries are the rounded cumulative shares, so 8 files at ``0:1:1`` give 4 + 4.
    """
    n = len(files)
    total = sum(shares)
    cut1 = round(n * shares[0] / total)
    cut2 = round(n * (shares[0] + shares[1]) / total)
    return ["train"] * cut1 + ["valid"] * (cut2 - cut1) + ["test"] * (n - cut2)


def assign_splits(
    meta: pd.DataFrame,
    train_folds: Sequence[int],
    heldout_folds: Sequence[int],
    shares: Sequence[float],
) -> pd.Series:
    """The split of every row of ``meta`` (columns ``path``, ``fold``, ``category``)."""
    overlap = sorted(set(train_folds) & set(heldout_folds))
    if overlap:
        raise PrepError(
            f"fold(s) {overlap} are both train folds and held-out folds; a fold is either all "
            "training clips (--train-folds) or split per class (--heldout-folds)"
        )
    split = pd.Series("unused", index=meta.index, dtype=object)
    split[meta["fold"].isin(list(train_folds))] = "train"
    heldout = meta[meta["fold"].isin(list(heldout_folds))]
    for _, rows in heldout.groupby("category"):
        order = rows.sort_values("path")
        split[order.index] = split_sorted(list(order["path"]), shares)
    return split


def split_sizes(
    meta: pd.DataFrame, train_folds: Sequence[int], shares: Sequence[float]
) -> tuple[dict[str, int], dict[str, int]]:
    """Categories per split, and held-out clips per split (``meta``: train + held-out folds)."""
    in_train = meta["fold"].isin(list(train_folds))
    classes: dict[str, set[str]] = {"train": set(meta.loc[in_train, "category"])}
    classes.update(valid=set(), test=set())
    clips = dict.fromkeys(("train", "valid", "test"), 0)
    for category, n in meta.loc[~in_train, "category"].value_counts().items():
        for name in split_sorted([""] * int(n), shares):
            classes[name].add(str(category))
            clips[name] += 1
    return {name: len(found) for name, found in classes.items()}, clips


def suggest_split(
    meta: pd.DataFrame, train_folds: Sequence[int], shares: Sequence[float]
) -> str | None:
    """A ``--heldout-split`` (shares 0-4) that gives every split 2 categories or more.

    Of those that work, the one whose held-out clips per split come closest to the requested
    ``shares``; on a tie, the simplest (smallest sum). ``meta``: train + held-out folds.
    """
    need = min(2, meta["category"].nunique())
    target = [v / sum(shares) for v in shares]
    best: tuple[float, tuple[int, ...]] | None = None
    for cand in sorted(itertools.product(range(5), repeat=3), key=sum):
        if sum(cand) == 0 or math.gcd(*cand) != 1:
            continue
        classes, clips = split_sizes(meta, train_folds, cand)
        if min(classes.values()) < need:
            continue
        total = max(1, sum(clips.values()))
        distance = sum(abs(n / total - t) for n, t in zip(clips.values(), target, strict=True))
        if best is None or distance < best[0] - 1e-9:
            best = (distance, cand)
    return None if best is None else ":".join(map(str, best[1]))


def check_heldout_split(
    meta: pd.DataFrame,
    train_folds: Sequence[int],
    heldout_folds: Sequence[int],
    text: str,
) -> None:
    """Refuse, before probing any file, a split that leaves train, valid or test empty."""
    used = meta[meta["fold"].isin([*train_folds, *heldout_folds])]
    split = assign_splits(used, train_folds, heldout_folds, parse_shares(text))
    per_class = used[used["fold"].isin(list(heldout_folds))]["category"].value_counts()
    low, high = (int(per_class.min()), int(per_class.max())) if len(per_class) else (0, 0)
    held = str(low) if low == high else f"{low} to {high}"
    suggestion = suggest_split(used, train_folds, parse_shares(text))
    if suggestion is not None:
        fix = f"use --heldout-split {suggestion}"
    else:
        fix = (
            f"no --heldout-split can fill train, valid and test from {held} held-out clip(s) "
            "per category: add folds of training clips (--train-folds) or more held-out folds "
            "(--heldout-folds)"
        )
    fix = f"(--heldout-split {text}, {held} held-out clip(s) per category) {fix}"
    require_splits(split, {name: fix for name in ("train", "valid", "test")})


def report_absent(meta: pd.DataFrame, on_disk: set[str], output: Path) -> None:
    """Name the clips of the metadata missing from audio/ and the files it does not list."""
    absent = sorted("audio/" + f for f in meta.loc[~meta["filename"].isin(on_disk), "filename"])
    title = f"{len(absent)} clip(s) of meta/esc50.csv are not in audio/, left out:"
    list_some(title, absent, output, "missing")
    unlisted = sorted("audio/" + f for f in on_disk - set(meta["filename"]))
    title = f"{len(unlisted)} file(s) of audio/ are not in meta/esc50.csv, ignored:"
    list_some(title, unlisted, output, "unlisted")


def warn_vanished(meta: pd.DataFrame, kept: pd.DataFrame) -> None:
    """Warn about each category of the metadata that has no clip in the manifest."""
    for category in sorted(set(meta["category"]) - set(kept["category"])):
        n = int((meta["category"] == category).sum())
        print(
            f"warning: category {category!r} has no clip left (its {n} clip(s) are missing or "
            "cannot be decoded): it is not in the manifest",
            file=sys.stderr,
        )


def read_meta(root: Path) -> pd.DataFrame:
    meta_path = root / "meta" / "esc50.csv"
    if not (root / "audio").is_dir() or not meta_path.is_file():
        present = sorted(p.name for p in root.iterdir())[:10]
        raise PrepError(
            f"{root} is not laid out as ESC-50: expected {LAYOUT}; found {present}. "
            f"Pass the folder that holds audio/ and meta/, e.g. `{EXAMPLE}`"
        )
    meta = pd.read_csv(meta_path, dtype={"filename": str, "category": str})
    missing = [c for c in META_COLUMNS if c not in meta.columns]
    if missing:
        raise PrepError(f"{meta_path}: columns {missing} missing (ESC-50 has {META_COLUMNS}, ...)")
    return meta


def prepare_esc50(
    root: str | Path,
    output: str | Path,
    train_folds: Sequence[int] = (1, 2, 3, 4),
    heldout_folds: Sequence[int] = (5,),
    heldout_split: str = "0:1:1",
    progress: bool = True,
    command: str = EXAMPLE,
) -> pd.DataFrame:
    """Build and write the ESC-50 manifest; returns its table. Raises :class:`PrepError`."""
    shares = parse_shares(heldout_split)
    root = require_root(root, EXAMPLE, LAYOUT)
    meta = read_meta(root)
    meta = meta.assign(path=["audio/" + f for f in meta["filename"]])
    on_disk = set(walk_audio(root / "audio", [".wav"]))
    output = Path(output)
    report_absent(meta, on_disk, output)
    listed, meta = meta, meta[meta["filename"].isin(on_disk)]
    if meta.empty:
        raise PrepError(f"no clip of {root / 'meta/esc50.csv'} is present in {root / 'audio'}")
    check_heldout_split(meta, train_folds, heldout_folds, heldout_split)
    probed = probe_files(root, list(meta["path"]), "probing ESC-50", progress)
    report_skipped(probed, output)
    require_some(probed, root)
    meta = meta[meta["path"].isin(probed.good)].reset_index(drop=True)
    warn_vanished(listed, meta)
    table = meta.assign(
        **{"class": meta["category"], "group": ENVIRONMENTAL},
        split=assign_splits(meta, train_folds, heldout_folds, shares),
    )
    table = info_columns(table, probed.good).drop(columns=["filename"])
    save(table, output, root, "esc50", command)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write the manifest of ESC-50 (one CSV row per clip) that dataset=esc50, "
        "cross and random_mix read.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="the ESC-50 folder (audio/ and meta/)")
    parser.add_argument(
        "--output", required=True, help="the manifest to write, e.g. manifests/esc50.csv"
    )
    parser.add_argument(
        "--train-folds",
        type=int,
        nargs="*",
        default=[1, 2, 3, 4],
        metavar="FOLD",
        help="folds whose clips all train (default: 1 2 3 4)",
    )
    parser.add_argument(
        "--heldout-folds",
        type=int,
        nargs="*",
        default=[5],
        metavar="FOLD",
        help="folds split per category into --heldout-split shares (default: 5)",
    )
    parser.add_argument(
        "--heldout-split",
        default="0:1:1",
        metavar="TRAIN:VALID:TEST",
        help="shares of each category's held-out clips, consecutive in sorted file order "
        "(default 0:1:1, the paper's halves)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    prepare_esc50(
        args.root,
        args.output,
        args.train_folds,
        args.heldout_folds,
        args.heldout_split,
        progress=not args.no_progress,
        command=command_line(PROG, argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ugr-prep-esc50`` (also ``python -m data_prep.esc50``)."""
    return run_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
