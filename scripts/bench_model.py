"""Sudo rm -rf networks: the fast models against their direct reference formulations.

    python scripts/bench_model.py                                  # 0.25x, 0.5x, 1.0x on CPU
    python scripts/bench_model.py --configs 1x --steps 5 --rounds 2 --json bench.json
    python scripts/bench_model.py --configs improved_1x gc_1x      # SuDoRM-RF++ and its GC form
    python scripts/bench_model.py --device cuda                    # + bf16 autocast, torch.compile

Each configuration is a preset of ``ugr_experiments.models`` (``1x`` is ``sudormrf_1x``,
``improved_1x`` is ``sudormrf_improved_1x``, ...); its reference is the direct formulation
of that network in ``tests/`` (``reference_sudormrf.py``, ``reference_sudormrf_pp.py``).

For each configuration (``--configs``) and variant (``--variants``: ``fast``, ``reference``,
optionally with ``+bf16`` and/or ``+compile``), subprocesses build the network with the
same seeded weights and measure, at batch ``--batch`` x ``--seconds`` s x ``--sample-rate``:

- the training step (forward, PIT negative SI-SDRi from ``ugr_experiments.losses``, robust
  UGR weighting, backward, Adam): ``--warmup`` untimed steps, then the median of ``--steps``;
- inference (``torch.inference_mode``) at batch 1 and 4: the median of ``--infer-reps``;
- the cost of the reweighting alone (scores, softmax, weighted sum on the (B, S) loss);
- the peak memory of one training step, in a process of its own (a process's peak never
  goes down). CPU: the maximum resident set size with glibc told to map every block of
  64 KiB or more separately and unmap it on free, so the resident set follows the live
  tensors; the timing process's own maximum RSS under default malloc is shown too (it
  adds heap fragmentation, which varies from run to run). CUDA:
  ``torch.cuda.max_memory_allocated``.

The timing processes run interleaved: fast, reference, then reference, fast in the next
round (``--rounds``), so a load change on a shared machine hits both. OpenMP threads
sleep while waiting by default (``--omp-wait-policy``): spinning threads stall for whole
scheduler slices when other processes share the cores. Ratios are reference / fast for
times and fast / reference for memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference_sudormrf import ReferenceSuDORMRF  # noqa: E402
from reference_sudormrf_pp import (  # noqa: E402
    ReferenceGroupCommSudoRmRf,
    ReferenceImprovedSuDORMRF,
)

from ugr_experiments.losses import neg_sisdri  # noqa: E402
from ugr_experiments.models import PRESETS, build_model, resolve  # noqa: E402
from ugr_experiments.weighting import Progress, RobustWeighting, pmf, weighted_loss  # noqa: E402

# Short name -> preset: the original network's sizes keep their short names. Conv-TasNet
# (torchaudio) has no direct reference: only its "fast" variant (the network itself) runs.
CONFIGS = {preset.removeprefix("sudormrf_"): preset for preset in PRESETS}
CONFIGS["convtasnet"] = "convtasnet"
# Each network's direct formulation (same parameter names and shapes).
REFERENCES: dict[str, type[nn.Module]] = {
    "sudormrf": ReferenceSuDORMRF,
    "sudormrf_improved": ReferenceImprovedSuDORMRF,
    "sudormrf_gc": ReferenceGroupCommSudoRmRf,
}


# ---------------------------------------------------------------------------------------
# Worker: one (configuration, variant) per process
# ---------------------------------------------------------------------------------------


def _build(config: str, variant: str, num_sources: int) -> nn.Module:
    name, sizes = resolve(CONFIGS[config], {"num_sources": num_sources})
    torch.manual_seed(0)
    model = build_model(name, **sizes)  # the same weights for both variants
    if variant.split("+")[0] == "reference":
        ref = REFERENCES[name](**sizes)
        ref.load_state_dict(model.state_dict())
        return ref
    return model


_ROBUST = RobustWeighting(alpha=0.2)


def _weigh(loss: Tensor) -> Tensor:
    """(B, S) loss -> scalar: robust UGR weighting, as the training loop computes it."""
    idx = torch.zeros(loss.shape, dtype=torch.long, device=loss.device)
    return weighted_loss(loss, pmf(_ROBUST.scores(loss, idx, idx, Progress(0, 0))))


def _peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = args.device
    config, variant = args.worker
    flags = set(variant.split("+")[1:])
    model = _build(config, variant, args.num_sources).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    length = round(args.seconds * args.sample_rate)
    gen = torch.Generator().manual_seed(1)
    sources = torch.randn(args.batch, args.num_sources, length, generator=gen).to(device)
    mix = sources.sum(1)  # (B, T)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = torch.compile(model) if "compile" in flags else model
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled="bf16" in flags)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step() -> float:
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            est = run(mix)  # (B, S, T)
        loss = neg_sisdri(est.float(), sources, mix)  # (B, S)
        _weigh(loss).backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    base_mb = _peak_mb(device)
    if args.mode == "memory":
        step()
        return {
            "config": config,
            "variant": variant,
            "mode": "memory",
            "params": n_params,
            "peak_mb": _peak_mb(device),
            "base_mb": base_mb,
        }
    for _ in range(args.warmup):
        step()
    steps = [step() for _ in range(args.steps)]
    peak_mb = _peak_mb(device)

    infer: dict[str, float] = {}
    model.eval()
    for batch in (1, 4):
        x = mix[:1].repeat(batch, 1) if batch != mix.shape[0] else mix
        times = []
        with torch.inference_mode(), autocast:
            for i in range(args.infer_reps + 1):
                sync()
                start = time.perf_counter()
                run(x)
                sync()
                if i:  # the first call warms up
                    times.append(time.perf_counter() - start)
        infer[f"b{batch}"] = statistics.median(times)

    loss = torch.randn(args.batch, args.num_sources, device=device, requires_grad=True)
    reps = 500
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        _weigh(loss)
    sync()
    weighting_s = (time.perf_counter() - start) / reps
    return {
        "config": config,
        "variant": variant,
        "mode": "time",
        "params": n_params,
        "step_s": statistics.median(steps),
        "steps_s": steps,
        "peak_mb": peak_mb,
        "base_mb": base_mb,
        "infer_s": infer,
        "weighting_s": weighting_s,
    }


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def run_worker(config: str, variant: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", config, variant, "--mode", mode]
    for key in ("device", "threads", "batch", "seconds", "sample_rate", "num_sources"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    for key in ("steps", "warmup", "infer_reps"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    if mode == "memory" and args.device == "cpu":
        # Every block of 64 KiB or more gets its own mapping, returned on free: the
        # resident set then follows the live tensors, and its peak is the model's peak
        # (default malloc keeps freed heap memory, so its peak also measures fragmentation).
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=True
        )
    except subprocess.TimeoutExpired:
        error = f"timeout after {args.timeout} s"
        return {"config": config, "variant": variant, "mode": mode, "error": error}
    except subprocess.CalledProcessError as err:
        tail = " | ".join((err.stderr or "").strip().splitlines()[-3:])
        return {"config": config, "variant": variant, "mode": mode, "error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _merge(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (configuration, variant): all timed steps pooled over rounds, the memory run."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        m = merged.setdefault((r["config"], r["variant"]), {"steps_s": [], "infer": {}})
        if "error" in r:
            m.setdefault("errors", []).append(f"{r['mode']}: {r['error']}")
        elif r["mode"] == "memory":
            m["peak_mb"], m["params"] = r["peak_mb"], r["params"]
        else:
            m["steps_s"] += r["steps_s"]
            m["rss_mb"] = max(m.get("rss_mb", 0.0), r["peak_mb"])
            m["weighting_s"], m["params"] = r["weighting_s"], r["params"]
            for k, v in r["infer_s"].items():
                m["infer"].setdefault(k, []).append(v)
    for m in merged.values():
        if m["steps_s"]:
            m["step_s"] = statistics.median(m["steps_s"])
            m["infer_s"] = {k: statistics.median(v) for k, v in m["infer"].items()}
    return merged


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}x" if num and den else "-"


def report(merged: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nbatch {args.batch} x {args.seconds:g} s x {args.sample_rate} Hz, "
        f"{args.device}, {args.threads} threads, OMP_WAIT_POLICY={args.omp_wait_policy}, "
        f"torch {torch.__version__}; medians of {args.steps} steps x {args.rounds} round(s)"
    )
    cols = ["step s", "peak MB", "RSS MB", "infer b1 s", "infer b4 s"]
    print(f"{'config':13} {'variant':18} {'params':>10} " + " ".join(f"{c:>11}" for c in cols))
    for config in args.configs:
        for variant in _variants(config, args.variants):
            m = merged.get((config, variant), {})
            vals = [m.get("step_s"), m.get("peak_mb"), m.get("rss_mb")]
            vals += [m.get("infer_s", {}).get(k) for k in ("b1", "b4")]
            cells = [
                f"{v:>11,.3f}"
                if v is not None and v < 100
                else f"{v:>11,.0f}"
                if v is not None
                else f"{'-':>11}"
                for v in vals
            ]
            print(f"{config:13} {variant:18} {m.get('params', 0):>10,} " + " ".join(cells))
            for err in m.get("errors", []):
                print(f"{'':13} {variant:18} ERROR {err}")
        fast, ref = merged.get((config, "fast"), {}), merged.get((config, "reference"), {})
        if fast and ref:
            fi, ri = fast.get("infer_s", {}), ref.get("infer_s", {})
            cells = [
                _ratio(ref.get("step_s"), fast.get("step_s")),
                _ratio(fast.get("peak_mb"), ref.get("peak_mb")),
                _ratio(fast.get("rss_mb"), ref.get("rss_mb")),
                _ratio(ri.get("b1"), fi.get("b1")),
                _ratio(ri.get("b4"), fi.get("b4")),
            ]
            print(
                f"{config:13} {'ref/fast (mem f/r)':18} {'':>10} "
                + " ".join(f"{c:>11}" for c in cells)
            )
            if fast.get("weighting_s") and fast.get("step_s"):
                share = 100 * fast["weighting_s"] / fast["step_s"]
                print(
                    f"{config:13} reweighting (robust scores, softmax, weighted sum): "
                    f"{1e3 * fast['weighting_s']:.3f} ms = {share:.4f} % of the fast step"
                )
    print(
        "step: forward, PIT neg SI-SDRi, robust UGR weighting, backward, Adam. peak MB: the "
        "training step's peak resident memory in its own process with every allocation of "
        ">= 64 KiB mapped and unmapped on free (the live-tensor peak); RSS MB: the timing "
        "process's peak under default malloc (adds heap fragmentation). Ratios: reference / "
        "fast for times, fast / reference for memory."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["025x", "05x", "1x"], choices=list(CONFIGS))
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="fast, reference, optionally +bf16 / +compile (CUDA default adds them)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--num-sources", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed training steps per process")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--infer-reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (ABBA order)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument(
        "--omp-wait-policy",
        default="passive",
        choices=["passive", "active", "default"],
        help="OpenMP threads sleep (passive) or spin while waiting; spinning threads stall "
        "badly when other processes share the cores",
    )
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    p.add_argument("--mode", default="time", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = ["fast", "reference"]
        if args.device == "cuda":
            args.variants += ["fast+bf16", "fast+compile", "fast+bf16+compile"]
    return args


def _variants(config: str, variants: list[str]) -> list[str]:
    """The variants that exist for ``config``: no reference for a network without one."""
    if resolve(CONFIGS[config], {})[0] in REFERENCES:
        return variants
    return [v for v in variants if not v.startswith("reference")]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for config in args.configs:
        variants = _variants(config, args.variants)
        for rnd in range(args.rounds):
            order = variants if rnd % 2 == 0 else variants[::-1]
            for variant in order:
                print(f"[{config} {variant}: time, round {rnd + 1}]", flush=True, file=sys.stderr)
                results.append(run_worker(config, variant, "time", args))
        for variant in variants:
            print(f"[{config} {variant}: peak memory]", flush=True, file=sys.stderr)
            results.append(run_worker(config, variant, "memory", args))
    merged = _merge(results)
    report(merged, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "runs": results},
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
