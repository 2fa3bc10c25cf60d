"""Reproduce the paper's experiments in one command: sweep, tables, figure, verdicts.

    python scripts/reproduce.py robust --scale cpu                     # Table 1 / Figure 1
    python scripts/reproduce.py all --scale cpu --seeds 7 8 9 --out repro
    python scripts/reproduce.py class --scale cpu paths.manifests=/data/manifests
    python scripts/reproduce.py robust --runs multirun/robust_esc50_cpu   # analyse runs only
    python scripts/reproduce.py compare_methods --scale cpu   # beyond the paper (UGR vs others)

For each experiment (``robust``, ``class``, ``curriculum``; and, beyond the paper,
``compare_methods``: UGR's robust mode against CVaR and group DRO; ``all`` runs the paper's
three) the preset
``conf/experiment/<preset>[_cpu].yaml`` says what to sweep (its ``hydra.sweeper.params``);
``--seeds`` replaces its seeds. Every (condition, seed) is one run of ``train.py`` in
``DIR/<experiment>/runs/<param>-<value>__seed-<seed>/``, run ``--jobs`` at a time (default: the
preset's ``hydra.launcher.n_jobs``). A run that finished before (its ``run.json`` exists) is
skipped, one that was stopped continues from its checkpoint (``resume=true``), so the command
can be re-run after an interruption. Then, in ``DIR/<experiment>/``:

- ``tables/``: the paper's tables as ``make_tables.py`` writes them;
- ``figures/``: Figure 1, the class bars, the convergence curves or the methods' densities
  (PNG and PDF);
- ``verdicts.csv``: one row per claim of the paper (claim, paper, ours, ci_low, ci_high,
  holds), computed from the per-source rows by ``ugr_experiments.analysis.verdicts`` with the
  rules of ``docs/criteria.md``;
- ``report.md``: the verdicts, the main table beside the paper's, the figure, the wall time.

``--scale cpu`` runs the CPU-sized presets (minutes on 2 cores, ``docs/reproducing.md``);
``--scale gpu`` the paper's own setting (hours per run on one GPU). ``KEY=VALUE`` arguments
go to every run (e.g. ``paths.manifests=...``; the ``UGR_MANIFESTS`` environment variable is
respected as in ``train.py``). Exit status: 0 when every run finished, 1 when one failed
(the others still run and are analysed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python scripts/reproduce.py` from a clone without install

from ugr_experiments.analysis.figures import (  # noqa: E402
    classes_data,
    classes_figure,
    curriculum_data,
    curriculum_ends,
    curriculum_figure,
    figure1,
    figure1_data,
    save,
)
from ugr_experiments.analysis.paper_tables import Options, build_tables  # noqa: E402
from ugr_experiments.analysis.report import auto_levels, baseline_of, conditions  # noqa: E402
from ugr_experiments.analysis.runs import load_runs  # noqa: E402
from ugr_experiments.analysis.tables import cells_to_markdown  # noqa: E402
from ugr_experiments.analysis.verdicts import VERDICTS, to_markdown, write_verdicts  # noqa: E402
from ugr_experiments.config import check_paths  # noqa: E402

# experiment -> (table kind, preset, main table stem)
EXPERIMENTS = {
    "robust": ("robust", "robust_esc50", "table1"),
    "class": ("class", "class_bias", "class"),
    "curriculum": ("curriculum", "curriculum", "curriculum"),
    # beyond the paper: UGR's robust mode against other reweighting methods (issue 15)
    "compare_methods": ("compare", "compare_methods", "compare"),
}
PAPER = ("robust", "class", "curriculum")  # what `all` runs: the paper's experiments


@dataclass(frozen=True)
class Job:
    """One run of a sweep: the swept keys' values and the seed."""

    values: tuple[tuple[str, str], ...]
    seed: int

    @property
    def name(self) -> str:
        """The run folder's name: ``alpha=1/15 seed=7`` is ``alpha-1_15__seed-7`` (no ``/``,
        no ``=``, which Hydra's override grammar would read)."""
        parts = [f"{k}-{v}".replace("/", "_") for k, v in self.values]
        return "__".join([*parts, f"seed-{self.seed}"])

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values] + [f"seed={self.seed}"]


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="reproduce.py", description=__doc__.splitlines()[0], epilog="See docs/reproducing.md."
    )
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--scale", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: preset's)")
    parser.add_argument("--out", type=Path, default=Path("reproduce"), help="output folder")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: the preset's)")
    parser.add_argument(
        "--runs", type=Path, nargs="+", help="analyse these run folders instead of training"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="for every run")
    return parser


def preset_name(experiment: str, scale: str) -> str:
    """``robust_esc50_cpu`` for ``robust`` at CPU scale, ``robust_esc50`` at GPU scale."""
    preset = EXPERIMENTS[experiment][1]
    return f"{preset}_cpu" if scale == "cpu" else preset


def plan(preset: str, overrides: Sequence[str], seeds: Sequence[int] | None) -> tuple:
    """The preset's sweep as jobs, and its parallel jobs; bad values end here, before work.

    Returns:
        ``(jobs, n_jobs, cfg)``: ``cfg`` is the first job's plain, validated config.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ugr_experiments.config import to_plain, validate

    with warnings.catch_warnings(), initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        # conf/hydra/launcher/joblib.yaml shadows the plugin's schema of the same name on
        # purpose (docs/reproducing.md); Hydra's deprecation note about it is noise here.
        warnings.filterwarnings("ignore", message="(?s).*ConfigStore schema", category=UserWarning)
        cfg = compose("config", [f"+experiment={preset}", *overrides], return_hydra_config=True)
    params = dict(OmegaConf.to_container(cfg.hydra.sweeper.params))
    seeds = list(seeds) if seeds else [int(s) for s in str(params.pop("seed", "0")).split(",")]
    params.pop("seed", None)
    swept = [[(k, v.strip()) for v in str(values).split(",")] for k, values in params.items()]
    jobs = [Job(tuple(combo), s) for combo in itertools.product(*swept) for s in seeds]
    n_jobs = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=1)
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    plain = to_plain(job_cfg)
    validate(plain)
    return jobs, max(1, int(n_jobs)), plain


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def _command(preset: str, job: Job, run_dir: Path, overrides: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "train.py"),
        f"+experiment={preset}",
        *job.overrides(),
        "hydra.run.dir='{}'".format(str(run_dir).replace("'", "\\'")),  # quoted: any path
        "resume=true",
        "train.progress=false",
        *overrides,
    ]


def run_jobs(preset: str, jobs: Sequence[Job], runs_dir: Path, overrides, n_jobs: int) -> list:
    """Run the jobs ``n_jobs`` at a time, printing progress; the jobs that failed."""
    todo = [j for j in jobs if not (runs_dir / j.name / "run.json").is_file()]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already finished, {len(todo)} to run")
    start, failed, durations = time.time(), [], []
    running: dict[Job, tuple[subprocess.Popen, IO[bytes], float]] = {}  # process, log, start
    pending = list(todo)
    while pending or running:
        while pending and len(running) < n_jobs:
            job = pending.pop(0)
            folder = runs_dir / job.name
            folder.mkdir(parents=True, exist_ok=True)
            log = open(folder / "train.log", "ab")  # noqa: SIM115 (closed when the job ends)
            cmd = _command(preset, job, folder, overrides)
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
            running[job] = (proc, log, time.time())
        time.sleep(1.0)
        for job, (proc, log, began) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[job]
            durations.append(time.time() - began)
            if proc.returncode != 0:
                failed.append(job)
            done, elapsed = len(durations), time.time() - start
            # the runs not finished yet, n_jobs at a time, at the mean duration so far
            left = sum(durations) / done * (len(todo) - done) / n_jobs
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(
                f"[{done}/{len(todo)}] {job.name}: {status}; elapsed {_clock(elapsed)}, "
                f"about {_clock(left)} left",
                flush=True,
            )
    for job in failed:
        print(f"failed: {job.name}; its output: {runs_dir / job.name / 'train.log'}")
    return failed


def draw_figure(kind: str, runs: list, out: Path) -> Path | None:
    """The experiment's figure (PNG and PDF) in ``out``; the PNG's path, or None."""
    if kind == "robust":
        values = figure1_data(runs)
        fig, stem = (figure1(values, "") if values else None), "figure1"
    elif kind == "compare":
        values, title = figure1_data(runs, "compare"), "Density of test SI-SDRi per method (KDE)"
        fig, stem = (figure1(values, title, prefix="") if values else None), "methods"
    elif kind == "class":
        rows = classes_data(runs)
        fig, stem = (classes_figure(rows, "") if rows else None), "classes"
    else:
        curves = curriculum_data(runs)
        conds = [c for c in conditions(runs, "curriculum") if c.label in curves]
        levels = auto_levels(baseline_of(conds) or conds[0]) if conds else []
        fig = (
            curriculum_figure(curves, "", levels, "step", curriculum_ends(runs)) if curves else None
        )
        stem = "curriculum"
    return save(fig, out, stem)[0] if fig is not None else None


def analyse(experiment: str, run_dirs: Sequence[Path], out: Path, wall: float | None) -> str:
    """Tables, figure, verdicts and ``report.md`` of one experiment; the verdict table."""
    kind, _, main_stem = EXPERIMENTS[experiment]
    runs = load_runs(run_dirs)
    tables = build_tables(runs, [kind], Options(n_boot=2000), given=run_dirs)
    for table in tables:
        table.write(out / "tables")
    figure = draw_figure(kind, runs, out / "figures")
    verdicts = VERDICTS[kind](runs)
    write_verdicts(verdicts, out / "verdicts.csv")
    verdict_md = to_markdown(verdicts)
    main = next((t for t in tables if t.stem == main_stem), None)
    parts = [f"# {experiment}: our runs beside the paper\n", "## Verdicts\n", verdict_md, ""]
    if wall is not None:
        parts.append(f"Wall time of the sweep: {_clock(wall)} (this invocation).\n")
    if main is not None:
        parts.append(cells_to_markdown(main.cells, main.title, main.footer))
    if figure is not None:
        parts.append(f"![{figure.stem}](figures/{figure.name})\n")
    (out / "report.md").write_text("\n".join(parts), encoding="utf-8")
    return verdict_md


def reproduce(experiment: str, args: argparse.Namespace) -> bool:
    """Sweep (unless ``--runs``) and analyse one experiment; False when a run failed."""
    out = args.out / experiment
    failed: list = []
    wall = None
    if args.runs:
        run_dirs = list(args.runs)
    else:
        preset = preset_name(experiment, args.scale)
        jobs, n_jobs, cfg = plan(preset, args.overrides, args.seeds)
        check_paths(cfg)  # the manifests exist: nothing starts without its data
        print(
            f"== {experiment}: preset {preset}, {len(jobs)} runs, {args.jobs or n_jobs} at a time"
        )
        start = time.time()
        failed = run_jobs(preset, jobs, out / "runs", args.overrides, args.jobs or n_jobs)
        wall = time.time() - start
        run_dirs = [out / "runs"]
    print(analyse(experiment, run_dirs, out, wall))
    print(f"wrote {out / 'verdicts.csv'} and {out / 'report.md'}")
    return not failed


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, reproduce each experiment asked for; the exit status."""
    args = build_parser().parse_intermixed_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        print(
            f"reproduce.py: not KEY=VALUE: {' '.join(bad)} (e.g. paths.manifests=DIR)",
            file=sys.stderr,
        )
        return 2
    if args.jobs is not None and args.jobs < 1:
        print(
            f"reproduce.py: --jobs must be >= 1, got {args.jobs} (e.g. --jobs 2)", file=sys.stderr
        )
        return 2
    experiments = list(PAPER) if args.experiment == "all" else [args.experiment]
    if args.runs and len(experiments) > 1:
        print(
            "reproduce.py: --runs analyses one experiment; name it (e.g. robust)", file=sys.stderr
        )
        return 2
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    ok = True
    for experiment in experiments:
        try:
            ok = reproduce(experiment, args) and ok
        except Exception as err:  # a config error, no runs, ...: one line, nothing lost
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"reproduce.py: {experiment}: {err}", file=sys.stderr)
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
