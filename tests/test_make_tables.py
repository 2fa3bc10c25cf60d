"""make_tables: run discovery, Table 1 / class / curriculum tables, intervals, paired tests.

Runs are hand-made directories (config.yaml, per_source_sisdri.csv, history.csv) whose
statistics are known in closed form.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from ugr_experiments.analysis import stats
from ugr_experiments.analysis.paper_tables import Options, build_tables
from ugr_experiments.analysis.report import same_items
from ugr_experiments.analysis.runs import COMPLETE, FAILED, INCOMPLETE, find_run_dirs, load_runs
from ugr_experiments.analysis.tables import PERCENTILES, combine, summarize

FAST = Options(n_boot=200, level=0.95, seed=0)


def esc50_config(alpha: float, seed: int, **extra) -> dict:
    cfg = {
        "alpha": alpha,
        "seed": seed,
        "dataset": {"name": "esc50", "segment_seconds": 1.0, "sample_rate": 8000},
        "model": {"name": "sudormrf", "num_blocks": 2},
        "weighting": {"name": "robust", "alpha": alpha},
        "train": {"epochs": 4, "batch_size": 8},
        "eval": {"last_epochs": 2},
    }
    cfg.update(extra)
    return cfg


def rows_for(values_per_epoch: dict[int, list[float]], groups: list[str] | None = None):
    """Per-source rows: item i is (mixture i // 2, source i % 2), same files in every epoch."""
    frames = []
    for epoch, values in values_per_epoch.items():
        n = len(values)
        frames.append(
            pd.DataFrame(
                {
                    "epoch": epoch,
                    "mixture": [i // 2 for i in range(n)],
                    "source": [i % 2 for i in range(n)],
                    "class": "dog",
                    "group": groups or ["environmental"] * n,
                    "file": [f"f{i}.wav" for i in range(n)],
                    "offset": [10 * i for i in range(n)],
                    "snr_db": [0.5] * n,
                    "sisdri": values,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_run(
    path: Path,
    cfg: dict,
    rows: pd.DataFrame | None = None,
    history: list[float] | None = None,
    steps_per_epoch: int = 10,
) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    if rows is not None:
        rows.to_csv(path / "per_source_sisdri.csv", index=False)
        (path / "run.json").write_text(json.dumps({"seed": cfg["seed"], "wall_seconds": 12.5}))
    if history is not None:
        pd.DataFrame(
            {
                "epoch": range(1, len(history) + 1),
                "step": [steps_per_epoch * (i + 1) for i in range(len(history))],
                "valid_sisdri": history,
            }
        ).to_csv(path / "history.csv", index=False)
    return path


# ---------------------------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------------------------


def test_statistics_of_0_to_99_by_hand() -> None:
    out = stats.statistics(np.arange(100.0))
    assert out[0] == pytest.approx(49.5)
    assert out[1] == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std
    assert out[2:] == pytest.approx([q * 99 / 100 for q in PERCENTILES])


def test_epoch_and_run_averaging_match_the_tables_module() -> None:
    rng = np.random.default_rng(1)
    runs = [rng.normal(size=(40, 3)), rng.normal(2.0, 3.0, size=(30, 2))]
    # by hand: statistics per epoch, mean over epochs, mean over runs
    by_hand = np.mean(
        [np.mean([stats.statistics(m[:, e]) for e in range(m.shape[1])], 0) for m in runs], 0
    )
    assert stats.run_averaged(runs) == pytest.approx(by_hand)
    tables = [
        summarize(rows_for({e: list(m[:, e]) for e in range(m.shape[1])}), by=None) for m in runs
    ]
    mean, _ = combine(tables, count="runs")
    assert mean.loc["all", "mean"] == pytest.approx(by_hand[0])
    assert mean.loc["all", "q5"] == pytest.approx(by_hand[3])


def test_bootstrap_interval_covers_the_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        sample = rng.normal(1.0, 2.0, size=(60, 1))
        low, high = stats.interval(stats.bootstrap([sample], 200, rng), 0.95)
        hits += low[0] <= 1.0 <= high[0]
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_is_seeded_and_constant_data_has_no_width() -> None:
    data = [np.random.default_rng(3).normal(size=(50, 2))]
    a = stats.bootstrap(data, 100, np.random.default_rng(7))
    b = stats.bootstrap(data, 100, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    low, high = stats.interval(stats.bootstrap([np.full((20, 2), 3.0)], 50), 0.9)
    assert low == pytest.approx(np.r_[3.0, 0.0, [3.0] * 9]) and high == pytest.approx(low)


def test_paired_bootstrap_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(0.0, 5.0, size=(300, 2))
    exact, reps = stats.paired_bootstrap([(base + 1.5, base)], 100, rng)
    # a constant shift moves the mean and every percentile by exactly 1.5, the std not at all
    assert exact == pytest.approx(np.r_[1.5, 0.0, [1.5] * 9])
    low, high = stats.interval(reps)
    assert low == pytest.approx(exact) and high == pytest.approx(exact)
    noisy = base + 0.5 + rng.normal(0.0, 1.0, size=base.shape)
    diff, reps = stats.paired_bootstrap([(noisy, base)], 400, rng)
    low, high = stats.interval(reps)
    assert low[0] <= 0.5 <= high[0] and low[0] > 0  # the shift is found and told from noise
    per_item = (noisy - base).mean(1)
    assert stats.sign_flip_pvalue(per_item, 2000, rng) < 0.01
    symmetric = rng.normal(0.0, 1.0, size=300)
    assert stats.sign_flip_pvalue(symmetric - symmetric.mean(), 2000, rng) > 0.5


def test_paired_bootstrap_refuses_different_items() -> None:
    with pytest.raises(ValueError, match="share their items"):
        stats.paired_bootstrap([(np.zeros((3, 1)), np.zeros((4, 1)))], 10)


def test_gaussian_kde_is_a_density() -> None:
    grid = np.linspace(-10, 10, 2001)
    one = stats.gaussian_kde(np.array([1.0]), grid, bandwidth=2.0)
    expected = np.exp(-0.5 * ((grid - 1.0) / 2.0) ** 2) / (2.0 * math.sqrt(2 * math.pi))
    assert one == pytest.approx(expected)
    many = stats.gaussian_kde(np.random.default_rng(5).normal(size=500), grid)
    assert np.trapezoid(many, grid) == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# run discovery
# ---------------------------------------------------------------------------------------------


def test_runs_are_found_and_their_status_read_from_files(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "x"
    write_run(sweep / "0", esc50_config(0.0, 0), rows_for({1: [1.0, 2.0]}))
    write_run(sweep / "1", esc50_config(0.2, 0), history=[0.5, 1.0])  # killed after 2 epochs
    failed = sweep / "2"
    (failed / ".hydra").mkdir(parents=True)  # failed before train.run saved its config
    (failed / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(
            {"alpha": "1/15", "seed": 3, "weighting": {"name": "robust", "alpha": "${alpha}"}}
        )
    )
    (failed / "failure.json").write_text(json.dumps({"status": "failed", "error": "OSError: disk"}))
    (sweep / "0" / "checkpoints").mkdir()
    assert [p.name for p in find_run_dirs([tmp_path])] == ["0", "1", "2"]
    runs = {r.path.name: r for r in load_runs([sweep])}
    assert runs["0"].status == COMPLETE and runs["0"].rows is not None
    assert runs["1"].status == INCOMPLETE and runs["1"].detail == "stopped after epoch 2 of 4"
    assert runs["2"].status == FAILED and runs["2"].detail == "OSError: disk"
    assert runs["2"].config["weighting"]["alpha"] == pytest.approx(1 / 15)  # resolved, parsed
    with pytest.raises(FileNotFoundError, match="no such run"):
        find_run_dirs([tmp_path / "missing"])


# ---------------------------------------------------------------------------------------------
# Table 1
# ---------------------------------------------------------------------------------------------


def make_robust_sweep(folder: Path) -> Path:
    """alpha 0 and 0.2, seeds 0 and 1, two evaluation epochs; one more run failed."""
    base = list(range(100))  # 0..99: mean 49.5
    for seed in (0, 1):
        for job, alpha in enumerate((0.0, 0.2)):
            shift = 10.0 * alpha + seed  # alpha 0.2 adds 2 dB, seed 1 adds 1 dB
            rows = rows_for({3: [v + shift for v in base], 4: [v + shift + 1.0 for v in base]})
            write_run(folder / f"{2 * seed + job}", esc50_config(alpha, seed), rows)
    write_run(folder / "9", esc50_config(1 / 15, 0), history=[0.1])
    return folder


@pytest.fixture
def robust_sweep(tmp_path: Path) -> Path:
    return make_robust_sweep(tmp_path)


def test_table1_averages_epochs_then_seeds_and_shows_the_paper(robust_sweep: Path) -> None:
    tables = {t.stem: t for t in build_tables(load_runs([robust_sweep]), ["robust"], FAST)}
    t1 = tables["table1"]
    ours = t1.numeric[t1.numeric["source"] == "ours"].set_index("alpha")
    assert list(ours.index) == ["0", "1/5"]
    # alpha 0: seed 0 epochs 49.5 / 50.5 -> 50.0; seed 1 -> 51.0; mean 50.5, std across seeds 0.5
    assert ours.loc["0", "mean"] == pytest.approx(50.5)
    assert ours.loc["0", "mean_spread"] == pytest.approx(0.5)
    assert ours.loc["1/5", "mean"] == pytest.approx(52.5)
    assert ours.loc["0", "std"] == pytest.approx(math.sqrt((100**2 - 1) / 12))
    assert ours.loc["0", "q1"] == pytest.approx(0.99 + 1.0)  # 0.99 + mean shift (0.5 + 0.5)
    assert (ours["runs"] == 2).all() and (ours["epochs"] == 2).all()
    paper = t1.numeric[t1.numeric["source"] == "paper"].set_index("alpha")
    assert list(paper.index) == ["0", "1/5"]  # only the alphas we ran
    assert paper.loc["1/5", "q1"] == -2.8 and paper.loc["0", "mean"] == 5.0
    md = t1.cells.to_string()
    assert "50.50 ± 0.50" in md
    assert "seeds" in t1.footer and "segment_seconds=1.0 (paper: 4.0)" in t1.footer
    assert "Not in the table (1 run(s)" in t1.footer and "stopped after epoch 1 of 4" in t1.footer


def test_table1_single_run_spread_is_over_epochs(tmp_path: Path) -> None:
    write_run(tmp_path / "0", esc50_config(0.0, 0), rows_for({1: [0.0, 2.0], 2: [4.0, 6.0]}))
    t1 = build_tables(load_runs([tmp_path]), ["robust"], FAST)[1]
    row = t1.numeric.iloc[0]
    assert row["mean"] == pytest.approx(3.0) and row["mean_spread"] == pytest.approx(2.0)
    assert "across evaluation epochs" in t1.footer


def test_table1_intervals_and_paired_comparison(robust_sweep: Path) -> None:
    tables = {t.stem: t for t in build_tables(load_runs([robust_sweep]), ["robust"], FAST)}
    ci = tables["table1_ci"].numeric.set_index("alpha")
    assert ci.loc["0", "mean_low"] < 50.5 < ci.loc["0", "mean_high"]
    paired = tables["table1_paired"].numeric.set_index("alpha")
    assert list(paired.index) == ["1/5"]
    # every item rose by exactly 2 dB in both seeds: the difference and its interval are 2
    for col in ("mean", "q1", "q50", "q99"):
        assert paired.loc["1/5", f"d_{col}"] == pytest.approx(2.0)
        assert paired.loc["1/5", f"d_{col}_low"] == pytest.approx(2.0)
    assert paired.loc["1/5", "d_std"] == pytest.approx(0.0)
    assert paired.loc["1/5", "better"] == 1.0 and paired.loc["1/5", "seeds"] == 2
    assert paired.loc["1/5", "p_mean"] < 0.001
    assert "2.00 [2.00, 2.00]*" in tables["table1_paired"].cells.to_string()


def test_paired_comparison_skips_seeds_whose_test_items_differ(tmp_path: Path) -> None:
    write_run(tmp_path / "0", esc50_config(0.0, 0), rows_for({1: [0.0, 1.0, 2.0, 3.0]}))
    other = rows_for({1: [1.0, 2.0, 3.0, 4.0]}).assign(offset=[0, 11, 22, 33])
    write_run(tmp_path / "1", esc50_config(0.2, 0), other)
    runs = load_runs([tmp_path])
    assert not same_items(runs[0], runs[1])
    stems = [t.stem for t in build_tables(runs, ["robust"], FAST)]
    assert "table1_paired" not in stems


# ---------------------------------------------------------------------------------------------
# Class table
# ---------------------------------------------------------------------------------------------


def class_config(speech: float, env: float, seed: int) -> dict:
    return {
        "seed": seed,
        "gamma_pair": f"s{speech:g}_e{env:g}",
        "dataset": {"name": "cross", "segment_seconds": 1.0},
        "weighting": {"name": "class", "gamma": {"speech": speech, "environmental": env}},
        "train": {"epochs": 2},
    }


def test_class_table_rows_per_gamma_pair_with_per_group_means(tmp_path: Path) -> None:
    groups = ["speech", "environmental"] * 2
    for job, (gs, ge) in enumerate([(0.0, 0.0), (0.0, 3.0), (3.0, 0.0)]):
        # speech items 10, 12 (+gs), environmental 20, 22 (+ge); epoch 2 adds 1 dB
        values = [10.0 + gs, 20.0 + ge, 12.0 + gs, 22.0 + ge]
        rows = rows_for({1: values, 2: [v + 1.0 for v in values]}, groups)
        write_run(tmp_path / str(job), class_config(gs, ge, 0), rows)
    tables = {t.stem: t for t in build_tables(load_runs([tmp_path]), ["class"], FAST)}
    table = tables["class"].numeric
    ours = table[table["source"] == "ours"].set_index(["gamma speech", "gamma env"])
    assert ours.loc[("0", "0"), "speech"] == pytest.approx(11.5)
    assert ours.loc[("0", "0"), "environmental"] == pytest.approx(21.5)
    assert ours.loc[("0", "0"), "all"] == pytest.approx(16.5)
    assert ours.loc[("0", "0"), "speech_spread"] == pytest.approx(0.5)  # over the 2 epochs
    assert ours.loc[("3", "0"), "speech"] == pytest.approx(14.5)
    assert ours.loc[("0", "3"), "environmental"] == pytest.approx(24.5)
    paper = table[table["source"] == "paper"].set_index(["gamma speech", "gamma env"])
    assert paper.loc[("0", "3"), "environmental"] == 13.5
    assert "evaluation epochs" in tables["class"].footer
    paired = tables["class_paired"].numeric.set_index(["gamma speech", "gamma env"])
    assert paired.loc[("3", "0"), "d_speech"] == pytest.approx(3.0)
    assert paired.loc[("3", "0"), "d_environmental"] == pytest.approx(0.0)
    assert paired.loc[("0", "3"), "d_all"] == pytest.approx(1.5)
    assert "Speech" in tables["class_ci"].cells.columns


# ---------------------------------------------------------------------------------------------
# Curriculum table
# ---------------------------------------------------------------------------------------------


def curriculum_config(easy: bool, seed: int) -> dict:
    weighting = (
        {
            "name": "curriculum",
            "beta0": -0.2,
            "shape": "linear",
            "length": 20,
            "length_unit": "steps",
        }
        if easy
        else {"name": "uniform"}
    )
    return {"seed": seed, "schedule": "easy_first" if easy else "uniform", "weighting": weighting}


def test_curriculum_table_counts_steps_to_levels(tmp_path: Path) -> None:
    curves = {
        (False, 0): [0.0, 1.0, 2.0, 3.0],
        (False, 1): [0.0, 1.0, 1.5, 3.0],
        (True, 0): [1.0, 2.0, 3.0, 3.0],
        (True, 1): [0.5, 2.5, 2.6, 2.7],
    }
    for i, ((easy, seed), curve) in enumerate(curves.items()):
        rows = rows_for({4: [1.0, 2.0, 3.0, 4.0]})
        write_run(tmp_path / str(i), curriculum_config(easy, seed), rows, curve, 10)
    opts = Options(n_boot=50, levels=[2.0, 3.0])
    tables = {t.stem: t for t in build_tables(load_runs([tmp_path]), ["curriculum"], opts)}
    table = tables["curriculum"].numeric.set_index("schedule")
    assert list(table.index) == ["uniform", "easy-first (linear, beta0=-0.2, 20 steps)"]
    uniform, easy = table.iloc[0], table.iloc[1]
    assert uniform["steps_to_2"] == pytest.approx(35.0)  # seeds: 30, 40
    assert uniform["steps_to_2_spread"] == pytest.approx(5.0)
    assert easy["steps_to_2"] == pytest.approx(20.0) and easy["reached_3"] == 1
    assert easy["steps_to_3"] == pytest.approx(30.0)
    cells = tables["curriculum"].cells.set_index("schedule")
    assert cells.iloc[1]["steps to 3 dB"] == "30 (1/2)"
    assert uniform["final_valid"] == pytest.approx(3.0)
    assert "curriculum_paired" in tables  # same test items: a paired comparison


def test_make_tables_script_writes_every_format(robust_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_tables.py"),
            str(robust_sweep),
            "--out",
            str(out),
            "--n-boot",
            "50",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    for stem in ("runs", "table1", "table1_ci", "table1_paired"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= set(names)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["status"]) == ["complete"] * 4 + ["incomplete"]
    assert "### Table 1" in (out / "tables.md").read_text()
    assert (
        "\\toprule" in (out / "table1.tex").read_text()
        and "$\\pm$" in (out / "table1.tex").read_text()
    )
    missing = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_tables.py"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode != 0 and "no such run" in missing.stderr


# ---------------------------------------------------------------------------------------------
# Defects found when tried as a new user would (issue 12, item 5)
# ---------------------------------------------------------------------------------------------


def noisy_matrices() -> dict[tuple[float, int], np.ndarray]:
    """(alpha, seed) -> items x 2 epochs; every run's values differ, so order matters."""
    rng = np.random.default_rng(11)
    out = {}
    for seed in (0, 1):
        base = rng.normal(0.0, 5.0, size=(40, 2))
        for alpha in (0.0, 0.2):
            out[(alpha, seed)] = base + 10.0 * alpha + rng.normal(0.0, 1.0, size=base.shape)
    return out


def write_matrices(folder: Path, names: dict[tuple[float, int], str]) -> Path:
    for (alpha, seed), matrix in noisy_matrices().items():
        rows = rows_for({e: list(matrix[:, e]) for e in range(matrix.shape[1])})
        write_run(folder / names[(alpha, seed)], esc50_config(alpha, seed), rows)
    return folder


def test_intervals_do_not_depend_on_folder_names(tmp_path: Path) -> None:
    in_order = {(a, s): f"{2 * s + j}" for s in (0, 1) for j, a in enumerate((0.0, 0.2))}
    # renamed so that path order puts seed 1 before seed 0
    renamed = {(a, s): f"{'b' if s == 0 else 'a'}_alpha{a}" for a in (0.0, 0.2) for s in (0, 1)}
    built = []
    for name, names in (("in_order", in_order), ("renamed", renamed)):
        runs = load_runs([write_matrices(tmp_path / name, names)])
        built.append({t.stem: t.numeric for t in build_tables(runs, ["robust"], FAST)})
    for stem in ("table1", "table1_ci", "table1_paired"):
        pd.testing.assert_frame_equal(built[0][stem], built[1][stem])
    # by hand: the runs taken in seed order, one generator seeded with --seed
    m = noisy_matrices()
    reps = stats.bootstrap([m[(0.0, 0)], m[(0.0, 1)]], FAST.n_boot, np.random.default_rng(0))
    low, high = stats.interval(reps, FAST.level)
    ci = built[1]["table1_ci"].set_index("alpha")
    assert ci.loc["0", "mean_low"] == pytest.approx(low[0])
    assert ci.loc["0", "q5_high"] == pytest.approx(high[3])
    pairs = [(m[(0.2, s)], m[(0.0, s)]) for s in (0, 1)]
    _, reps = stats.paired_bootstrap(pairs, FAST.n_boot, np.random.default_rng(0))
    low, high = stats.interval(reps, FAST.level)
    paired = built[1]["table1_paired"].set_index("alpha")
    assert paired.loc["1/5", "d_mean_low"] == pytest.approx(low[0])
    assert paired.loc["1/5", "d_q1_high"] == pytest.approx(high[2])


def test_a_sweep_copied_twice_counts_each_seed_once(tmp_path: Path) -> None:
    once = make_robust_sweep(tmp_path / "once")
    twice = tmp_path / "twice"
    make_robust_sweep(twice / "copy1")
    shutil.copytree(twice / "copy1", twice / "copy2")
    single = {t.stem: t for t in build_tables(load_runs([once]), ["robust"], FAST)}
    double = {t.stem: t for t in build_tables(load_runs([twice]), ["robust"], FAST)}
    t1 = double["table1"].numeric
    assert list(t1[t1["source"] == "ours"]["runs"]) == [2, 2]  # not 4
    for stem in ("table1", "table1_ci", "table1_paired"):  # same spread, intervals and p
        pd.testing.assert_frame_equal(double[stem].numeric, single[stem].numeric)
    footer = double["table1"].footer
    assert "Warning: 4 duplicate run(s)" in footer
    assert "copy2/0 repeats copy1/0 (0, seed 0)" in footer
    assert "copy2/3 repeats copy1/3 (1/5, seed 1)" in footer
    assert "duplicate" not in single["table1"].footer
    script = ROOT / "scripts" / "make_tables.py"
    result = subprocess.run(
        [sys.executable, str(script), str(twice), "--out", str(tmp_path / "t"), "--n-boot", "20"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "make_tables.py: Warning: 4 duplicate run(s)" in result.stderr
    assert "copy2/1 repeats copy1/1 (1/5, seed 0)" in result.stderr


def test_table1_has_n_and_matches_the_paper_alphas_to_3_decimals(tmp_path: Path) -> None:
    for job, alpha in enumerate((0.0, 0.0667, 0.07)):
        rows = rows_for({1: [float(v) for v in range(6)], 2: [float(v) for v in range(6)]})
        write_run(tmp_path / str(job), esc50_config(alpha, 0), rows)
    t1 = build_tables(load_runs([tmp_path]), ["robust"], FAST)[1]
    ours = t1.numeric[t1.numeric["source"] == "ours"].set_index("alpha")
    assert list(ours.index) == ["0", "0.0667", "0.07"]
    assert (ours["n"] == 6).all()  # 6 source estimates per evaluation epoch
    paper_rows = t1.numeric[t1.numeric["source"] == "paper"].set_index("alpha")
    assert list(paper_rows.index) == ["0", "0.0667"]  # 0.07 is not 1/15 to 3 decimals
    assert paper_rows.loc["0.0667", "mean"] == 4.6 and paper_rows.loc["0.0667", "q1"] == -14.7
    assert (paper_rows["n"] == 6000).all()  # 3000 test mixtures x 2 sources
    assert "n" in t1.cells.columns


def test_written_tables_have_n_no_backticks_in_latex_and_no_machine_path(tmp_path: Path) -> None:
    sweep = make_robust_sweep(tmp_path / "multirun" / "robust")
    script = str(ROOT / "scripts" / "make_tables.py")
    for given, cwd, shown in ((str(sweep), ROOT, "robust"), ("multirun/robust", tmp_path, None)):
        out = tmp_path / "tables"
        result = subprocess.run(
            [sys.executable, script, given, "--out", str(out), "--n-boot", "20"],
            capture_output=True,
            text=True,
            cwd=cwd,
        )
        assert result.returncode == 0, result.stderr
        assert "n" in pd.read_csv(out / "table1.csv").columns
        for path in out.glob("*.tex"):
            assert "`" not in path.read_text(), path.name
        assert "\\texttt{runs}" in (out / "table1.tex").read_text()
        pages = [p.read_text() for p in out.glob("*.md")]
        assert all(str(tmp_path) not in page for page in pages)
        assert f"5 run(s) under {shown or given}: 4 complete" in (out / "runs.md").read_text()
