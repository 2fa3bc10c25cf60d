"""The paper's figures from run directories, with matplotlib (no pyplot: no display needed).

- :func:`figure1`: log-scale density (Gaussian KDE) of test SI-SDRi, one curve per alpha;
- :func:`curriculum_figure`: validation SI-SDRi against training steps, one colour per
  schedule (thin lines: seeds, thick: their mean);
- :func:`classes_figure`: mean test SI-SDRi of speech, environmental and all estimates per
  gamma pair (bars with the spread as error bars; the paper's values as black markers).

The ``*_data`` functions turn loaded runs (``ugr_experiments.analysis.runs``) into plain values, so
figures can be tested with hand-made numbers. :func:`save` writes PNG and PDF.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ugr_experiments.analysis import paper
from ugr_experiments.analysis.report import conditions, item_matrix, summarize_condition
from ugr_experiments.analysis.runs import Run, get, load_runs
from ugr_experiments.analysis.stats import gaussian_kde

SUBSETS = (("speech", "speech"), ("environmental", "environmental"), ("all", "combined"))


def save(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 150) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` in ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def plot_main(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    stem: str,
    draw: Callable[[list[Run], str], Figure | None],
    nothing: str,
) -> int:
    """The command line shared by the plot scripts: run/sweep dirs in, PNG and PDF out.

    Args:
        argv: the arguments (None: ``sys.argv``).
        prog: the script's name, for messages.
        description: the ``--help`` text.
        stem: the default file name without extension.
        draw: runs and title to the figure, or None when no run fits.
        nothing: what is missing when ``draw`` returns None ("no complete ... run").
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--stem", default=stem, help="file name without extension")
    parser.add_argument("--title", default="", help="figure title (default: says what it shows)")
    args = parser.parse_args(argv)
    try:
        fig = draw(load_runs(args.dirs), args.title)
    except FileNotFoundError as err:
        sys.exit(f"{prog}: {err}")
    if fig is None:
        sys.exit(f"{prog}: {nothing} under {args.dirs}")
    for path in save(fig, args.out, args.stem):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# Figure 1
# ---------------------------------------------------------------------------------------------


def figure1_data(runs: Sequence[Run], kind: str = "robust") -> dict[str, np.ndarray]:
    """Per condition label (alpha; or method with ``kind="compare"``): the test SI-SDRi of
    every source estimate, all epochs and seeds."""
    return {
        cond.label: np.concatenate([item_matrix(r.test_rows).to_numpy().ravel() for r in cond.runs])
        for cond in conditions(runs, kind)
    }


def figure1(
    values: Mapping[str, np.ndarray],
    title: str = "",
    floor: float = 1e-4,
    points: int = 400,
    prefix: str = "alpha = ",
) -> Figure:
    """Log-scale density of test SI-SDRi, one curve per alpha (the paper's Figure 1).

    Args:
        values: alpha label -> SI-SDRi values (dB).
        title: the figure's title (a default one names what is shown).
        floor: densities below ``floor`` times the highest peak are not drawn.
        points: grid points of the density.
        prefix: before each label in the legend (``""`` for method names).
    """
    if not values:
        raise ValueError("figure1 needs the SI-SDRi values of at least one alpha")
    every = np.concatenate([np.asarray(v, dtype=float) for v in values.values()])
    pad = 0.1 * (every.max() - every.min()) + 1.0
    grid = np.linspace(every.min() - pad, every.max() + pad, points)
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    peak = 0.0
    for label, v in values.items():
        density = gaussian_kde(v, grid)
        peak = max(peak, float(density.max()))
        ax.plot(grid, density, label=f"{prefix}{label} (n = {len(v)})")
    ax.set_yscale("log")
    ax.set_ylim(peak * floor, peak * 3.0)
    ax.set_xlabel("test SI-SDRi (dB)")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title or "Figure 1: density of test SI-SDRi per alpha (Gaussian KDE)")
    ax.text(
        0.99,
        0.02,
        "all source estimates,\nseeds and evaluation\nepochs pooled",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize="small",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Curriculum convergence
# ---------------------------------------------------------------------------------------------


def curriculum_data(runs: Sequence[Run]) -> dict[str, list[pd.DataFrame]]:
    """Per schedule label: each run's ``history.csv`` (step, epoch, valid_sisdri, ...)."""
    return {
        c.label: [r.valid_history for r in c.runs]
        for c in conditions(runs, "curriculum")
        if all(r.history is not None for r in c.runs)
    }


def curriculum_ends(runs: Sequence[Run]) -> dict[str, float]:
    """Per easy-first schedule label: the step at which its ``beta`` reaches 0."""
    ends = {}
    for cond in conditions(runs, "curriculum"):
        w, run = cond.runs[0].config.get("weighting") or {}, cond.runs[0]
        if w.get("name") != "curriculum" or run.history is None or not len(run.history):
            continue
        per_epoch = float(run.history["step"].iloc[0] / run.history["epoch"].iloc[0])
        unit = per_epoch if w.get("length_unit") == "epochs" else 1.0
        ends[cond.label] = float(w.get("length", 0)) * unit
    return ends


def curriculum_figure(
    curves: Mapping[str, Sequence[pd.DataFrame]],
    title: str = "",
    levels: Sequence[float] = (),
    x: str = "step",
    ends: Mapping[str, float] | None = None,
) -> Figure:
    """Validation SI-SDRi against training progress, per schedule (seeds thin, mean thick).

    Args:
        curves: schedule label -> per-run histories with columns ``x`` and ``valid_sisdri``.
        title: the figure's title (a default one names what is shown).
        levels: validation levels to mark with dotted horizontal lines.
        x: ``step`` or ``epoch``.
        ends: schedule label -> step where its curriculum ends (a dashed vertical line; only
            drawn with ``x="step"``).
    """
    if not curves:
        raise ValueError("curriculum_figure needs the history of at least one schedule")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for i, (label, histories) in enumerate(curves.items()):
        colour = f"C{i}"
        for h in histories:
            ax.plot(h[x], h["valid_sisdri"], color=colour, alpha=0.3, linewidth=0.8)
        mean = pd.concat([h.set_index(x)["valid_sisdri"] for h in histories], axis=1).mean(axis=1)
        ax.plot(mean.index, mean.to_numpy(), color=colour, linewidth=2.0, label=label)
        end = (ends or {}).get(label)
        if end is not None and x == "step":
            ax.axvline(end, color=colour, linestyle="--", linewidth=1.0, label="curriculum ends")
    for level in levels:
        ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("training step" if x == "step" else "epoch")
    ax.set_ylabel("validation SI-SDRi (dB)")
    ax.set_title(title or "Curriculum: validation SI-SDRi during training")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Per-class comparison
# ---------------------------------------------------------------------------------------------


def classes_data(runs: Sequence[Run]) -> list[dict]:
    """Per gamma pair: label, key, ``{subset: (mean, spread)}`` and the paper's, if any."""
    rows = []
    for cond in conditions(runs, "class"):
        summary = summarize_condition(cond)
        ours = {
            s: (summary.mean.at[s, "mean"], summary.spread.at[s, "mean"])
            for s, _ in SUBSETS
            if s in summary.mean.index
        }
        cross = all(get(r.config, "dataset.name") == "cross" for r in cond.runs)
        published = paper.class_row(cond.key) if cross else None
        rows.append({"label": cond.label, "ours": ours, "paper": published, "over": summary.over})
    return rows


def classes_figure(rows: Sequence[Mapping], title: str = "") -> Figure:
    """Grouped bars: speech / environmental / combined mean test SI-SDRi per gamma pair.

    Args:
        rows: as :func:`classes_data` returns (``label``, ``ours``, ``paper``, ``over``).
        title: the figure's title (a default one names what is shown).
    """
    if not rows:
        raise ValueError("classes_figure needs at least one gamma pair")
    fig = Figure(figsize=(7.5, 4.0))
    ax = fig.add_subplot()
    width, xs = 0.25, np.arange(len(rows))
    for j, (subset, name) in enumerate(SUBSETS):
        means = [r["ours"].get(subset, (np.nan, np.nan))[0] for r in rows]
        errs = [r["ours"].get(subset, (np.nan, np.nan))[1] for r in rows]
        pos = xs + (j - 1) * width
        ax.bar(pos, means, width, yerr=errs, capsize=3, color=f"C{j}", label=name)
        published = [r["paper"][subset][0] if r["paper"] else np.nan for r in rows]
        if not np.all(np.isnan(published)):
            ax.plot(pos, published, "k_", markersize=14, markeredgewidth=2)
    if any(r["paper"] for r in rows):
        ax.plot([], [], "k_", markersize=14, markeredgewidth=2, label="paper")
    ax.set_xticks(xs, [r["label"] for r in rows])
    ax.set_xlabel("(gamma speech, gamma env)")
    ax.set_ylabel("mean test SI-SDRi (dB)")
    over = sorted({r["over"] for r in rows})
    ax.set_title(title or "Class biasing: mean test SI-SDRi per class and gamma pair")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(
        fontsize="small",
        title=f"error bars:\nstd over {', '.join(over)}",
        title_fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    return fig
