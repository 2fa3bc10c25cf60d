"""Rebuild the paper's tables from run and sweep directories.

    python scripts/make_tables.py multirun/robust_esc50_cpu --out tables/robust_esc50_cpu
    python scripts/make_tables.py multirun/ --out tables/all          # every sweep below
    python scripts/make_tables.py RUN_DIR ... --kind class --n-boot 2000

Reads each run's ``per_source_sisdri.csv``, ``history.csv`` and saved config (never its
directory name) and writes, as CSV, Markdown and LaTeX, into ``--out``:

- ``runs``: every run found and its status (failed and incomplete runs are listed, not dropped);
- ``table1``, ``table1_ci``, ``table1_paired``: robust runs, one row per alpha;
- ``class``, ``class_ci``, ``class_paired``: class-weighting runs, one row per gamma pair;
- ``curriculum``, ``curriculum_paired``: steps to validation levels, easy-first vs uniform;
- ``tables.md``: all the Markdown tables in one file (also printed).

Folders are named as given (relative), never by an absolute path of this machine. Runs that
repeat a (condition, seed) (a sweep copied twice) are counted once, with a warning on stderr
and in the table's footer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ugr_experiments.analysis.paper_tables import BUILDERS, Options, TableOut, build_tables
from ugr_experiments.analysis.paper_tables.common import duplicate_note
from ugr_experiments.analysis.runs import common_root, load_runs
from ugr_experiments.analysis.tables import cells_to_markdown


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="make_tables.py",
        description="Tables of SI-SDRi from run and sweep directories (see the module docstring).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("tables"), help="output folder")
    parser.add_argument(
        "--kind", choices=sorted(BUILDERS), nargs="+", help="only these tables (default: all found)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamplings")
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--levels",
        type=float,
        nargs="+",
        help="curriculum: validation SI-SDRi levels in dB (default: from the uniform runs)",
    )
    return parser


def write_all(tables: Sequence[TableOut], out: Path) -> Path:
    """Every table as CSV / Markdown / LaTeX, and ``tables.md`` with all the Markdown."""
    for table in tables:
        table.write(out)
    text = "\n".join(cells_to_markdown(t.cells, t.title, t.footer) for t in tables)
    path = out / "tables.md"
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Load the runs, build every table, write them; the exit status."""
    args = build_parser().parse_args(argv)
    if args.n_boot < 1:
        sys.exit(f"make_tables.py: --n-boot must be >= 1, got {args.n_boot}")
    try:
        runs = load_runs(args.dirs)
    except FileNotFoundError as err:
        sys.exit(f"make_tables.py: {err}")
    if not runs:
        sys.exit(f"make_tables.py: no run directory (with config.yaml) under {args.dirs}")
    root = common_root(runs)
    for kind in args.kind or BUILDERS:
        note = duplicate_note(runs, kind, root)
        if note:
            print(f"make_tables.py: {note}", file=sys.stderr)
    opts = Options(args.n_boot, args.level, args.seed, args.levels)
    tables = build_tables(runs, args.kind, opts, given=args.dirs)
    path = write_all(tables, args.out)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {len(tables)} tables (CSV, Markdown, LaTeX) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
