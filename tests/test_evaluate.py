"""``ugr-evaluate``: reproducing a run's table from its checkpoint; TensorBoard audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, TINY, compose_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ugr_experiments.config import to_plain
from ugr_experiments.inference.evaluate import OUTPUT_FILES, audio_due, first_items, log_audio, main
from ugr_experiments.inference.export import export_model
from ugr_experiments.training.loop import run

COMPARED = ("per_source_sisdri.csv", "sisdri_table.csv", "sisdri_table.md", "sisdri_table.tex")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny two-epoch run, with TensorBoard audio every epoch."""
    path = tmp_path_factory.mktemp("run")
    run(compose_config(TINY + ["train.epochs=2", "train.audio_every=1", "device=cpu"]), path)
    return path


def same_files(a, b, names=COMPARED) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_evaluate_reproduces_the_end_of_training_exactly(run_dir, tmp_path, capsys):
    main([str(run_dir), "-o", str(tmp_path / "eval"), "--no-progress", "--device", "cpu"])
    assert "Test SI-SDRi (dB)" in capsys.readouterr().out
    same_files(run_dir, tmp_path / "eval")
    assert sorted(os.listdir(tmp_path / "eval")) == sorted(OUTPUT_FILES)  # no staging left
    record = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    best_epoch = json.loads((run_dir / "run.json").read_text())["best_epoch"]
    assert record["epoch"] == best_epoch and record["seed"] == 0 and record["split"] == "test"
    assert record["model"].endswith("best.pt") and "git_commit" in record


def test_python_m_on_an_export_gives_the_same_table(run_dir, tmp_path):
    """The export carries the run's config and epoch: the same table without the run dir."""
    export_model(run_dir, tmp_path / "model.pt")
    out = subprocess.run(
        [sys.executable, "-m", "ugr_experiments.inference.evaluate", str(tmp_path / "model.pt")]
        + ["-o", str(tmp_path / "eval"), "--batch-size", "4", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    same_files(run_dir, tmp_path / "eval")


def test_overrides_another_seed_split_and_dataset_file(run_dir, tmp_path):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump({**cfg["dataset"], "n_test": 3}))
    main(
        [str(run_dir), "seed=5", "-o", str(tmp_path / "a"), "--dataset", str(tmp_path / "ds.yaml")]
        + ["--batch-size", "2", "--epoch", "7", "--device", "cpu", "--no-progress"]
    )
    rows = pd.read_csv(tmp_path / "a" / "per_source_sisdri.csv")
    assert len(rows) == 3 * 2 and set(rows["epoch"]) == {7}
    assert json.loads((tmp_path / "a" / "evaluation.json").read_text())["seed"] == 5
    main(
        [str(run_dir), "dataset.n_valid=1", "-o", str(tmp_path / "v"), "--split", "valid"]
        + ["--device", "cpu", "--no-progress"]
    )
    assert "Validation SI-SDRi" in (tmp_path / "v" / "sisdri_table.md").read_text()
    assert len(pd.read_csv(tmp_path / "v" / "per_source_sisdri.csv")) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=x"], "expected seed=N or dataset.<key>=<value>"),
        (["--dataset", "nope"], r"neither a YAML file nor a config .*choose from \[.*'esc50'"),
        (["dataset.n_sources=3"], "mixes 3 sources but the model separates 2"),
    ],
)
def test_bad_options_give_clear_messages(run_dir, tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        main([str(run_dir), "-o", str(tmp_path / "out"), "--no-progress", *args])
    assert not (tmp_path / "out").exists()


def test_bad_checkpoints_and_outputs_leave_nothing(run_dir, tmp_path):
    (tmp_path / "broken.pt").write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes()[:999])
    torch.save({"net": torch.zeros(1)}, tmp_path / "other.pt")
    for name, message in [("broken.pt", "corrupted / truncated"), ("other.pt", "not a ugr")]:
        with pytest.raises(SystemExit, match=f"ugr-evaluate: error: .*{message}"):
            main([str(tmp_path / name), "-o", str(tmp_path / "out"), "--no-progress"])
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit, match="cannot write to the output folder"):
        main([str(run_dir), "-o", str(tmp_path / "file" / "out"), "--no-progress"])
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "sisdri_table.csv").write_text("mine")
    with pytest.raises(SystemExit, match=r"already holds \['sisdri_table.csv'\].*--overwrite"):
        main([str(run_dir), "-o", str(tmp_path / "eval"), "--no-progress"])
    assert os.listdir(tmp_path / "eval") == ["sisdri_table.csv"]
    main([str(run_dir), "-o", str(tmp_path / "eval"), "--no-progress", "--overwrite"])
    same_files(run_dir, tmp_path / "eval")


def test_a_failure_during_evaluation_removes_the_staged_outputs(run_dir, tmp_path, monkeypatch):
    import ugr_experiments.inference.evaluate as ev

    def crash(*args, **kwargs):
        raise OSError("disk full while reading the data")

    monkeypatch.setattr(ev, "evaluate_rows", crash)
    with pytest.raises(SystemExit, match="disk full"):
        main([str(run_dir), "-o", str(tmp_path / "new" / "out"), "--no-progress"])
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# TensorBoard audio
# ---------------------------------------------------------------------------------------------


def test_training_logs_validation_audio(run_dir):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"audio": 0})
    events.Reload()
    tags = events.Tags()["audio"]
    assert {"valid_audio/0/mixture", "valid_audio/1/estimate1", "valid_audio/1/estimate2"} <= set(
        tags
    )
    clips = events.Audio("valid_audio/0/estimate2")
    assert [c.step for c in clips] == [2, 4] and clips[0].sample_rate == 8000
    assert clips[0].length_frames == 2000  # 0.25 s at 8 kHz


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, torch.Tensor, int, int]] = []

    def add_audio(self, tag: str, clip: torch.Tensor, step: int, sample_rate: int) -> None:
        self.calls.append((tag, clip, step, sample_rate))


class Oracle(torch.nn.Module):
    """Returns the batch's references in reverse order (a model whose order is swapped)."""

    def __init__(self, sources: torch.Tensor) -> None:
        super().__init__()
        self.sources = sources
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return self.sources[: len(mix)].flip(1)


def test_log_audio_aligns_estimates_to_references_and_scales_them():
    batch = {"mixture": torch.randn(3, 50) * 5, "sources": torch.randn(3, 2, 50) * 5}
    writer = Recorder()
    model = Oracle(batch["sources"]).train()
    log_audio(writer, model, batch, step=9, sample_rate=8000, n=2)
    assert model.training  # restored
    tags = [c[0] for c in writer.calls]
    assert tags == [
        f"valid_audio/{i}/{t}" for i in (0, 1) for t in ("mixture", "estimate1", "estimate2")
    ]
    clips = {c[0]: c[1] for c in writer.calls}
    assert all(
        c.shape == (1, 50) and float(c.abs().max()) == pytest.approx(0.9) for c in clips.values()
    )
    ref = batch["sources"][1, 0]
    torch.testing.assert_close(clips["valid_audio/1/estimate1"][0], 0.9 * ref / ref.abs().max())
    log_audio(None, model, batch, step=9, sample_rate=8000)  # other DDP ranks: nothing


def test_audio_schedule_and_first_items():
    assert [e for e in range(8) if audio_due(3, e)] == [2, 5]
    assert not any(audio_due(every, 0) for every in (0, None))
    from ugr_experiments.data import build_datasets
    from ugr_experiments.training.parts import make_loader

    cfg = to_plain(compose_config(TINY))
    data = build_datasets(cfg["dataset"], 0, 4)
    loader = make_loader(data["valid"], batch_size=2, workers=0, drop_last=False)
    state = torch.random.get_rng_state()
    batch = first_items(loader, n=2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the run's random stream is untouched
    torch.testing.assert_close(batch["mixture"], next(iter(loader))["mixture"])


SHARED_ESC50 = ROOT.parent / "shared" / "data" / "esc50_mini"


@pytest.mark.skipif(not SHARED_ESC50.is_dir(), reason="needs ../shared/data/esc50_mini")
def test_a_manifest_switches_to_its_corpus(run_dir, tmp_path):
    """`--manifest esc50.csv` on a model trained on synthetic data: ESC-50 test mixtures."""
    from data_prep.esc50 import prepare_esc50

    manifest = tmp_path / "esc50.csv"
    prepare_esc50(SHARED_ESC50, manifest, (1, 2, 3, 5), (4,), "4:1:1", False)
    main(
        [str(run_dir), "--manifest", str(manifest), "dataset.n_test=3", "-o", str(tmp_path / "e")]
        + ["--device", "cpu", "--no-progress"]
    )
    rows = pd.read_csv(tmp_path / "e" / "per_source_sisdri.csv")
    assert len(rows) == 6 and set(rows["group"]) == {"environmental"}
    assert rows["file"].str.startswith(str(SHARED_ESC50)).all()
    dataset = json.loads((tmp_path / "e" / "evaluation.json").read_text())["dataset"]
    assert dataset["name"] == "esc50" and dataset["segment_seconds"] == 0.25  # the run's mixing
    assert dataset["manifests"] == {"environmental": str(manifest)}
    with pytest.raises(SystemExit, match="dataset 'speech' reads \\['speech'\\] manifests"):
        main([str(run_dir), "--manifest", str(manifest), "--dataset", "speech", "-o", "x"])


# ---------------------------------------------------------------------------------------------
# Issue 13: which data is evaluated
# ---------------------------------------------------------------------------------------------


def _esc50_manifest(path, shares: str = "4:1:1"):
    from data_prep.esc50 import prepare_esc50

    prepare_esc50(SHARED_ESC50, path, (1, 2, 3, 5), (4,), shares, False)
    return path


@pytest.mark.skipif(not SHARED_ESC50.is_dir(), reason="needs ../shared/data/esc50_mini")
def test_a_test_only_manifest_is_enough_and_what_is_evaluated_is_printed(run_dir, tmp_path, capsys):
    from ugr_experiments.data.manifest import read_manifest, write_manifest

    full = read_manifest(_esc50_manifest(tmp_path / "esc50.csv"))
    table = full.table[full.table["split"] == "test"]
    write_manifest(tmp_path / "test_only.csv", table, full.root)
    capsys.readouterr()
    main(
        [str(run_dir), "--manifest", str(tmp_path / "test_only.csv"), "dataset.n_test=3"]
        + ["-o", str(tmp_path / "e"), "--device", "cpu", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "e" / "per_source_sisdri.csv")) == 6
    assert "dataset esc50" in out and "split test, 3 mixtures" in out
    assert f"environmental={tmp_path / 'test_only.csv'} (--manifest)" in out


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ESC50.is_dir(), reason="needs ../shared/data/esc50_mini")
def test_a_run_is_evaluated_on_its_own_manifest_from_anywhere(tmp_path, monkeypatch, capsys):
    """The run recorded `manifests/esc50.csv` relative to where it was trained."""
    monkeypatch.delenv("UGR_MANIFESTS", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mine = _esc50_manifest(tmp_path / "a" / "manifests" / "esc50.csv")
    _esc50_manifest(tmp_path / "b" / "manifests" / "esc50.csv", "1:1:1")  # other test items
    monkeypatch.chdir(tmp_path / "a")
    run_dir = tmp_path / "run"
    run(compose_config(TINY + ["dataset=esc50", "device=cpu"]), run_dir)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["dataset"]
    assert saved["manifests"]["environmental"] == str(mine.resolve())
    monkeypatch.chdir(tmp_path / "b")  # has manifests/esc50.csv of its own
    capsys.readouterr()
    main([str(run_dir), "-o", str(tmp_path / "eval"), "--no-progress", "--device", "cpu"])
    same_files(run_dir, tmp_path / "eval")
    assert f"environmental={mine.resolve()} (the run's)" in capsys.readouterr().out
    _esc50_manifest(mine, "2:1:1")  # the run's manifest is rewritten: its test set changed
    with pytest.raises(SystemExit, match=r"esc50.csv has changed since the run.*sha256 \w+.*\w+"):
        main([str(run_dir), "-o", str(tmp_path / "eval2"), "--no-progress", "--device", "cpu"])
    mine.unlink()
    with pytest.raises(
        SystemExit, match=r"the run's environmental manifest .*esc50.csv.* no longer"
    ):
        main([str(run_dir), "-o", str(tmp_path / "eval2"), "--no-progress", "--device", "cpu"])
    assert not (tmp_path / "eval2").exists()


@pytest.mark.skipif(not SHARED_ESC50.is_dir(), reason="needs ../shared/data/esc50_mini")
def test_a_speech_manifest_on_a_cross_model_says_it_scores_cross_mixtures(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from data_prep.speech import build_parser, prepare_speech
    from ugr_experiments.data.manifest import record_manifests
    from ugr_experiments.models import build_model
    from ugr_experiments.training.checkpoint import save_checkpoint

    _esc50_manifest(tmp_path / "esc50.csv")
    rng = np.random.default_rng(0)
    for speaker in ("ann", "bob", "cy", "dee"):
        (tmp_path / "spk" / speaker).mkdir(parents=True)
        for k in range(3):
            sf.write(tmp_path / "spk" / speaker / f"{k}.wav", rng.uniform(-0.3, 0.3, 4000), 8000)
    for name in ("speech.csv", "other_speech.csv"):
        argv = ["--root", str(tmp_path / "spk"), "--output", str(tmp_path / name)]
        prepare_speech(build_parser().parse_args([*argv, "--no-progress"]))
    cfg = to_plain(compose_config(TINY + ["dataset=cross", f"paths.manifests={tmp_path}"]))
    cfg["dataset"] = record_manifests(cfg["dataset"])
    spec = dict(cfg["model"])
    model = build_model(spec.pop("name"), **spec)
    state = {"model": model.state_dict(), "config": yaml.safe_dump(cfg), "epoch": 1}
    save_checkpoint(state, tmp_path / "best.pt")
    capsys.readouterr()
    main(
        [str(tmp_path / "best.pt"), "--manifest", str(tmp_path / "other_speech.csv")]
        + ["-o", str(tmp_path / "e"), "--device", "cpu", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert "evaluating on dataset cross" in out and "split test, 4 mixtures, seed 0" in out
    assert f"speech={tmp_path / 'other_speech.csv'} (--manifest)" in out
    assert f"environmental={tmp_path / 'esc50.csv'} (the run's)" in out


def test_an_older_runs_relative_manifests_are_read_where_it_started(tmp_path):
    """Runs before issue 13 recorded `manifests/x.csv`; Hydra's record says where from."""
    from ugr_experiments.inference.eval_data import EvalOptions, eval_config
    from ugr_experiments.inference.export import LoadedModel

    run_dir = tmp_path / "outputs" / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    hydra = {"hydra": {"runtime": {"cwd": str(tmp_path / "project")}}}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    dataset = {"name": "esc50", "sample_rate": 8000, "manifests": {"environmental": "m/e.csv"}}
    config = {"dataset": dataset, "seed": 0}
    loaded = LoadedModel(
        None, 8000, {"num_sources": 2}, 1, config, run_dir / "checkpoints" / "best.pt"
    )
    cfg = eval_config(loaded, EvalOptions())
    assert cfg["dataset"]["manifests"] == {"environmental": str(tmp_path / "project" / "m/e.csv")}
