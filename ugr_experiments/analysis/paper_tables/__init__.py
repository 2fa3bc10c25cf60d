"""The paper's tables from run directories: Table 1, the class table, the curriculum table.

Each builder takes loaded runs (``ugr_experiments.analysis.runs``) and returns :class:`TableOut`
objects (a numeric frame for the CSV, a frame of formatted cells for Markdown / LaTeX, a
title and a footer that states the protocol). ``scripts/make_tables.py`` writes them.

- Table 1 layout (robust): one row per alpha, mean, std and the 1 ... 99 percentiles;
  ``table1_ci``: bootstrap intervals of each; ``table1_paired``: every alpha minus alpha 0.
- Class table: one row per (gamma speech, gamma env) pair, speech / environmental /
  combined mean; ``class_ci`` and ``class_paired`` likewise.
- Curriculum table: steps to reach validation SI-SDRi levels per schedule;
  ``curriculum_paired``: easy-first minus uniform on the test items.
- Methods table (compare_methods, beyond the paper): one row per reweighting method in
  Table 1's layout; ``compare_ci``, ``compare_paired`` (against uniform) and
  ``compare_health`` (the pmf's ESS and max weight from TensorBoard).
- ``runs``: every run found, with its status (complete, failed, incomplete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ugr_experiments.analysis.paper_tables.classes import class_tables
from ugr_experiments.analysis.paper_tables.common import Options, TableOut
from ugr_experiments.analysis.paper_tables.compare import compare_tables
from ugr_experiments.analysis.paper_tables.curriculum import curriculum_tables
from ugr_experiments.analysis.paper_tables.robust import robust_tables
from ugr_experiments.analysis.report import KEYS, kind_of
from ugr_experiments.analysis.runs import Run, common_root, short_name, wall_seconds
from ugr_experiments.analysis.tables import MISSING, format_value

__all__ = [
    "BUILDERS",
    "Options",
    "TableOut",
    "build_tables",
    "class_tables",
    "compare_tables",
    "curriculum_tables",
    "inventory",
    "shown_path",
    "robust_tables",
]


# ---------------------------------------------------------------------------------------------
# Inventory and entry point
# ---------------------------------------------------------------------------------------------


def shown_path(path: Path) -> str:
    """A folder as a results page may name it: never an absolute path of this machine.

    Relative paths are kept as given; an absolute one is shown relative to the working
    directory when below it, else by its name only (``/tmp/x/sweep`` -> ``sweep``).
    """
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return path.name or str(path)


def inventory(runs: Sequence[Run], given: Sequence[str | Path] | None = None) -> TableOut:
    """Every run found: kind, condition, seed, status, detail, wall time.

    ``run`` names each run directory relative to the folder holding them all; the footer
    names the folders ``given`` (on the command line) as :func:`shown_path` does.
    """
    root = common_root(runs)
    rows = []
    for run in runs:
        kind = kind_of(run.config)
        label = "" if kind is None else _label(run, kind)
        rows.append(
            {
                "run": short_name(run, root),
                "kind": kind or "other",
                "condition": label,
                "seed": run.seed,
                "status": run.status,
                "detail": run.detail,
                "wall_s": wall_seconds(run),
            }
        )
    numeric = pd.DataFrame(rows)
    cells = numeric.astype(object).where(numeric.notna(), MISSING)
    cells["wall_s"] = [format_value(v, 0) for v in numeric["wall_s"]] if rows else []
    done = int((numeric["status"] == "complete").sum()) if rows else 0
    folders = [Path(p) for p in given] if given else ([root] if root is not None else [])
    where = ", ".join(shown_path(p) for p in folders) or "the folders given"
    footer = (
        f"{len(rows)} run(s) under {where}: {done} complete; failed and incomplete runs are "
        "listed here and left out of the tables."
    )
    return TableOut("runs", "Runs found", numeric, cells, footer)


def _label(run: Run, kind: str) -> str:
    """The condition label of a run of ``kind``."""
    return KEYS[kind](run.config)[1]


BUILDERS: dict[str, Callable[[Sequence[Run], Options], list[TableOut]]] = {
    "robust": robust_tables,
    "class": class_tables,
    "curriculum": curriculum_tables,
    "compare": compare_tables,
}


def build_tables(
    runs: Sequence[Run],
    kinds: Sequence[str] | None = None,
    opts: Options | None = None,
    given: Sequence[str | Path] | None = None,
) -> list[TableOut]:
    """The inventory, then the tables of every kind present among ``runs`` (or of ``kinds``).

    ``given``: the folders the runs were loaded from, as the user named them (footers).
    """
    opts = opts or Options()
    out = [inventory(runs, given)]
    for kind in kinds or BUILDERS:
        if kind not in BUILDERS:
            raise ValueError(f"unsupported table kind: {kind!r}; choose from {list(BUILDERS)}")
        out += BUILDERS[kind](runs, opts)
    return out
