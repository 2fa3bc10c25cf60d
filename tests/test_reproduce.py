"""scripts/reproduce.py: one command from sweep to verdicts, resumable, checked against numpy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED_DATA, write_shared_manifests

sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

SHRINK = [
    "train.epochs=2",
    "train.steps_per_epoch=3",
    "eval.last_epochs=2",
    "dataset.n_valid=4",
    "dataset.n_test=10",
    "model.num_blocks=1",
    "model.enc_num_basis=32",
    "model.in_channels=32",
    "model.out_channels=16",
]


def _reproduce(args: list[str], manifests: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "UGR_MANIFESTS": str(manifests)}
    cmd = [sys.executable, "scripts/reproduce.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


def test_plan_reads_the_presets_sweep_and_replaces_its_seeds() -> None:
    jobs, n_jobs, cfg = reproduce.plan("robust_esc50_cpu", [], [7, 8])
    assert [j.name for j in jobs][:3] == [
        "alpha-0__seed-7",
        "alpha-0__seed-8",
        "alpha-1_15__seed-7",
    ]
    assert len(jobs) == 8 and n_jobs == 2
    assert jobs[2].overrides() == ["alpha=1/15", "seed=7"]
    assert cfg["train"]["steps_per_epoch"] == 100 and cfg["model"]["num_blocks"] == 4
    class_jobs, _, _ = reproduce.plan("class_bias_cpu", [], None)
    assert {j.values for j in class_jobs} == {
        (("gamma_pair", p),) for p in ("s0_e0", "s0_e3", "s3_e0")
    }
    assert sorted({j.seed for j in class_jobs}) == [0, 1, 2]


def test_bad_arguments_end_before_any_work(tmp_path: Path) -> None:
    bad = _reproduce(["robust", "--out", str(tmp_path), "train.epochs"], tmp_path)
    assert bad.returncode == 2 and "not KEY=VALUE: train.epochs" in bad.stderr
    value = _reproduce(["robust", "--out", str(tmp_path), "optim.lr=-1"], tmp_path)
    assert value.returncode == 2 and "optim.lr must be > 0" in value.stderr
    assert "Traceback" not in value.stdout + value.stderr
    assert not (tmp_path / "robust" / "runs").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "esc50_mini").is_dir(), reason="no ../shared/data")
def test_robust_end_to_end_resumable_and_verdicts_match_numpy(tmp_path: Path) -> None:
    manifests = write_shared_manifests(tmp_path / "manifests")
    out = tmp_path / "repro"
    args = ["robust", "--scale", "cpu", "--seeds", "0", "1", "--out", str(out), *SHRINK]
    first = _reproduce(args, manifests)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[8/8]" in first.stdout and "left" in first.stdout  # progress lines
    verdicts = pd.read_csv(out / "robust" / "verdicts.csv")
    assert list(verdicts.columns) == ["claim", "paper", "ours", "ci_low", "ci_high", "holds"]
    assert "| claim | paper | ours |" in first.stdout  # the verdict table is printed
    for name in ("report.md", "figures/figure1.png", "tables/table1.csv"):
        assert (out / "robust" / name).is_file(), name
    # std and q1 at alpha 1/5 against alpha 0, recomputed from the per-source rows
    runs = out / "robust" / "runs"
    for stat, q in (("std", None), ("q1", 1), ("q5", 5)):
        diffs = []
        for seed in (0, 1):
            per = []
            for alpha in ("1_5", "0"):
                rows = pd.read_csv(runs / f"alpha-{alpha}__seed-{seed}" / "per_source_sisdri.csv")
                by_epoch = [g["sisdri"].to_numpy() for _, g in rows.groupby("epoch")]
                per.append(
                    np.mean([v.std() if q is None else np.percentile(v, q) for v in by_epoch])
                )
            diffs.append(per[0] - per[1])
        row = verdicts[verdicts["claim"].str.startswith(stat)].iloc[0]
        assert row["ours"] == pytest.approx(np.mean(diffs), abs=1e-9)
    # re-running skips every finished run and gives the same verdicts
    second = _reproduce(args, manifests)
    assert second.returncode == 0 and "8 already finished, 0 to run" in second.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "robust" / "verdicts.csv"), verdicts)


def test_readme_reproduce_commands_parse_and_plan() -> None:
    from test_readme import bash_lines

    lines = [line for line in bash_lines() if "scripts/reproduce.py" in line]
    assert len(lines) >= 4
    for line in lines:
        words = line.split("scripts/reproduce.py", 1)[1].split()
        args = reproduce.build_parser().parse_intermixed_args(words)
        names = list(reproduce.EXPERIMENTS) if args.experiment == "all" else [args.experiment]
        for name in names:
            jobs, _, cfg = reproduce.plan(
                reproduce.preset_name(name, args.scale), args.overrides, args.seeds
            )
            assert jobs and cfg["train"]["threads"] == 1
