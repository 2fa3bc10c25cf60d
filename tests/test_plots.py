"""Figures: they are written as PNG and PDF, open, and show what their titles say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from test_make_tables import class_config, curriculum_config, esc50_config, rows_for, write_run

from ugr_experiments.analysis.figures import (
    classes_data,
    classes_figure,
    curriculum_ends,
    curriculum_figure,
    figure1,
    figure1_data,
    save,
)
from ugr_experiments.analysis.runs import load_runs


def check_image(path: Path) -> np.ndarray:
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


def test_figure1_draws_one_log_density_per_alpha(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = {"0": rng.normal(5, 9, 600), "1/5": rng.normal(3, 4.8, 600)}
    fig = figure1(values)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_title().startswith("Figure 1: density of test SI-SDRi per alpha")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "alpha = 0 (n = 600)",
        "alpha = 1/5 (n = 600)",
    ]
    wide, narrow = (line.get_ydata() for line in ax.get_lines())
    assert narrow.max() > wide.max()  # the narrower distribution peaks higher
    png, pdf = save(fig, tmp_path, "figure1")
    check_image(png)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_curriculum_figure_has_seed_and_mean_lines(tmp_path: Path) -> None:
    def history(values: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"step": [10, 20, 30], "epoch": [1, 2, 3], "valid_sisdri": values})

    curves = {
        "uniform": [history([0, 1, 2]), history([0, 2, 3])],
        "easy-first": [history([1, 2, 3]), history([1, 3, 3])],
    }
    fig = curriculum_figure(curves, levels=[2.0])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "validation SI-SDRi (dB)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["uniform", "easy-first"]
    mean_uniform = [line for line in ax.get_lines() if line.get_label() == "uniform"][0]
    assert list(mean_uniform.get_ydata()) == [0.0, 1.5, 2.5]
    check_image(save(fig, tmp_path, "curriculum")[0])


def test_classes_figure_from_runs_with_paper_markers(tmp_path: Path) -> None:
    groups = ["speech", "environmental"] * 2
    for job, (gs, ge) in enumerate([(0.0, 0.0), (3.0, 0.0)]):
        values = [10.0 + gs, 20.0 + ge, 12.0 + gs, 22.0 + ge]
        write_run(tmp_path / str(job), class_config(gs, ge, 0), rows_for({1: values}, groups))
    rows = classes_data(load_runs([tmp_path]))
    assert [r["label"] for r in rows] == ["(0, 0)", "(3, 0)"]
    assert rows[1]["ours"]["speech"][0] == pytest.approx(14.0)
    assert rows[0]["paper"]["all"] == (12.7, 0.1)
    fig = classes_figure(rows)
    ax = fig.axes[0]
    assert ax.get_title() == "Class biasing: mean test SI-SDRi per class and gamma pair"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["combined", "environmental", "paper", "speech"]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(sorted([11, 21, 16, 14, 21, 17.5]))
    check_image(save(fig, tmp_path, "classes")[0])


def test_figure1_data_pools_epochs_and_seeds(tmp_path: Path) -> None:
    write_run(tmp_path / "0", esc50_config(0.0, 0), rows_for({1: [1.0, 2.0], 2: [3.0, 4.0]}))
    write_run(tmp_path / "1", esc50_config(0.0, 1), rows_for({1: [5.0, 6.0]}))
    data = figure1_data(load_runs([tmp_path]))
    assert sorted(data["0"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("script", ["plot_figure1", "plot_curriculum", "plot_classes"])
def test_plot_scripts_write_png_and_pdf(tmp_path: Path, script: str) -> None:
    runs = tmp_path / "runs"
    rows = rows_for({1: [1.0, 4.0, 2.0, 8.0, -3.0, 0.5]}, ["speech", "environmental"] * 3)
    for seed in (0, 1):
        write_run(runs / f"r{seed}", esc50_config(0.2 * seed, seed), rows)
        write_run(runs / f"c{seed}", class_config(3.0 * seed, 0.0, seed), rows)
        write_run(runs / f"k{seed}", curriculum_config(bool(seed), 0), rows, [0.0, 1.0, 2.0])
    out = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    pngs = list(out.glob("*.png"))
    assert len(pngs) == 1 and len(list(out.glob("*.pdf"))) == 1
    check_image(pngs[0])


def test_curriculum_ends_in_steps(tmp_path: Path) -> None:
    rows = rows_for({1: [1.0, 2.0]})
    write_run(tmp_path / "u", curriculum_config(False, 0), rows, [0.0, 1.0], 15)
    write_run(tmp_path / "e", curriculum_config(True, 0), rows, [0.0, 1.0], 15)
    by_epochs = curriculum_config(True, 1)
    by_epochs["weighting"].update(length=2, length_unit="epochs", beta0=-0.5)
    write_run(tmp_path / "f", by_epochs, rows, [0.0, 1.0], 15)
    ends = curriculum_ends(load_runs([tmp_path]))
    assert ends == {
        "easy-first (linear, beta0=-0.2, 20 steps)": 20.0,
        "easy-first (linear, beta0=-0.5, 2 epochs)": 30.0,
    }
