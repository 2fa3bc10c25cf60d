"""Corpus mixtures: the paper's recipe on the real clips of ../shared/data, and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from data_prep.esc50 import prepare_esc50
from data_prep.speech import build_parser, prepare_speech
from ugr_experiments.data import build_datasets, collate_mixtures
from ugr_experiments.data.audio import load_file, read_segment
from ugr_experiments.data.base import ENVIRONMENTAL, SPEECH
from ugr_experiments.data.corpus import rms_db
from ugr_experiments.data.manifest import read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (SHARED / "esc50_mini").is_dir() or not (SHARED / "fsdd_speech").is_dir(),
    reason=f"the real clips of ../shared/data are not at {SHARED}",
)
NAMES = ("esc50", "speech", "cross", "random_mix")
SR = 8000


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> Path:
    """Manifests of the shared clips: ESC-50 fold 4 split per class, FSDD 3 + 2 speakers."""
    out = tmp_path_factory.mktemp("manifests")
    prepare_esc50(SHARED / "esc50_mini", out / "esc50.csv", (1, 2, 3, 5), (4,), "4:1:1", False)
    args = build_parser().parse_args(
        [
            "--root",
            str(SHARED / "fsdd_speech"),
            "--output",
            str(out / "speech.csv"),
            "--no-progress",
        ]
    )
    prepare_speech(args)
    return out


def dataset_cfg(name: str, manifests: Path, **override) -> dict:
    """``conf/dataset/<name>.yaml`` resolved with ``paths.manifests``, shrunk for tests."""
    cfg = OmegaConf.create(
        {
            "paths": {"manifests": str(manifests)},
            "dataset": OmegaConf.load(REPO / "conf" / "dataset" / f"{name}.yaml"),
        }
    )
    plain = OmegaConf.to_container(cfg, resolve=True)["dataset"]
    plain.update({"segment_seconds": 0.5, "n_valid": 6, "n_test": 12})
    plain.update(override)
    return plain


def build(name: str, manifests: Path, seed: int = 0, train: int = 12, **override) -> dict:
    return build_datasets(dataset_cfg(name, manifests, **override), seed, train)


def same_item(a: dict, b: dict) -> bool:
    return torch.equal(a["mixture"], b["mixture"]) and a["info"] == b["info"]


def stream_of(info: dict) -> np.ndarray:
    """Re-read a source from its recorded file(s) at the model's rate."""
    return np.concatenate([load_file(f, SR) for f in info["file"].split("|")])


def raw_segment(info: dict, length: int) -> np.ndarray:
    """The segment a source's ``file`` and ``offset`` point at (see corpus.py's docstring)."""
    files, offset = info["file"].split("|"), info["offset"]
    if len(files) == 1 and offset >= 0:
        return read_segment(files[0], offset, length, SR)
    stream = stream_of(info)
    if offset < 0:
        stream = np.concatenate([np.zeros(-offset, np.float32), stream])
        offset = 0
    out = np.zeros(length, np.float32)
    seg = stream[offset : offset + length]
    out[: len(seg)] = seg
    return out


@pytest.mark.parametrize("name", NAMES)
def test_items_follow_the_recipe(manifests: Path, name: str) -> None:
    data = build(name, manifests)
    for split in ("train", "test"):
        ds = data[split]
        for i in range(len(ds)):
            item = ds[i]
            assert item["mixture"].shape == (4000,) and item["sources"].shape == (2, 4000)
            torch.testing.assert_close(item["sources"].sum(0), item["mixture"], atol=1e-5, rtol=0)
            a, b = item["info"]
            assert a["class"] != b["class"] and item["class_idx"][0] != item["class_idx"][1]
            assert [ds.class_names[c] for c in item["class_idx"]] == [a["class"], b["class"]]
            assert [ds.group_names[g] for g in item["group_idx"]] == [a["group"], b["group"]]
            # realised SNR of source 0 over source 1, and within the configured range
            src = item["sources"].double()
            snr = 10 * torch.log10(src[0].pow(2).sum() / src[1].pow(2).sum()).item()
            assert snr == pytest.approx(a["snr_db"], abs=1e-3) and -5 <= snr <= 5
            assert a["snr_db"] == b["snr_db"]


@pytest.mark.parametrize("name", ["cross", "speech"])
def test_sources_trace_back_to_audio_above_the_floor(manifests: Path, name: str) -> None:
    ds = build(name, manifests)["train"]
    for i in range(8):
        item = ds[i]
        for s, info in enumerate(item["info"]):
            raw = raw_segment(info, 4000)
            assert rms_db(raw) >= ds.min_rms_db
            target = item["sources"][s].numpy().astype(np.float64)
            raw = raw - raw.mean()
            corr = raw @ target / np.sqrt((raw @ raw) * (target @ target))
            assert corr > 0.9999, (info, corr)


def test_no_source_below_the_energy_threshold(manifests: Path) -> None:
    # Many 0.25 s crops of ESC-50 fall in digital silence; none may reach a mixture.
    ds = build("esc50", manifests, train=40, segment_seconds=0.25, min_rms_db=-40.0)["train"]
    for i in range(len(ds)):
        for info in ds[i]["info"]:
            assert rms_db(raw_segment(info, 2000)) >= -40.0


def test_rms_db_by_hand() -> None:
    x = 0.5 * np.sin(2 * np.pi * 100 * np.arange(8000) / 8000) + 0.2  # the mean is removed
    assert rms_db(x) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=1e-6)
    assert rms_db(np.zeros(10)) == pytest.approx(-200.0)


@pytest.mark.parametrize("name", ["esc50", "cross"])
def test_test_set_fixed_across_runs_and_epochs(manifests: Path, name: str) -> None:
    one, two = build(name, manifests), build(name, manifests)
    first = [one["test"][i] for i in range(len(one["test"]))]
    for ds in (one["test"], one["valid"]):
        ds.set_epoch(5)
    assert all(same_item(first[i], two["test"][i]) for i in range(len(first)))
    assert all(same_item(first[i], one["test"][i]) for i in range(len(first)))
    assert not same_item(one["test"][0], one["valid"][0])
    # dataset.eval_seed (default 0) fixes the test set for every training seed ...
    other_seed = build(name, manifests, seed=1)["test"]
    assert all(same_item(first[i], other_seed[i]) for i in range(len(first)))
    # ... and another eval_seed draws another one
    other_eval = build(name, manifests, eval_seed=1)["test"]
    assert not all(same_item(first[i], other_eval[i]) for i in range(len(first)))


_DIGEST = """
import hashlib, json, sys
from ugr_experiments.data import build_datasets
cfg = json.loads(sys.argv[1])
test = build_datasets(cfg, 0, 4)["test"]
h = hashlib.sha256()
for i in range(len(test)):
    h.update(test[i]["mixture"].numpy().tobytes())
print(h.hexdigest())
"""


def test_test_set_identical_in_a_fresh_process(manifests: Path) -> None:
    cfg = dataset_cfg("cross", manifests)
    test = build_datasets(cfg, 0, 4)["test"]
    digest = hashlib.sha256()
    for i in range(len(test)):
        digest.update(test[i]["mixture"].numpy().tobytes())
    proc = subprocess.run(
        [sys.executable, "-c", _DIGEST, json.dumps(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == digest.hexdigest()


def test_training_mixtures_differ_across_epochs(manifests: Path) -> None:
    ds = build("cross", manifests)["train"]
    epoch0 = [ds[i] for i in range(len(ds))]
    ds.set_epoch(1)
    epoch1 = [ds[i] for i in range(len(ds))]
    assert not any(same_item(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    ds.set_epoch(0)
    assert all(same_item(a, ds[i]) for i, a in enumerate(epoch0))  # resumable


def test_dataloader_workers_do_not_repeat_each_other(manifests: Path) -> None:
    ds = build("esc50", manifests, train=16)["train"]
    ds.set_epoch(3)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, collate_fn=collate_mixtures, shuffle=False
    )
    batches = list(loader)
    mixtures = torch.cat([b["mixture"] for b in batches])
    assert [i for b in batches for i in b["index"]] == list(range(16))
    for i in range(16):  # the same as in the main process: items depend on the index only
        torch.testing.assert_close(mixtures[i], ds[i]["mixture"], atol=0, rtol=0)
    assert len({tuple(m[:50].tolist()) for m in mixtures}) == 16


def test_speaker_sets_of_train_and_test_do_not_overlap(manifests: Path) -> None:
    data = build("speech", manifests, train=40, n_test=40)
    speakers = {
        split: {i["class"] for k in range(len(data[split])) for i in data[split][k]["info"]}
        for split in ("train", "test")
    }
    assert speakers["train"] and speakers["test"]
    assert not speakers["train"] & speakers["test"]
    m = read_manifest(manifests / "speech.csv").table
    assert speakers["test"] == set(m.loc[m["split"] == "test", "class"])


def test_cross_and_random_mix_groups(manifests: Path) -> None:
    cross = build("cross", manifests)["test"]
    assert cross.group_names == [SPEECH, ENVIRONMENTAL]
    for i in range(len(cross)):
        assert [info["group"] for info in cross[i]["info"]] == [SPEECH, ENVIRONMENTAL]
    mixed = build("random_mix", manifests, train=200)["train"]
    groups = np.array([mixed[i]["group_idx"].tolist() for i in range(len(mixed))])
    share = (groups == mixed.group_names.index(SPEECH)).mean()
    assert 0.4 < share < 0.6  # each source speech with probability 0.5


def test_short_utterances_pad_or_concat(manifests: Path) -> None:
    # Spoken digits (~0.45 s) are shorter than a 2 s segment.
    concat = build("speech", manifests, segment_seconds=2.0)["test"][0]["info"][0]
    assert concat["file"].count("|") >= 2 and concat["offset"] >= 0
    padded = build("speech", manifests, segment_seconds=2.0, short_sources="pad")["test"]
    info = padded[0]["info"][0]
    assert "|" not in info["file"] and info["offset"] <= 0
    raw = raw_segment(info, 16000)
    start = -info["offset"]
    n = len(load_file(info["file"], SR))
    assert not raw[:start].any() and not raw[start + n :].any()


def test_stereo_44k_corpus_is_converted(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    t = np.arange(44100) / 44100
    rows = []
    for cls, f0 in [("a", 300.0), ("b", 900.0), ("c", 1500.0)]:
        wave = 0.3 * np.sin(2 * np.pi * f0 * t)
        sf.write(root / "audio" / f"{cls}.wav", np.stack([wave, wave], 1), 44100)
        rows.append((f"audio/{cls}.wav", cls, ENVIRONMENTAL, "train", 1.0, 44100, 44100, 2))
    cols = ["path", "class", "group", "split", "duration", "sample_rate", "frames", "channels"]
    table = pd.DataFrame(rows, columns=cols)
    table = pd.concat([table, table.assign(split="valid"), table.assign(split="test")])
    write_manifest(tmp_path / "esc50.csv", table, root)
    item = build("esc50", tmp_path)["train"][0]
    assert item["mixture"].shape == (4000,)
    info = item["info"][0]
    np.testing.assert_allclose(
        raw_segment(info, 4000), read_segment(info["file"], info["offset"], 4000, SR)
    )
    spectrum = np.abs(np.fft.rfft(item["sources"][0].numpy()))
    f0 = {"a": 300, "b": 900, "c": 1500}[info["class"]]
    assert np.argmax(spectrum) * SR / 4000 == pytest.approx(f0, abs=2)


def test_silent_class_fails_clearly(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    rows = []
    for cls in ("loud", "quiet"):
        sf.write(
            root / f"{cls}.wav",
            np.zeros(8000) if cls == "quiet" else np.random.default_rng(0).uniform(-0.5, 0.5, 8000),
            8000,
        )
        for split in ("train", "valid", "test"):
            rows.append((f"{cls}.wav", cls, ENVIRONMENTAL, split, 1.0, 8000, 8000, 1))
    cols = ["path", "class", "group", "split", "duration", "sample_rate", "frames", "channels"]
    write_manifest(tmp_path / "esc50.csv", pd.DataFrame(rows, columns=cols), root)
    ds = build("esc50", tmp_path, max_tries=5)["train"]
    with pytest.raises(RuntimeError, match="'quiet'.*min_rms_db"):
        ds[0]


def test_missing_manifest_names_path_and_command(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        build("cross", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "speech.csv") in msg and "ugr-prep-speech --root" in msg
    with pytest.raises(ValueError, match=r"esc50\.csv.*ugr-prep-esc50 --root"):
        build("esc50", tmp_path)


def test_moved_corpus_and_roots_override(manifests: Path, tmp_path: Path) -> None:
    table = read_manifest(manifests / "esc50.csv").table
    write_manifest(tmp_path / "esc50.csv", table, tmp_path / "gone")
    with pytest.raises(
        ValueError, match=r"corpus root .*gone of .* does not exist.*dataset\.roots"
    ):
        build("esc50", tmp_path)
    data = build("esc50", tmp_path, roots={ENVIRONMENTAL: str(SHARED / "esc50_mini")})
    assert data["test"][0]["info"][0]["file"].startswith(str(SHARED / "esc50_mini"))


def test_too_few_classes_in_a_split(manifests: Path, tmp_path: Path) -> None:
    table = read_manifest(manifests / "esc50.csv").table
    table.loc[table["split"] == "test", "class"] = "dog"
    write_manifest(tmp_path / "esc50.csv", table, SHARED / "esc50_mini")
    with pytest.raises(ValueError, match="test split .* 1 environmental class"):
        build("esc50", tmp_path)


# --------------------------------------------------------------------------------------------
# End to end: `python train.py dataset=... ` on the real clips writes the per-group table


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "groups"), [("esc50", {"environmental"}), ("cross", {"speech", "environmental"})]
)
def test_train_writes_the_table_on_real_clips(
    manifests: Path, tmp_path: Path, name, groups
) -> None:
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        f"dataset={name}",
        f"paths.manifests={manifests}",
        "train.epochs=1",
        "train.steps_per_epoch=3",
        "train.batch_size=2",
        "train.progress=false",
        "dataset.n_valid=4",
        "dataset.n_test=8",
        "dataset.segment_seconds=0.5",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "UGR_MANIFESTS": str(tmp_path / "elsewhere")}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(run_dir / "sisdri_table.csv", index_col=0)
    assert set(table.index) == {"all"} | groups
    assert table.loc["all", "n"] == 16 and np.isfinite(table["mean"]).all()
    rows = pd.read_csv(run_dir / "per_source_sisdri.csv")
    assert len(rows) == 16 and set(rows["group"]) == groups
    for file in rows["file"]:
        assert all(Path(f).is_file() for f in file.split("|"))


def _only_split(manifests: Path, out: Path, keep: str) -> Path:
    """A copy of the ESC-50 manifest whose rows outside ``keep`` are marked unused."""
    m = read_manifest(manifests / "esc50.csv")
    table = m.table.assign(split=np.where(m.table["split"] == keep, keep, "unused"))
    write_manifest(out, table, m.root)
    return out


def test_a_missing_split_is_named_in_plain_words(manifests: Path, tmp_path: Path) -> None:
    only_test = _only_split(manifests, tmp_path / "test_only.csv", "test")
    cfg = dataset_cfg("cross", manifests)
    cfg["manifests"]["environmental"] = str(only_test)
    with pytest.raises(ValueError) as info:
        build_datasets(cfg, 0, 12)
    message = str(info.value)
    assert "the train split of" in message and "has 0 environmental classes" in message
    assert "cross mixtures need at least 1 environmental class" in message
    assert "1 different classes" not in message and "class(es)" not in message


def test_only_the_requested_splits_are_built(manifests: Path, tmp_path: Path) -> None:
    only_test = _only_split(manifests, tmp_path / "test_only.csv", "test")
    cfg = dataset_cfg("esc50", manifests)
    cfg["manifests"]["environmental"] = str(only_test)
    data = build_datasets(cfg, 0, 12, splits=("test",))
    assert list(data) == ["test"] and len(data["test"]) == 12
    ref = build("esc50", manifests)["test"]
    assert same_item(data["test"][3], ref[3])  # the same test items as a full build
