"""compare_methods (issue 15): the presets, the methods table and verdicts on constructed rows,
and `python train.py weighting=cvar|group_dro` end to end with the pmf's health in TensorBoard."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, SHARED_DATA, TINY, compose_config, train_py, write_shared_manifests
from omegaconf import OmegaConf

from ugr_experiments.analysis import verdicts as V
from ugr_experiments.analysis.paper_tables import Options, build_tables
from ugr_experiments.analysis.report import conditions, method_key
from ugr_experiments.analysis.runs import COMPLETE, Run
from ugr_experiments.config import to_plain

sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

METHODS = {
    "uniform": {"name": "uniform"},
    "robust": {"name": "robust", "alpha": "1/5"},
    "cvar": {"name": "cvar", "fraction": 0.75},
    "group_dro": {"name": "group_dro", "eta": 0.002, "groups": "classes"},
}
CLASSES = [f"c{i:02d}" for i in range(10)]
N_ITEMS = 200  # 100 mixtures x 2 sources, 20 items per class


# --- presets and plan --------------------------------------------------------------------------


def plain(overrides: list[str]) -> dict:
    cfg = compose_config(overrides)
    return to_plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


@pytest.mark.parametrize(("preset", "robust"), [("compare_methods_cpu", "robust_esc50_cpu")])
def test_cpu_preset_has_the_robust_presets_settings(preset: str, robust: str) -> None:
    ours = plain([f"+experiment={preset}", "method=robust"])
    theirs = plain([f"+experiment={robust}", "alpha=0.2"])
    for key in ("dataset", "model", "optim", "train", "eval", "seed"):
        assert ours[key] == theirs[key], key
    assert ours["weighting"] == {**theirs["weighting"], "alpha": 0.2}
    full = plain(["+experiment=compare_methods", "method=cvar"])
    assert full["weighting"] == {
        "name": "cvar",
        "unit": "sources",
        "fraction": 0.75,
        "health_every": 25,
    }
    assert full["train"]["batch_size"] == 28 and full["model"]["num_blocks"] == 16


def test_plan_sweeps_the_methods_and_all_stays_the_papers() -> None:
    jobs, n_jobs, _ = reproduce.plan("compare_methods_cpu", [], None)
    assert n_jobs == 2 and len(jobs) == 12
    assert [j.name for j in jobs[:4]] == [
        "method-uniform__seed-0",
        "method-uniform__seed-1",
        "method-uniform__seed-2",
        "method-robust__seed-0",
    ]
    assert {j.values for j in jobs} == {(("method", m),) for m in METHODS}
    assert reproduce.PAPER == ("robust", "class", "curriculum")


# --- the methods table and verdicts on constructed rows ----------------------------------------


def rows(values: np.ndarray) -> pd.DataFrame:
    """Per-source rows: values (items, epochs); item i is class CLASSES[i % 10]."""
    n, epochs = values.shape
    frames = [
        pd.DataFrame(
            {
                "epoch": e + 1,
                "mixture": np.arange(n) // 2,
                "source": np.arange(n) % 2,
                "class": [CLASSES[i % len(CLASSES)] for i in range(n)],
                "group": "environmental",
                "file": [f"f{i}.wav" for i in range(n)],
                "offset": np.arange(n),
                "snr_db": 0.0,
                "sisdri": values[:, e],
            }
        )
        for e in range(epochs)
    ]
    return pd.concat(frames, ignore_index=True)


def constructed(path: Path = Path("/runs")) -> tuple[list[Run], dict]:
    """uniform: noise around 4 dB with classes c00..c04 3 dB lower; robust and cvar: shrunk
    towards the mean (narrower, lower tail up); group DRO: +1 dB on classes c00..c04."""
    runs, values = [], {}
    hard = np.array([i % len(CLASSES) < 5 for i in range(N_ITEMS)])
    for seed in (0, 1, 2):
        base = np.random.default_rng(seed).normal(4.0, 6.0, size=(N_ITEMS, 2)) - 3.0 * hard[:, None]
        method_values = {
            "uniform": base,
            "robust": 0.5 * (base - 4.0) + 3.8,
            "cvar": 0.6 * (base - 4.0) + 3.9,
            "group_dro": base + 1.0 * hard[:, None],
        }
        for method, v in method_values.items():
            cfg = {"seed": seed, "method": method, "weighting": METHODS[method]}
            cfg["dataset"] = {"name": "esc50"}
            runs.append(Run(path / f"{method}-{seed}", cfg, COMPLETE, rows=rows(v)))
            values[(method, seed)] = v
    return runs, values


def test_method_labels_and_order() -> None:
    runs, _ = constructed()
    labels = [c.label for c in conditions(runs, "compare")]
    assert labels == [
        "uniform",
        "robust (alpha 1/5)",
        "cvar (fraction 0.75)",
        "group_dro (eta 0.002, groups classes)",
    ]
    assert method_key({"weighting": {"name": "tilted_groups", "t_in": 0, "t_out": 0.5}})[1] == (
        "tilted_groups (t_in 0, t_out 0.5, groups None)"
    )


def test_compare_verdicts_match_numpy() -> None:
    runs, values = constructed()
    out = {v.claim: v for v in V.compare_verdicts(runs)}
    per_seed = [values[("uniform", s)].mean(0).mean() for s in (0, 1, 2)]
    assert out[next(c for c in out if c.startswith("baseline"))].ours == pytest.approx(
        np.mean(per_seed)
    )
    d_std = np.mean([values[("cvar", s)].std(0).mean() - values[("uniform", s)].std(0).mean()
                     for s in (0, 1, 2)])  # fmt: skip
    assert out["cvar (fraction 0.75): std decreases"].ours == pytest.approx(d_std)
    assert out["cvar (fraction 0.75): std decreases"].holds
    assert out["robust (alpha 1/5): q1 increases"].holds
    differ = next(v for c, v in out.items() if "differ in q1" in c)
    q1 = [np.percentile(values[(m, s)], 1, axis=0).mean() for m in ("cvar", "robust")
          for s in (0, 1, 2)]  # fmt: skip
    assert differ.ours == pytest.approx(np.mean(q1[:3]) - np.mean(q1[3:]))
    worst = next(v for c, v in out.items() if "worst classes" in c)
    assert all(f"c0{i}" in worst.claim for i in range(5))  # the classes 3 dB lower (uniform)
    assert worst.ours == pytest.approx(1.0) and worst.holds
    mean = next(v for c, v in out.items() if c.endswith("mean decreases or stays"))
    assert mean.ours == pytest.approx(0.5) and not mean.holds  # +1 dB on half the items


def test_worst_classes_rank_by_the_baselines_mean() -> None:
    runs, values = constructed()
    base = conditions(runs, "compare")[0]
    per_class = {  # the mean over seeds of each run's class mean (both epochs), by hand
        c: np.mean([values[("uniform", s)][i :: len(CLASSES)].mean() for s in (0, 1, 2)])
        for i, c in enumerate(CLASSES)
    }
    assert V.worst_classes(base, 3) == sorted(per_class, key=per_class.get)[:3]
    only = V.only_classes(base, ["c07"])
    assert set(only.runs[0].test_rows["class"]) == {"c07"}
    assert len(only.runs[0].test_rows) == 2 * N_ITEMS // len(CLASSES)


def test_methods_table_and_health_from_tensorboard(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    runs, values = constructed(tmp_path)
    for run in runs:  # ESS of uniform 16, of the others 12 then 10
        writer = SummaryWriter(str(run.path / "tb"))
        uniform = run.config["method"] == "uniform"
        for step, ess in ((25, 16.0 if uniform else 12.0), (50, 16.0 if uniform else 10.0)):
            writer.add_scalar("pmf/ess", ess, step)
            writer.add_scalar("pmf/max_weight", 1 / ess, step)
        writer.close()
    tables = {t.stem: t for t in build_tables(runs, ["compare"], Options(n_boot=50))}
    assert set(tables) == {"runs", "compare", "compare_ci", "compare_paired", "compare_health"}
    table = tables["compare"].numeric.set_index("method")
    want = np.mean([values[("group_dro", s)].mean(0).mean() for s in (0, 1, 2)])
    assert table.loc["group_dro (eta 0.002, groups classes)", "mean"] == pytest.approx(want)
    paired = tables["compare_paired"].numeric
    assert list(paired["baseline"]) == ["uniform"] * 3
    health = tables["compare_health"].numeric.set_index("method")
    assert health.loc["uniform", "ess"] == 16.0
    assert health.loc["cvar (fraction 0.75)", "ess"] == pytest.approx(11.0)
    assert health.loc["cvar (fraction 0.75)", "max_weight"] == pytest.approx((1 / 12 + 1 / 10) / 2)
    assert health.loc["cvar (fraction 0.75)", "logged_steps"] == 6


# --- end to end: train.py with the new modes ---------------------------------------------------


def scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def check_logged(run_dir: Path, mode: str, groups: list[str], q_names: list[str]) -> None:
    logged = scalars(run_dir)
    assert len(logged["pmf/ess"]) == 3  # every step (train.log_every=1)
    assert all(1.0 <= e <= 8.0 + 1e-4 for e in logged["pmf/ess"])  # 4 mixtures x 2 sources
    if mode == "cvar":  # fraction 0.25 of 8 items: 2 items of 1/2
        assert logged["pmf/ess"] == pytest.approx([2.0] * 3)
        assert logged["pmf/max_weight"] == pytest.approx([0.5] * 3)
    for name in groups:
        assert f"pmf/mass/{name}" in logged
    q = [f"weighting/q/{name}" for name in q_names]
    assert set(q) == {tag for tag in logged if tag.startswith("weighting/q/")}
    if q:
        assert np.sum([logged[k][-1] for k in q]) == pytest.approx(1.0, abs=1e-6)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["weighting"]["name"] == mode
    assert (run_dir / "per_source_sisdri.csv").is_file()


SMALL = [*TINY, "train.steps_per_epoch=3", "train.batch_size=4", "train.log_every=1"]
MODES = {
    "cvar": ["weighting=cvar", "weighting.fraction=0.25"],
    "group_dro": ["weighting=group_dro"],
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_train_py_new_modes_on_the_synthetic_default(tmp_path: Path, mode: str) -> None:
    result = train_py([*SMALL, *MODES[mode], f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    classes = ["voice_low", "voice_high", "noise", "impacts"]
    check_logged(tmp_path, mode, ["environmental", "speech"], classes if mode != "cvar" else [])


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shared_manifests(tmp_path_factory.mktemp("manifests"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "esc50_mini").is_dir(), reason="no ../shared/data")
@pytest.mark.parametrize("mode", sorted(MODES))
def test_train_py_new_modes_on_cross_mixtures(tmp_path: Path, manifests: Path, mode: str) -> None:
    args = [*SMALL, *MODES[mode], "dataset=cross", "dataset.min_rms_db=-60"]
    result = train_py([*args, f"hydra.run.dir={tmp_path}", f"paths.manifests={manifests}"])
    assert result.returncode == 0, result.stderr[-2000:]
    speakers = pd.read_csv(manifests / "speech.csv", comment="#")["class"].unique().tolist()
    esc50 = pd.read_csv(manifests / "esc50.csv", comment="#")["class"].unique().tolist()
    q_names = [] if mode == "cvar" else [*speakers, *esc50]  # group DRO: q of every class
    check_logged(tmp_path, mode, ["speech", "environmental"], q_names)


def test_reproduce_analyses_compare_runs_into_tables_figure_and_verdicts(tmp_path: Path) -> None:
    """`reproduce.py compare_methods --runs DIR`: the analysis of finished runs on disk."""
    runs, _ = constructed(tmp_path / "runs")
    for run in runs:
        run.path.mkdir(parents=True)
        (run.path / "config.yaml").write_text(yaml.safe_dump(run.config))
        run.test_rows.to_csv(run.path / "per_source_sisdri.csv", index=False)
        (run.path / "run.json").write_text('{"wall_seconds": 1.0}')
    verdict_md = reproduce.analyse("compare_methods", [tmp_path / "runs"], tmp_path / "out", None)
    assert "cvar (fraction 0.75): q1 increases" in verdict_md
    out = tmp_path / "out"
    assert (out / "figures" / "methods.png").stat().st_size > 10_000
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert len(verdicts) == 8 and verdicts["holds"].dtype == bool
    report = (out / "report.md").read_text()
    assert "Table 1's layout" in report and "![methods](figures/methods.png)" in report
