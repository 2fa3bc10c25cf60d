"""data_prep: corpus -> manifest, split rules, layouts, and bad input (tiny corpora made here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data_prep import cache, esc50, speech
from data_prep.esc50 import split_sorted
from ugr_experiments.data.manifest import COLUMNS, atomic_write_text, read_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "esc50_mini").is_dir(), reason=f"real clips not found at {SHARED}"
)


def tone(seconds: float = 0.3, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, (round(seconds * rate), channels))
    return x.astype(np.float32)


def make_esc50(root: Path, per_class: int = 4, folds=(1, 5), classes=("dog", "rain")) -> Path:
    """A tiny ESC-50 tree: ``per_class`` clips of each class in each fold."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for fold in folds:
        for target, category in enumerate(classes):
            for k in range(per_class):
                name = f"{fold}-{1000 + 10 * target + k}-A-{target}.wav"
                sf.write(root / "audio" / name, tone(seed=fold * 100 + k), 16000)
                rows.append((name, fold, target, category, False, 1000 + k, "A"))
    cols = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "meta" / "esc50.csv", index=False)
    return root


def make_speakers(root: Path, speakers=("ann", "bob", "cy", "dee"), n_utt: int = 5) -> Path:
    for s, name in enumerate(speakers):
        (root / name).mkdir(parents=True)
        for u in range(n_utt):
            sf.write(root / name / f"{u}_{name}.wav", tone(0.2, 8000, seed=10 * s + u), 8000)
    return root


def write_shorten_sphere(path: Path) -> None:
    coding = "pcm,embedded-shorten-v2.00"
    head = (
        f"NIST_1A\n   1024\nsample_rate -i 16000\n"
        f"sample_coding -s{len(coding)} {coding}\nend_head\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head.encode().ljust(1024, b" ") + bytes(2000))


def run_prep(module, argv: list[str], capsys) -> tuple[int, str]:
    code = module.main([*argv, "--no-progress"])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# ESC-50


def test_split_sorted_shares() -> None:
    assert split_sorted(list("abcdefgh"), (0, 1, 1)) == ["valid"] * 4 + ["test"] * 4
    assert split_sorted(list("abcdef"), (4, 1, 1)) == ["train"] * 4 + ["valid", "test"]
    assert split_sorted(list("abc"), (1, 0, 0)) == ["train"] * 3


def test_esc50_split_follows_the_folds(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_class=4, folds=(1, 2, 5, 3))
    out = tmp_path / "m" / "esc50.csv"
    code, _ = run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0
    m = read_manifest(out)
    t = m.table
    assert list(t.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(t.loc[t["fold"].isin([1, 2, 3]), "split"]) == {"train"}
    fold5 = t[t["fold"] == 5]
    for _, rows in fold5.groupby("class"):
        names = sorted(rows["path"])
        got = rows.set_index("path").loc[names, "split"].tolist()
        assert got == ["valid", "valid", "test", "test"]  # first half of the sorted list validates
    assert (t["group"] == "environmental").all() and (t["sample_rate"] == 16000).all()
    assert m.root == root.resolve() and m.header["corpus"] == "esc50"
    assert (t["path"].str.startswith("audio/")).all()
    # pandas alone reads it too
    plain = pd.read_csv(out, comment="#")
    assert len(plain) == len(t) and "fold" in plain.columns


def test_esc50_manifest_is_deterministic(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_class=5, folds=(4,))
    argv = [
        "--root",
        str(root),
        "--heldout-folds",
        "4",
        "--train-folds",
        "--heldout-split",
        "3:1:1",
    ]
    run_prep(esc50, [*argv, "--output", str(tmp_path / "a.csv")], capsys)
    run_prep(esc50, [*argv, "--output", str(tmp_path / "b.csv")], capsys)
    a, b = read_manifest(tmp_path / "a.csv").table, read_manifest(tmp_path / "b.csv").table
    pd.testing.assert_frame_equal(a, b)
    assert a.groupby("split").size().to_dict() == {"test": 2, "train": 6, "valid": 2}


@needs_shared
def test_esc50_mini_per_class_split_of_fold_4(tmp_path: Path, capsys) -> None:
    out = tmp_path / "esc50.csv"
    argv = [
        "--root",
        str(SHARED / "esc50_mini"),
        "--output",
        str(out),
        "--train-folds",
        "1",
        "2",
        "3",
        "5",
        "--heldout-folds",
        "4",
        "--heldout-split",
        "4:1:1",
    ]
    code, err = run_prep(esc50, argv, capsys)
    assert code == 0, err
    t = read_manifest(out).table
    assert len(t) == 314 and t["class"].nunique() == 50
    for split in ("train", "valid", "test"):
        assert t.loc[t["split"] == split, "class"].nunique() == 50, split
    fold4 = t[t["fold"] == 4]
    for _, rows in fold4.groupby("class"):
        order = rows.sort_values("path")["split"].tolist()
        assert order == sorted(order, key=["train", "valid", "test"].index)


def test_esc50_overlapping_folds_are_refused(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50")
    out = tmp_path / "esc50.csv"
    code, err = run_prep(
        esc50,
        [
            "--root",
            str(root),
            "--output",
            str(out),
            "--train-folds",
            "1",
            "5",
            "--heldout-folds",
            "5",
        ],
        capsys,
    )
    assert code == 2 and "fold(s) [5]" in err and not out.exists()


def test_missing_root_names_path_and_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, ["--root", str(tmp_path / "nope"), "--output", str(out)], capsys)
    assert code == 2 and str(tmp_path / "nope") in err and "ugr-prep-esc50 --root" in err
    assert not out.exists()
    code, err = run_prep(speech, ["--root", str(tmp_path / "nope"), "--output", str(out)], capsys)
    assert code == 2 and str(tmp_path / "nope") in err and "ugr-prep-speech --root" in err


def test_esc50_wrong_layout(tmp_path: Path, capsys) -> None:
    (tmp_path / "corpus" / "wavs").mkdir(parents=True)
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, ["--root", str(tmp_path / "corpus"), "--output", str(out)], capsys)
    assert code == 2 and "not laid out as ESC-50" in err and "meta/esc50.csv" in err
    assert not out.exists()


def test_undecodable_clip_is_listed_and_skipped(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50")
    (root / "audio" / "1-1000-A-0.wav").write_bytes(b"RIFF garbage, not a wave file" * 3)
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0
    assert "skipped 1 file(s)" in err and "audio/1-1000-A-0.wav" in err
    t = read_manifest(out).table
    assert "audio/1-1000-A-0.wav" not in set(t["path"]) and len(t) == 15


def test_stereo_and_other_rates_are_recorded(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50")
    sf.write(root / "audio" / "1-1000-A-0.wav", tone(0.5, 44100, channels=2), 44100)
    out = tmp_path / "esc50.csv"
    run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    row = read_manifest(out).table.set_index("path").loc["audio/1-1000-A-0.wav"]
    assert (row["channels"], row["sample_rate"], row["frames"]) == (2, 44100, 22050)
    assert row["duration"] == pytest.approx(0.5)


def test_module_entry_point_runs(tmp_path: Path) -> None:
    root = make_esc50(tmp_path / "ESC-50")
    out = tmp_path / "esc50.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep.esc50", "--root", str(root), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_manifest(out).table["split"].isin(["train", "valid", "test"]).all()


# --------------------------------------------------------------------------------------------
# Speech


@needs_shared
def test_fsdd_speakers_train_and_test_do_not_overlap(tmp_path: Path, capsys) -> None:
    out = tmp_path / "speech.csv"
    code, err = run_prep(
        speech, ["--root", str(SHARED / "fsdd_speech"), "--output", str(out)], capsys
    )
    assert code == 0, err
    t = read_manifest(out).table
    train = set(t.loc[t["split"] == "train", "class"])
    valid = set(t.loc[t["split"] == "valid", "class"])
    test = set(t.loc[t["split"] == "test", "class"])
    assert len(test) == 2 and len(train) == 3 and not train & test and valid == train
    assert (t["group"] == "speech").all() and len(t) == 2500
    # seen speakers, unseen utterances: validation is the last 10% of each sorted list
    for _, rows in t[t["class"].isin(train)].groupby("class"):
        order = rows.sort_values("path")["split"].tolist()
        assert order[-1] == "valid" and order[0] == "train"


def test_explicit_test_speakers(tmp_path: Path, capsys) -> None:
    root = make_speakers(tmp_path / "spk")
    out = tmp_path / "speech.csv"
    code, _ = run_prep(
        speech,
        [
            "--root",
            str(root),
            "--output",
            str(out),
            "--test-speakers",
            "ann",
            "cy",
            "--valid-fraction",
            "0.2",
        ],
        capsys,
    )
    assert code == 0
    t = read_manifest(out).table
    assert set(t.loc[t["split"] == "test", "class"]) == {"ann", "cy"}
    assert t.groupby("split").size().to_dict() == {"test": 10, "train": 8, "valid": 2}
    code, err = run_prep(
        speech, ["--root", str(root), "--output", str(out), "--test-speakers", "zed"], capsys
    )
    assert code == 2 and "zed" in err


def test_wsj0_layout_and_sphere_handling(tmp_path: Path, capsys) -> None:
    root = tmp_path / "wsj0_wav"
    make_speakers(root / "disc1" / "wsj0" / "si_tr_s", speakers=("01a", "01b"), n_utt=3)
    make_speakers(root / "disc1" / "wsj0" / "si_dt_05", speakers=("050",), n_utt=2)
    make_speakers(root / "disc2" / "wsj0" / "si_et_05", speakers=("440",), n_utt=2)
    make_speakers(root / "disc1" / "wsj0" / "sd_tr_s", speakers=("01a",), n_utt=2)  # not used
    # a converted utterance keeps its .wv1 beside it: ignored; a lone .wv1: listed with the fix
    write_shorten_sphere(root / "disc1" / "wsj0" / "si_tr_s" / "01a" / "0_01a.wv1")
    write_shorten_sphere(root / "disc1" / "wsj0" / "si_tr_s" / "01b" / "zz.wv1")
    out = tmp_path / "speech.csv"
    code, err = run_prep(speech, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0, err
    assert "layout wsj0" in err and "skipped 1 file(s)" in err and "01b/zz.wv1" in err
    assert "sph2pipe" in err
    t = read_manifest(out).table
    assert set(t["subset"]) == {"si_tr_s", "si_dt_05", "si_et_05"}
    assert set(t.loc[t["subset"] == "si_tr_s", "split"]) == {"train", "valid"}
    assert set(t.loc[t["split"] == "test", "class"]) == {"050", "440"}
    assert len(t) == 10 and not t["path"].str.endswith(".wv1").any()


def test_all_sphere_corpus_fails_with_the_conversion(tmp_path: Path, capsys) -> None:
    root = tmp_path / "wsj0"
    for spk in ("01a", "01b"):
        write_shorten_sphere(root / "si_tr_s" / spk / f"{spk}0101.wv1")
    write_shorten_sphere(root / "si_et_05" / "440" / "440c0201.wv1")
    out = tmp_path / "speech.csv"
    code, err = run_prep(speech, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 2 and "shorten" in err and "sph2pipe -f wav" in err and not out.exists()


def test_librispeech_layout(tmp_path: Path, capsys) -> None:
    root = tmp_path / "LibriSpeech"
    for subset, speakers in (
        ("train-clean-100", ("19", "26", "27")),
        ("test-clean", ("61", "121")),
    ):
        for spk in speakers:
            folder = root / subset / spk / "198"
            folder.mkdir(parents=True)
            for u in range(3):
                sf.write(folder / f"{spk}-198-{u:04d}.flac", tone(0.2, 16000, seed=u), 16000)
    out = tmp_path / "speech.csv"
    code, err = run_prep(speech, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0, err
    t = read_manifest(out).table
    assert set(t.loc[t["split"] == "test", "class"]) == {"61", "121"}
    assert set(t.loc[t["split"] != "test", "class"]) == {"19", "26", "27"}


def test_speech_wrong_layout(tmp_path: Path, capsys) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    for u in range(3):
        sf.write(root / f"{u}.wav", tone(0.2, 8000), 8000)
    code, err = run_prep(speech, ["--root", str(root), "--output", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "not laid out in speaker folders" in err
    empty = tmp_path / "empty"
    (empty / "spk").mkdir(parents=True)
    code, err = run_prep(
        speech, ["--root", str(empty), "--output", str(tmp_path / "s.csv")], capsys
    )
    assert code == 2 and "no audio files" in err
    assert not (tmp_path / "s.csv").exists()


def test_too_few_speakers_for_a_split(tmp_path: Path, capsys) -> None:
    root = make_speakers(tmp_path / "spk", speakers=("ann", "bob"))
    code, err = run_prep(speech, ["--root", str(root), "--output", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "at least 3" in err


# --------------------------------------------------------------------------------------------
# Manifests: atomic writes, moving the corpus; the resampled cache


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m.csv"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.csv"]


def test_manifest_survives_moving_the_corpus(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "old" / "ESC-50")
    out = tmp_path / "esc50.csv"
    run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    moved = read_manifest(out, root=tmp_path / "new" / "ESC-50")
    assert all(moved.absolute(p).is_file() for p in moved.table["path"])


def test_cache_resamples_to_8k_mono(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_class=2)
    sf.write(root / "audio" / "1-1000-A-0.wav", tone(0.5, 44100, channels=2), 44100)
    src, out = tmp_path / "esc50.csv", tmp_path / "esc50_8k.csv"
    run_prep(esc50, ["--root", str(root), "--output", str(src)], capsys)
    argv = ["--manifest", str(src), "--cache-dir", str(tmp_path / "cache"), "--output", str(out)]
    code, err = run_prep(cache, argv, capsys)
    assert code == 0, err
    m = read_manifest(out)
    assert m.root == (tmp_path / "cache").resolve()
    assert (m.table["sample_rate"] == 8000).all() and (m.table["channels"] == 1).all()
    row = m.table.set_index("path").loc["audio/1-1000-A-0.wav"]
    assert row["frames"] == 4000 and sf.info(str(m.root / "audio/1-1000-A-0.wav")).frames == 4000
    pd.testing.assert_series_equal(m.table["split"], read_manifest(src).table["split"])
    code, _ = run_prep(cache, argv, capsys)  # a rerun reuses the cached files
    assert code == 0
    code, err = run_prep(
        cache,
        ["--manifest", str(src), "--cache-dir", str(tmp_path / "c2"), "--output", str(src)],
        capsys,
    )
    assert code == 2 and "differ" in err


# ---------------------------------------------------------------------------------------------
# Issue 13: file modes, symlinks, missing clips, empty splits
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_manifests_respect_the_umask(tmp_path: Path, capsys, umask: int) -> None:
    import os
    import stat

    root = make_esc50(tmp_path / "ESC-50")
    old = os.umask(umask)
    try:
        code, _ = run_prep(
            esc50, ["--root", str(root), "--output", str(tmp_path / "m.csv")], capsys
        )
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "m.csv").stat().st_mode) == 0o666 & ~umask


def test_symlinked_speaker_folders_are_followed(tmp_path: Path, capsys) -> None:
    real = make_speakers(tmp_path / "real")
    root = tmp_path / "corpus"
    root.mkdir()
    for folder in sorted(real.iterdir()):
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    (root / "ann" / "loop").symlink_to(root, target_is_directory=True)  # a cycle: visited once
    out = tmp_path / "s.csv"
    code, err = run_prep(speech, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0, err
    t = read_manifest(out).table
    assert len(t) == 20 and set(t["class"]) == {"ann", "bob", "cy", "dee"}
    assert not t["path"].str.contains("loop").any()


def test_missing_and_unlisted_clips_are_named_and_a_vanished_class_warned(
    tmp_path: Path, capsys
) -> None:
    root = make_esc50(
        tmp_path / "ESC-50", per_class=4, folds=(1, 5), classes=("dog", "rain", "cat")
    )
    for path in (root / "audio").glob("*-A-2.wav"):  # every clip of "cat"
        path.unlink()
    (root / "audio" / "1-1001-A-0.wav").unlink()
    sf.write(root / "audio" / "9-9999-A-9.wav", tone(), 16000)
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0, err
    assert "9 clip(s) of meta/esc50.csv are not in audio/" in err and "1-1001-A-0.wav" in err
    assert "1-1020-A-2.wav" in err and "5-1023-A-2.wav" in err
    assert "1 file(s) of audio/ are not in meta/esc50.csv" in err and "9-9999-A-9.wav" in err
    assert "category 'cat' has no clip left" in err
    assert set(read_manifest(out).table["class"]) == {"dog", "rain"}


def test_many_missing_clips_are_listed_in_a_file(tmp_path: Path, capsys) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_class=15, folds=(1, 5))
    gone = sorted((root / "audio").glob("1-*.wav"))[:25]
    for path in gone:
        path.unlink()
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, ["--root", str(root), "--output", str(out)], capsys)
    assert code == 0, err
    listing = tmp_path / "esc50.csv.missing.txt"
    assert f"and 5 more: see {listing}" in err
    assert listing.read_text().split() == [f"audio/{p.name}" for p in gone]


@pytest.mark.parametrize(
    ("per_class", "shares", "message"),
    [
        (3, "4:1:1", r"the valid split would be empty.*use --heldout-split 1:1:1"),
        (2, "4:1:1", r"the test split would be empty.*no --heldout-split .*--train-folds"),
    ],
)
def test_an_empty_split_is_an_error_with_a_split_that_works(
    tmp_path: Path, capsys, per_class: int, shares: str, message: str
) -> None:
    import re

    root = make_esc50(tmp_path / "ESC-50", per_class=per_class, folds=(4,))
    argv = ["--root", str(root), "--train-folds", "--heldout-folds", "4", "--output"]
    out = tmp_path / "esc50.csv"
    code, err = run_prep(esc50, [*argv, str(out), "--heldout-split", shares], capsys)
    assert code == 2 and re.search(message, err, re.S), err
    assert not out.exists()
    if per_class == 3:  # the suggestion works
        code, err = run_prep(esc50, [*argv, str(out), "--heldout-split", "1:1:1"], capsys)
        assert code == 0, err
        assert set(read_manifest(out).table["split"]) == {"train", "valid", "test"}


def test_an_empty_speech_validation_split_is_an_error(tmp_path: Path, capsys) -> None:
    root = make_speakers(tmp_path / "spk", speakers=("ann", "bob", "cy", "dee", "eve"))
    argv = ["--root", str(root), "--output", str(tmp_path / "s.csv"), "--valid-fraction", "0"]
    code, err = run_prep(speech, argv, capsys)
    assert code == 2 and "the valid split would be empty" in err and "--valid-fraction" in err
    assert not (tmp_path / "s.csv").exists()


def test_readme_quotes_non_ascii_paths_in_hydra_overrides() -> None:
    """The README's example composes; the same override unquoted is refused by Hydra."""
    import re

    from conftest import compose_config
    from hydra.errors import OverrideParseException

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"\"(dataset\.roots\.environmental='(/[^']*)')\"", readme)
    assert found, "the README shows how to quote a non-ASCII path in an override"
    override, path = found.groups()
    assert not path.isascii()
    cfg = compose_config(["dataset=esc50", override])
    assert cfg.dataset.roots.environmental == path
    with pytest.raises(OverrideParseException):
        compose_config(["dataset=esc50", f"dataset.roots.environmental={path}"])
