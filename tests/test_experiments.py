"""Experiment presets (conf/experiment), their sweeps, launchers, and failure handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import ROOT, SHARED_DATA, TINY, compose_config, train_py, write_shared_manifests
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from ugr_experiments.analysis import paper
from ugr_experiments.analysis.report import kind_of
from ugr_experiments.config import to_plain
from ugr_experiments.training.callbacks import RecordFailure

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
FULL = {
    "robust_esc50": "robust",
    "class_bias": "class",
    "curriculum": "curriculum",
    "compare_methods": "compare",  # beyond the paper, at the paper's setting (issue 15)
}


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def sweep_jobs(preset: str, extra: list[str] | None = None) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper makes of a preset's sweeper params (+ extra)."""
    cfg = compose_with_hydra([f"+experiment={preset}"])
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + list(extra or [])
    parsed = OverridesParser.create().parse_overrides(params)
    return BasicSweeper.split_arguments(parsed, None)[0]


def plain(preset: str, job: list[str] | None = None) -> dict:
    return to_plain(compose_config([f"+experiment={preset}"] + list(job or [])))


def test_presets_exist() -> None:
    assert set(PRESETS) == {f"{name}{s}" for name in FULL for s in ("", "_cpu")}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_every_job_composes(preset: str) -> None:
    jobs = sweep_jobs(preset)
    assert len(jobs) >= 2
    for job in jobs:
        cfg = plain(preset, job)
        base = preset.removesuffix("_cpu")
        assert kind_of(cfg) == FULL[base]


@pytest.mark.parametrize("preset,kind", sorted(FULL.items()))
def test_full_presets_have_the_paper_setting(preset: str, kind: str) -> None:
    cfg = plain(preset)
    assert paper.setting_differences(cfg, kind) == []
    assert cfg["dataset"]["n_train"] == 20000 and cfg["dataset"]["n_valid"] == 3000
    assert cfg["train"]["steps_per_epoch"] is None  # 20000 // 28 steps
    assert cfg["optim"] == {**cfg["optim"], "lr_decay_every": 50, "lr_decay_factor": 3.0}
    assert cfg["optim"]["grad_clip"] == 5.0


@pytest.mark.parametrize("preset", sorted(FULL))
def test_cpu_presets_shrink_only_the_size(preset: str) -> None:
    full, cpu = plain(preset), plain(f"{preset}_cpu")
    assert cpu["dataset"]["name"] == full["dataset"]["name"]
    assert cpu["weighting"]["name"] == full["weighting"]["name"]
    assert cpu["dataset"]["segment_seconds"] <= 1.0 and cpu["eval"]["last_epochs"] >= 2
    # the default CPU network, 600 steps of batch 8, one thread per job, two jobs at a time
    assert cpu["model"] == plain(preset, ["model=sudormrf_cpu"])["model"]
    assert cpu["train"]["epochs"] * cpu["train"]["steps_per_epoch"] == 600
    assert cpu["train"]["batch_size"] == 8 and cpu["train"]["threads"] == 1
    assert cpu["dataset"]["snr_db"] == [-5.0, 5.0] and cpu["optim"]["lr"] == 1e-3
    launcher = compose_with_hydra([f"+experiment={preset}_cpu"]).hydra.launcher
    assert launcher.n_jobs == 2 and "joblib" in launcher._target_


def test_robust_sweep_runs_the_paper_alphas_over_seeds() -> None:
    jobs = sweep_jobs("robust_esc50")
    alphas = sorted({plain("robust_esc50", j)["weighting"]["alpha"] for j in jobs})
    assert alphas == pytest.approx([0.0, 1 / 15, 1 / 10, 1 / 5])
    assert len(jobs) == 4 * 3
    assert sweep_jobs("robust_esc50_cpu") == jobs  # the CPU preset sweeps the same table


@pytest.mark.parametrize("preset", ["class_bias", "class_bias_cpu"])
def test_class_sweep_is_the_three_pairs_not_the_product(preset: str) -> None:
    jobs = sweep_jobs(preset)
    seeds = {j[1] for j in jobs}
    pairs = [tuple(plain(preset, j)["weighting"]["gamma"].values()) for j in jobs]
    assert sorted(set(pairs)) == [(0.0, 0.0), (0.0, 3.0), (3.0, 0.0)]
    assert len(jobs) == 3 * len(seeds)
    gamma = plain(preset, ["gamma_pair=s3_e0"])["weighting"]["gamma"]
    assert gamma == {"speech": 3.0, "environmental": 0.0}


def test_class_sweep_accepts_a_new_pair() -> None:
    extra = ["+gamma_pairs.s1_e0={speech:1,environmental:0}"]
    cfg = plain("class_bias", extra + ["gamma_pair=s1_e0"])
    assert cfg["weighting"]["gamma"] == {"speech": 1, "environmental": 0}


@pytest.mark.parametrize("preset", ["curriculum", "curriculum_cpu"])
def test_curriculum_against_uniform_with_the_same_data_and_budget(preset: str) -> None:
    jobs = sweep_jobs(preset, ["seed=0"])
    cfgs = {j[0]: plain(preset, j) for j in jobs}
    uniform, easy = cfgs["schedule=uniform"], cfgs["schedule=easy_first"]
    assert uniform["weighting"]["name"] == "uniform"
    assert easy["weighting"]["name"] == "curriculum" and easy["weighting"]["beta0"] < 0
    for cfg in (uniform, easy):
        cfg.pop("weighting")
        cfg.pop("schedule")
    assert uniform == easy  # data, seed, model, steps: all the same


def test_command_line_replaces_the_preset_sweep() -> None:
    jobs = sweep_jobs("robust_esc50", ["seed=7"])
    assert len(jobs) == 4 and all("seed=7" in j for j in jobs)


def test_joblib_launcher_config_composes() -> None:
    cfg = compose_with_hydra(["hydra/launcher=joblib"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_every_sweep_records_failures_once(preset: str | None) -> None:
    """A plain `-m` sweep too (preset None): conf/config.yaml holds the callback."""
    cfg = compose_with_hydra([f"+experiment={preset}"] if preset else [])
    assert list(cfg.hydra.callbacks) == ["shared_run_dir", "keep_run_dir", "record_failure"]
    target = OmegaConf.select(cfg, "hydra.callbacks.record_failure._target_")
    assert target == "ugr_experiments.training.callbacks.RecordFailure"


def fake_return(status: JobStatus, value: object, out: Path) -> SimpleNamespace:
    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(out)}}})
    return SimpleNamespace(
        status=status, _return_value=value, hydra_cfg=hydra_cfg, overrides=["alpha=-1"]
    )


def test_record_failure_writes_failure_json(tmp_path: Path) -> None:
    try:
        raise ValueError("bad alpha")
    except ValueError as err:
        error = err
    RecordFailure().on_job_end(OmegaConf.create(), fake_return(JobStatus.FAILED, error, tmp_path))
    record = json.loads((tmp_path / "failure.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: bad alpha"
    assert "raise ValueError" in record["traceback"] and record["overrides"] == ["alpha=-1"]
    done = tmp_path / "done"
    RecordFailure().on_job_end(OmegaConf.create(), fake_return(JobStatus.COMPLETED, 1.0, done))
    assert not done.exists()


# ---------------------------------------------------------------------------------------------
# Slow: real sweeps
# ---------------------------------------------------------------------------------------------


def make_tables(args: list[str]) -> subprocess.CompletedProcess:
    script = str(ROOT / "scripts" / "make_tables.py")
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failing_job_does_not_lose_the_others(tmp_path: Path, launcher: str) -> None:
    """A plain sweep (no preset): the failed job leaves failure.json and is listed as failed."""
    if launcher == "joblib":
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    extra = ["hydra/launcher=joblib"] if launcher == "joblib" else []
    sweep = tmp_path / "sweep"
    result = train_py(
        [
            "-m",
            *TINY,
            *extra,
            "weighting=robust",
            "alpha=-1,0",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert result.returncode != 0  # Hydra re-raises the failure after the whole sweep
    assert "alpha must be >= 0" in result.stderr
    assert (sweep / "1" / "per_source_sisdri.csv").is_file()  # the job after it ran
    assert "alpha must be >= 0" in json.loads((sweep / "0" / "failure.json").read_text())["error"]
    out = tmp_path / "tables"
    assert make_tables([str(sweep), "--out", str(out), "--n-boot", "20"]).returncode == 0
    runs = pd.read_csv(out / "runs.csv", dtype={"run": str}).set_index("run")
    assert runs.loc["0", "status"] == "failed" and runs.loc["1", "status"] == "complete"
    assert "failed, ConfigError: alpha must be >= 0" in (out / "table1.md").read_text()


@pytest.fixture(scope="module")
def shared_manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's manifest commands for the clips of ../shared/data."""
    return write_shared_manifests(tmp_path_factory.mktemp("manifests"))


# preset -> (plot script, table stem, figure stem, the table's first column, its values)
CPU_RUNS = {
    "robust_esc50_cpu": (
        "plot_figure1",
        "table1",
        "figure1",
        "alpha",
        ["0", "0", "1/15", "1/15", "1/10", "1/10", "1/5", "1/5"],
    ),
    "class_bias_cpu": (
        "plot_classes",
        "class",
        "classes",
        "gamma speech",
        ["0", "0"] * 2 + ["3"] * 2,
    ),
    "curriculum_cpu": ("plot_curriculum", "curriculum", "curriculum", "schedule", None),
}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "esc50_mini").is_dir(), reason="no ../shared/data")
@pytest.mark.parametrize("preset", sorted(CPU_RUNS))
def test_cpu_preset_on_real_clips_to_table_and_figure(
    tmp_path: Path, shared_manifests: Path, preset: str
) -> None:
    """The README's CPU commands, shrunk further: sweep, make_tables, the plot script."""
    script, stem, figure, column, values = CPU_RUNS[preset]
    sweep = tmp_path / "sweep"
    shrink = ["train.epochs=2", "train.steps_per_epoch=2", "eval.last_epochs=2", "dataset.n_test=8"]
    result = train_py(
        ["-m", f"+experiment={preset}", *shrink, "seed=0", f"hydra.sweep.dir={sweep}"],
        env={"UGR_MANIFESTS": str(shared_manifests)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "tables"
    tables = make_tables([str(sweep), "--out", str(out), "--n-boot", "50", "--levels", "-5"])
    assert tables.returncode == 0, tables.stderr
    table = pd.read_csv(out / f"{stem}.csv", dtype={column: str})
    if values is not None:
        assert list(table[column]) == values
        assert list(table["source"]) == ["ours", "paper"] * (len(values) // 2)
    else:
        assert list(table[column]) == ["uniform", "easy-first (linear, beta0=-0.2, 300 steps)"]
    plot = subprocess.run(
        [sys.executable, f"scripts/{script}.py", str(sweep), "--out", str(tmp_path / "fig")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "fig" / f"{figure}.png").stat().st_size > 10_000
