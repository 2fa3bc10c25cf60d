"""Bad inputs stop a run before any work, with a message naming the key, the value and the fix.

``BAD_INPUTS`` is the table of the README / issue 5: each row is the overrides a user might
type and the message they get back.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT, TINY, compose_config

from ugr_experiments.config import (
    RESUME_IGNORED,
    ConfigError,
    check_paths,
    result_differences,
    to_plain,
)
from ugr_experiments.training.loop import run

BAD_INPUTS = [
    # wrong types
    (["train.batch_size=eight"], r"train.batch_size must be an integer >= 1, got 'eight' \(e.g."),
    (["train.batch_size=2.5"], r"train.batch_size must be an integer >= 1, got 2.5"),
    (["optim.lr=fast"], r"optim.lr must be a number or a fraction such as 1/15, got 'fast'"),
    (["alpha=abc"], r"alpha must be a number or a fraction such as 1/15, got 'abc'"),
    (["dataset.snr_db=[low,5]"], r"dataset.snr_db must be \[low, high\].*got \['low', 5\]"),
    (["dataset.snr_db=5"], r"dataset.snr_db must be \[low, high\].*got 5 \(e.g."),
    (["resume=yes"], r"resume must be true or false, got 'yes' \(e.g. `resume=true hydra"),
    (["weighting=class", "weighting.gamma.speech=lots"], r"weighting.gamma.speech must be a"),
    # out-of-range values
    (["train.epochs=0"], r"train.epochs must be an integer >= 1, got 0 \(e.g. train.epochs="),
    (["optim.lr=0"], r"optim.lr must be > 0, got 0 \(e.g. optim.lr=1e-3\)"),
    (["alpha=-0.1"], r"alpha must be >= 0 .*got -0.1; for easy-first .*weighting=curriculum"),
    (["dataset.snr_db=[5,-5]"], r"dataset.snr_db must be \[low, high\] with low <= high"),
    (["dataset.segment_seconds=0"], r"dataset.segment_seconds must be > 0, got 0"),
    (["dataset.segment_seconds=0.00001"], r"gives less than one sample"),
    (["seed=-1"], r"seed must be an integer >= 0, got -1"),
    (["optim.grad_clip=0"], r"optim.grad_clip must be > 0 or null, got 0"),
    (["weighting=curriculum", "weighting.length=0"], r"weighting.length must be an integer >= 1"),
    (["weighting=curriculum", "weighting.beta0=0.3"], r"weighting.beta0 must be < 0, got 0.3"),
    (["eval.last_epochs=99"], r"eval.last_epochs=99 exceeds train.epochs=6"),
    (["checkpoint.every_steps=-1"], r"checkpoint.every_steps must be an integer >= 0, got -1"),
    (["train.max_bad_steps=0"], r"train.max_bad_steps must be an integer >= 1, got 0"),
    (["dataset=random_mix", "dataset.p_speech=1.5"], r"dataset.p_speech must be in \[0, 1\]"),
    (["model.num_sources=3"], r"model.num_sources=3 but dataset.n_sources=2: .*drop the model"),
    # unknown names
    (["device=tpu"], r"device must be one of auto, cpu, cuda; got 'tpu'"),
    (["optim.name=sgd"], r"unsupported optim.name: 'sgd'; choose from \['adam'\]"),
    (["weighting=curriculum", "weighting.shape=zigzag"], r"unsupported weighting.shape: 'zig"),
    (["weighting.unit=batch"], r"unsupported weighting.unit: 'batch'; choose from \['sources'"),
    (["dataset=esc50", "dataset.short_sources=trim"], r"unsupported dataset.short_sources"),
    # empty data sets
    (["dataset.n_train=0"], r"dataset.n_train must be an integer >= 1, got 0"),
    (["dataset.n_test=0"], r"dataset.n_test must be an integer >= 1, got 0"),
    (["dataset.classes=[]"], r"dataset.classes must be null \(every class\) or a non-empty list"),
    # issue 13: model sizes, checked before anything is built (bounds, parity, unknown keys)
    (["model.upsampling_depth=30"], r"upsampling_depth must be an integer in \[1, 12\], got 30"),
    (["model.num_blocks=0"], r"model.num_blocks must be an integer in \[1, 128\], got 0 \(e.g. m"),
    (["model.out_channels=0"], r"model.out_channels must be an integer in \[1, 4096\], got 0"),
    (["model.enc_kernel_size=0"], r"enc_kernel_size must be an integer in \[3, 1025\], got 0"),
    (["model.enc_kernel_size=20"], r"model.enc_kernel_size must be odd, got 20 \(e.g. model.enc"),
    (["model.enc_num_basis=33"], r"model.enc_num_basis must be even, got 33 \(e.g. model.enc_num"),
    (["model.in_channels=abc"], r"model.in_channels must be an integer in \[1, 8192\], got 'abc'"),
    (["+model.depth=3"], r"model.depth is not an option of model 'sudormrf'; its options are"),
    (["model.name=sudormrf_1x", "model.num_blocks=-1"], r"model.num_blocks must be an integer in"),
    (["model=sudormrf_improved_cpu", "model.upsampling_depth=30"], r"upsampling_depth must be an"),
    (["model=sudormrf_gc_cpu", "model.group_size=0"], r"model.group_size must be an integer in \["),
    (["model=convtasnet_cpu", "model.msk_num_layers=0"], r"model.msk_num_layers must be an integ"),
    (
        ["model=sudormrf_improved_cpu", "model.upsampling_depth=9", "dataset.segment_seconds=0.1"],
        r"at least 5120 are needed .*5120 for model sudormrf_improved.s padding",
    ),
    # issue 13: a segment too short for a non-silent crop or for the model's padding
    (["dataset.segment_seconds=0.002"], r"gives 16 samples .*set dataset.segment_seconds >= 0.1 "),
    (
        ["model.upsampling_depth=8", "dataset.segment_seconds=0.1"],
        r"at least 1280 are needed .*1280 for model sudormrf's padding",
    ),
    # issue 13: non-finite and boolean numbers get a fix too
    (["alpha=nan"], r"alpha must be a finite number, got nan \(e.g. `alpha=0.2` or `alpha=1/15`\)"),
    (["alpha=inf"], r"alpha must be a finite number, got inf \(e.g. `alpha=0.2`"),
    (["alpha=1e400"], r"alpha must be a finite number, got inf \(e.g. `alpha=0.2`"),
    (
        ["weighting=class", "weighting.gamma.speech=inf"],
        r"weighting.gamma.speech must be a finite number, got inf \(e.g. weighting.gamma.speech=3",
    ),
    (
        ["weighting=curriculum", "weighting.beta0=-inf"],
        r"weighting.beta0 must be a finite number, got -inf \(e.g. weighting.beta0=-0.2\)",
    ),
    (["optim.lr=true"], r"optim.lr must be a number, got the boolean True \(e.g. optim.lr=1e-3\)"),
    (["train.audio_every=-1"], r"train.audio_every must be an integer >= 0 or null, got -1 \(e.g."),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_its_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        to_plain(compose_config(overrides))


def test_the_table_covers_every_kind_of_mistake():
    assert len(BAD_INPUTS) >= 10
    keys = {re.split(r"[=.]", o[-1])[0] for o, _ in BAD_INPUTS}
    assert {"train", "optim", "alpha", "dataset", "weighting", "model", "device"} <= keys


def test_a_missing_manifest_names_the_key_and_the_command_that_writes_it(tmp_path):
    cfg = to_plain(compose_config(["dataset=esc50", f"paths.manifests={tmp_path}"]))
    with pytest.raises(ConfigError) as err:
        check_paths(cfg)
    text = str(err.value)
    assert "dataset.manifests.environmental: no manifest at" in text
    assert f"ugr-prep-esc50 --root <ESC-50 folder> --output {tmp_path}/esc50.csv" in text
    assert "UGR_MANIFESTS" in text


def test_a_missing_corpus_root_names_the_key(tmp_path):
    (tmp_path / "esc50.csv").write_text("path\n")
    overrides = ["dataset=esc50", f"paths.manifests={tmp_path}"]
    cfg = to_plain(compose_config(overrides + [f"dataset.roots.environmental={tmp_path}/gone"]))
    with pytest.raises(ConfigError, match=r"dataset.roots.environmental: no folder at .*gone"):
        check_paths(cfg)
    check_paths(to_plain(compose_config(overrides)))  # the manifest exists, roots are null


def test_paths_are_checked_before_anything_is_written(tmp_path):
    cfg = compose_config(TINY + ["dataset=speech", f"paths.manifests={tmp_path}/nowhere"])
    with pytest.raises(ConfigError, match="dataset.manifests.speech: no manifest"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset.name=wsj9"], r"unsupported dataset: 'wsj9'; choose from"),
        (["model.name=transformer"], r"transformer"),
        (["weighting.name=robst"], r"unsupported weighting: 'robst'; choose from"),
    ],
)
def test_unknown_names_stop_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(compose_config(TINY + overrides), tmp_path)
    assert not (tmp_path / "history.csv").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_the_command_line_shows_the_message_and_trains_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, "train.py", "train.batch_size=0", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "train.batch_size must be an integer >= 1, got 0" in out.stdout + out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_plain_config_without_the_new_keys_gets_their_defaults():
    cfg = to_plain(compose_config())
    for key in ("resume", "checkpoint"):
        cfg.pop(key)
    cfg["train"].pop("max_bad_steps")
    plain = to_plain(cfg)
    assert plain["resume"] is False and plain["checkpoint"]["every_steps"] == 50
    assert plain["train"]["max_bad_steps"] == 20


def test_result_differences_ignore_what_does_not_change_the_result():
    base = to_plain(compose_config(["weighting=robust", "alpha=0.1"]))
    same = to_plain(
        compose_config(
            ["weighting=robust", "alpha=0.1", "train.progress=false", "train.log_every=3"]
            + ["device=cpu", "eval.batch_size=2", "resume=true", "checkpoint.every_steps=1"]
            + [
                "train.num_workers=4",
                "paths.manifests=/elsewhere",
                "train.max_bad_steps=2",
            ]
        )
    )
    assert result_differences(base, same) == []
    other = to_plain(compose_config(["weighting=robust", "alpha=0.2", "train.epochs=3"]))
    assert result_differences(base, other) == [
        "alpha: 0.1 in the checkpoint, 0.2 now",
        "train.epochs: 6 in the checkpoint, 3 now",
        "weighting.alpha: 0.1 in the checkpoint, 0.2 now",
    ]
    assert "train.progress" in RESUME_IGNORED and "train.batch_size" not in RESUME_IGNORED
