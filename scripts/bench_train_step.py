"""Training steps per second with uniform and with robust weighting, and the overhead.

    python scripts/bench_train_step.py                       # default model and batch
    python scripts/bench_train_step.py --pairs 40 --threads 2 --json out.json
    python scripts/bench_train_step.py model=sudormrf_05x dataset.segment_seconds=4   # overrides

The two variants are timed interleaved (uniform, robust, robust, uniform, ...) on the same
batch, so a load change on a shared machine hits both alike; the overhead is the median of
the per-pair time ratios (DESIGN.md, "Measuring small overheads"). The cost of the weighting
computation alone (scores, softmax, weighted sum) is timed as well, against the median step.
Peak memory is the process's maximum resident set size (each variant in its own subprocess
with ``--peak-only``, since a process's peak never goes down).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from ugr_experiments.config import to_plain  # noqa: E402
from ugr_experiments.training.loop import train_step  # noqa: E402
from ugr_experiments.training.parts import RunParts, build_parts  # noqa: E402
from ugr_experiments.weighting import (  # noqa: E402
    Progress,
    Weighting,
    build_weighting,
    pmf,
    to_units,
    weighted_loss,
)


def setup(overrides: list[str]) -> tuple[RunParts, dict[str, Any], dict[str, Weighting]]:
    """The run's parts (as ``train.py`` would build them), one training batch, both weightings."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_plain(compose("config", overrides=["train.progress=false", *overrides]))
    parts = build_parts(cfg, ROOT / "outputs" / "bench")
    batch = next(iter(parts.train_loader))
    names = (parts.train_set.class_names, parts.group_names)
    weightings = {
        "uniform": build_weighting({"name": "uniform"}, *names),
        "robust": build_weighting({"name": "robust", "alpha": 0.2}, *names),
    }
    return parts, batch, weightings


def time_step(parts: RunParts, batch: dict[str, Any], weighting: Weighting, step: int) -> float:
    """Seconds of one training step of the plain model with ``weighting``."""
    start = time.perf_counter()
    train_step(
        parts.model,
        batch,
        weighting,
        parts.optimizer,
        Progress(step, 0),
        parts.settings.grad_clip,
        parts.device,
    )
    return time.perf_counter() - start


def time_weighting_only(batch: dict[str, Any], weighting: Weighting, repeats: int = 2000) -> float:
    """Seconds per call of the reweighting itself on a (B, S) loss that needs a gradient."""
    shape = batch["class_idx"].shape
    loss = torch.randn(shape, requires_grad=True)
    start = time.perf_counter()
    for i in range(repeats):
        units, cls, grp = to_units(loss, batch["class_idx"], batch["group_idx"], weighting.unit)
        p = pmf(weighting.scores(units.detach(), cls, grp, Progress(i, 0)))
        weighted_loss(units, p)
    return (time.perf_counter() - start) / repeats


def peak_rss_mb(variant: str, args: argparse.Namespace, overrides: list[str]) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--peak-only",
        variant,
        "--threads",
        str(args.threads),
        "--warmup",
        "2",
        *overrides,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30, help="interleaved uniform/robust pairs")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--peak-only", choices=["uniform", "robust"], help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    parts, batch, weightings = setup(overrides)
    if args.peak_only:
        for i in range(args.warmup):
            time_step(parts, batch, weightings[args.peak_only], i)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    for i in range(args.warmup):
        for w in weightings.values():
            time_step(parts, batch, w, i)
    times: dict[str, list[float]] = {"uniform": [], "robust": []}
    for i in range(args.pairs):
        # ABBA order: which variant runs first alternates, so an order effect cancels out.
        order = ["uniform", "robust"] if i % 2 == 0 else ["robust", "uniform"]
        for name in order:
            times[name].append(time_step(parts, batch, weightings[name], i))
    ratios = [r / u for u, r in zip(times["uniform"], times["robust"], strict=True)]
    med = {k: statistics.median(v) for k, v in times.items()}
    weigh = time_weighting_only(batch, weightings["robust"])
    result = {
        "batch": list(batch["mixture"].shape),
        "threads": args.threads,
        "device": str(parts.device),
        "parameters": sum(p.numel() for p in parts.model.parameters()),
        "steps_per_s_uniform": 1 / med["uniform"],
        "steps_per_s_robust": 1 / med["robust"],
        "overhead_median_pair_ratio_pct": 100 * (statistics.median(ratios) - 1),
        "weighting_only_ms": 1000 * weigh,
        "weighting_only_pct_of_step": 100 * weigh / med["uniform"],
        "peak_rss_mb_uniform": peak_rss_mb("uniform", args, overrides),
        "peak_rss_mb_robust": peak_rss_mb("robust", args, overrides),
    }
    print(
        f"batch {result['batch']} ({result['parameters']:,} parameters, "
        f"{args.threads} threads, {result['device']}), {args.pairs} interleaved pairs"
    )
    for name in ("uniform", "robust"):
        print(
            f"  {name:8s} {result[f'steps_per_s_{name}']:.3f} steps/s "
            f"(median {1000 * med[name]:.1f} ms), peak RSS {result[f'peak_rss_mb_{name}']:.0f} MB"
        )
    print(
        f"  robust/uniform overhead, median of pair ratios: "
        f"{result['overhead_median_pair_ratio_pct']:+.2f} %"
    )
    print(
        f"  weighting computation alone: {result['weighting_only_ms']:.3f} ms = "
        f"{result['weighting_only_pct_of_step']:.3f} % of a step"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
