"""A speech corpus laid out in speaker folders -> a manifest with the speaker as the class.

Layouts (``--layout``, detected by default):

- ``wsj0``: the WAV conversion of WSJ0, ``.../si_tr_s/<speaker>/<utt>.wav`` (the subset
  folders may sit anywhere under the root, on several discs). Training and validation
  utterances come from ``si_tr_s``, test utterances from the unseen speakers of ``si_dt_05``
  and ``si_et_05``, as in wsj0-2mix (``--train-subsets`` / ``--test-subsets`` change that).
- ``librispeech``: ``<subset>/<speaker>/<chapter>/<utt>.flac`` under a LibriSpeech folder;
  ``train-*`` subsets train and validate, ``test-clean`` tests.
- ``speakers``: any ``<speaker>/<file>`` tree (e.g. ``../shared/data/fsdd_speech``, or one
  LibriSpeech subset). The speaker is the first folder below the root. Test speakers are
  ``--test-speakers``, or a seeded draw of ``--test-fraction`` of the speakers (at least 2, so
  that speaker-vs-speaker test mixtures exist).

Training speakers and test speakers never overlap (checked). Validation utterances are the
last ``--valid-fraction`` of each training speaker's sorted utterances: seen speakers, unseen
utterances, as the wsj0-2mix validation set.

Original WSJ0 ``.wv1`` files are shorten-compressed NIST SPHERE, which libsndfile cannot read:
they are detected, listed, and the conversion command is printed. ``.wv2`` files (the second
microphone, unused by wsj0-2mix) are ignored, and so is a ``.wv1`` that has a converted
``.wav`` beside it.

Examples::

    ugr-prep-speech --root /data/wsj0_wav --output manifests/speech.csv
    ugr-prep-speech --root ../shared/data/fsdd_speech --output manifests/speech.csv
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from data_prep.common import (
    PrepError,
    command_line,
    info_columns,
    probe_files,
    report_skipped,
    require_root,
    require_some,
    require_splits,
    run_main,
    save,
    walk_audio,
)
from ugr_experiments.data.base import SPEECH

PROG = "ugr-prep-speech"
EXAMPLE = f"{PROG} --root /data/wsj0_wav --output manifests/speech.csv"
LAYOUT = "speaker folders (si_tr_s/<speaker>/<utt>.wav, <speaker>/<chapter>/<utt>.flac, ...)"
EXTENSIONS = (".wav", ".flac", ".ogg", ".wv1", ".sph")
SPHERE_EXTENSIONS = (".wv1", ".sph")
LAYOUTS = ("auto", "wsj0", "librispeech", "speakers")
DEFAULT_SUBSETS = {
    "wsj0": (["si_tr_s"], ["si_dt_05", "si_et_05"]),
    "librispeech": (["train-*"], ["test-clean"]),
}
_LIBRI_SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")


def subset_dirs(root: Path, patterns: Sequence[str], max_depth: int = 5) -> list[Path]:
    """Folders under ``root`` whose name matches one of ``patterns`` (fnmatch), not nested."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for folder in frontier:
            with os.scandir(folder) as entries:
                children = sorted(e.name for e in entries if e.is_dir())
            for name in children:
                hit = any(fnmatch.fnmatchcase(name, p) for p in patterns)
                (found if hit else nxt).append(folder / name)
        frontier = nxt
    return found


def detect_layout(root: Path) -> str:
    if subset_dirs(root, ["si_tr_s"], max_depth=4):
        return "wsj0"
    if any(_LIBRI_SUBSET.match(p.name) for p in subset_dirs(root, ["*-clean*", "*-other*"], 3)):
        return "librispeech"
    return "speakers"


def drop_converted_sphere(paths: list[str]) -> list[str]:
    """Leave out a SPHERE file when a converted file with the same stem sits beside it."""
    stems = {str(PurePosixPath(p).with_suffix("")) for p in paths if not _is_sphere_name(p)}
    return [
        p
        for p in paths
        if not (_is_sphere_name(p) and str(PurePosixPath(p).with_suffix("")) in stems)
    ]


def _is_sphere_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in SPHERE_EXTENSIONS


def files_by_subset(root: Path, layout: str, train: list[str], test: list[str]) -> pd.DataFrame:
    """Rows ``path, speaker, subset, role`` (role: train / test) for a subsets layout."""
    rows = []
    for role, patterns in (("train", train), ("test", test)):
        dirs = subset_dirs(root, patterns)
        if not dirs:
            raise PrepError(
                f"{root} is not laid out as {layout}: no folder named {patterns} below it "
                f"(expected {LAYOUT}). Choose --layout speakers for a plain <speaker>/<file> "
                f"tree, or set --train-subsets / --test-subsets"
            )
        for folder in dirs:
            for rel in drop_converted_sphere(walk_audio(folder, EXTENSIONS)):
                parts = PurePosixPath(rel).parts
                if len(parts) < 2:
                    raise PrepError(f"{folder / rel} is not inside a speaker folder of {folder}")
                path = (folder / rel).relative_to(root).as_posix()
                rows.append((path, parts[0], folder.name, role))
    return pd.DataFrame(rows, columns=["path", "speaker", "subset", "role"])


def files_by_speaker(root: Path) -> pd.DataFrame:
    """Rows ``path, speaker, subset, role`` for a plain ``<speaker>/<file>`` tree (no roles yet)."""
    paths = drop_converted_sphere(walk_audio(root, EXTENSIONS))
    if not paths:
        raise PrepError(f"no audio files ({', '.join(EXTENSIONS)}) under {root}; expected {LAYOUT}")
    loose = [p for p in paths if len(PurePosixPath(p).parts) < 2]
    if loose:
        raise PrepError(
            f"{root} is not laid out in speaker folders: {len(loose)} audio file(s) sit directly "
            f"in it (e.g. {loose[0]}); expected <root>/<speaker>/<file>"
        )
    speakers = [PurePosixPath(p).parts[0] for p in paths]
    return pd.DataFrame({"path": paths, "speaker": speakers, "subset": "", "role": ""})


def pick_test_speakers(
    speakers: Sequence[str], names: Sequence[str] | None, fraction: float, seed: int
) -> set[str]:
    """The explicit ``names``, or a seeded draw of ``fraction`` of the speakers (at least 2)."""
    if names:
        unknown = sorted(set(names) - set(speakers))
        if unknown:
            raise PrepError(f"--test-speakers {unknown} not found; speakers: {sorted(speakers)}")
        return set(names)
    if len(speakers) < 3:
        raise PrepError(
            f"only {len(speakers)} speaker(s) {sorted(speakers)}: need at least 3 to keep "
            "test speakers apart from training speakers (or name them with --test-speakers)"
        )
    n_test = min(len(speakers) - 1, max(2, round(fraction * len(speakers))))
    order = np.random.default_rng(seed).permutation(sorted(speakers))
    return set(order[:n_test].tolist())


def assign_valid(table: pd.DataFrame, fraction: float) -> pd.Series:
    """``train`` rows -> the last ``fraction`` of each speaker's sorted utterances validate."""
    split = table["role"].copy()
    for _, rows in table[table["role"] == "train"].groupby("speaker"):
        order = rows.sort_values("path").index
        n_valid = min(len(order) - 1, math.ceil(fraction * len(order))) if fraction > 0 else 0
        if n_valid > 0:
            split[order[len(order) - n_valid :]] = "valid"
    return split


def check_disjoint(table: pd.DataFrame) -> None:
    train = set(table.loc[table["split"].isin(["train", "valid"]), "class"])
    test = set(table.loc[table["split"] == "test", "class"])
    shared = sorted(train & test)
    if shared:
        raise PrepError(
            f"speaker(s) {shared[:10]} are in both the training and the test subsets; test "
            "speakers must be unseen (check --train-subsets / --test-subsets)"
        )


def split_fixes(layout: str) -> dict[str, str]:
    """The options that fill each split, for the message of an empty one."""
    if layout == "speakers":
        test = "choose test speakers with --test-speakers or --test-fraction"
        train = "leave some speakers for training (--test-speakers, --test-fraction)"
    else:
        test = "point --test-subsets at the folders of the test speakers"
        train = "point --train-subsets at the folders of the training speakers"
    valid = (
        "raise --valid-fraction (e.g. 0.1; each training speaker needs 2 or more utterances "
        "to give one to validation)"
    )
    return {"train": train, "valid": valid, "test": test}


def list_files(root: Path, layout: str, args: argparse.Namespace) -> pd.DataFrame:
    if layout == "speakers":
        files = files_by_speaker(root)
        test = pick_test_speakers(
            sorted(set(files["speaker"])), args.test_speakers, args.test_fraction, args.seed
        )
        return files.assign(role=np.where(files["speaker"].isin(test), "test", "train"))
    default_train, default_test = DEFAULT_SUBSETS[layout]
    return files_by_subset(
        root, layout, args.train_subsets or default_train, args.test_subsets or default_test
    )


def prepare_speech(args: argparse.Namespace, command: str = EXAMPLE) -> pd.DataFrame:
    """Build and write the speech manifest from parsed arguments. Raises :class:`PrepError`."""
    root = require_root(args.root, EXAMPLE, LAYOUT)
    layout = detect_layout(root) if args.layout == "auto" else args.layout
    if layout == "speakers" and (args.train_subsets or args.test_subsets):
        raise PrepError("--train-subsets / --test-subsets apply to --layout wsj0 or librispeech")
    if layout != "speakers" and args.test_speakers:
        raise PrepError(f"--test-speakers applies to --layout speakers, not {layout}")
    files = list_files(root, layout, args)
    if files.empty:
        raise PrepError(f"no audio files ({', '.join(EXTENSIONS)}) under {root}; expected {LAYOUT}")
    print(f"{root}: layout {layout}, {len(files)} files", file=sys.stderr)
    probed = probe_files(root, list(files["path"]), "probing speech", not args.no_progress)
    output = Path(args.output)
    report_skipped(probed, output)
    require_some(probed, root)
    files = files[files["path"].isin(probed.good)].reset_index(drop=True)
    files = files.assign(**{"class": files["speaker"], "group": SPEECH})
    table = files.assign(
        split=assign_valid(files, args.valid_fraction),
        utterance=[PurePosixPath(p).stem for p in files["path"]],
    )
    check_disjoint(table)
    require_splits(table["split"], split_fixes(layout))  # before writing anything
    table = info_columns(table.drop(columns=["role", "speaker"]), probed.good)
    save(table, output, root, f"speech ({layout})", command)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write the manifest of a speech corpus in speaker folders (one CSV row per "
        "utterance, the speaker as the class) that dataset=speech, cross and random_mix read.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="the corpus folder")
    parser.add_argument(
        "--output", required=True, help="the manifest to write, e.g. manifests/speech.csv"
    )
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="default: detected")
    parser.add_argument(
        "--train-subsets",
        nargs="+",
        metavar="NAME",
        help="wsj0/librispeech: subset folders (globs) for train + valid "
        "(default si_tr_s; train-*)",
    )
    parser.add_argument(
        "--test-subsets",
        nargs="+",
        metavar="NAME",
        help="wsj0/librispeech: subset folders of unseen test speakers "
        "(default si_dt_05 si_et_05; test-clean)",
    )
    parser.add_argument(
        "--test-speakers",
        nargs="+",
        metavar="SPEAKER",
        help="speakers layout: the test speakers (default: a seeded draw, --test-fraction)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="speakers layout: share of speakers held out for test, at least 2 (default 0.2)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of each training speaker's utterances that validate (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the test-speaker draw")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if not 0 <= args.valid_fraction < 1:
        raise PrepError(f"--valid-fraction {args.valid_fraction}: expected 0 <= value < 1")
    prepare_speech(args, command_line(PROG, argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ugr-prep-speech`` (also ``python -m data_prep.speech``)."""
    return run_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
