"""Sudo rm -rf: the fast model against the direct reference formulation, side by side.

    python scripts/bench_model.py                                  # 0.25x, 0.5x, 1.0x on CPU
    python scripts/bench_model.py --configs 1x --steps 5 --rounds 2 --json bench.json
    python scripts/bench_model.py --device cuda                    # + bf16 autocast, torch.compile

For each configuration (``--configs``) and variant (``--variants``: ``fast``, ``reference``,
optionally with ``+bf16`` and/or ``+compile``), one subprocess builds the network with the
same seeded weights and measures, at batch ``--batch`` x ``--seconds`` s x ``--sample-rate``:

- the training step (forward, PIT negative SI-SDRi from ``ugr_experiments.losses``, robust
  UGR weighting, backward, Adam): ``--warmup`` untimed steps, then the median of ``--steps``;
- the peak memory of that process after the training steps (CPU: maximum resident set
  size; CUDA: ``torch.cuda.max_memory_allocated``), hence one process per measurement,
  since a process's peak never goes down;
- inference (``torch.inference_mode``) at batch 1 and 4: the median of ``--infer-reps``;
- the cost of the reweighting alone (scores, softmax, weighted sum on the (B, S) loss).

Variants run interleaved: fast, reference, then reference, fast in the next round
(``--rounds``), so a load change on a shared machine hits both. The ratios are
reference / fast for times and fast / reference for memory.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "025x": "sudormrf_025x",
    "05x": "sudormrf_05x",
    "1x": "sudormrf_1x",
    "cpu": "sudormrf_cpu",
}


# ---------------------------------------------------------------------------------------
# Worker: one (configuration, variant) per process
# ---------------------------------------------------------------------------------------


def _build(config: str, variant: str, num_sources: int) -> Any:
    import torch

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from reference_sudormrf import ReferenceSuDORMRF

    from ugr_experiments.models import PRESETS, SuDORMRF

    sizes = {**PRESETS[CONFIGS[config]], "num_sources": num_sources}
    torch.manual_seed(0)
    model = SuDORMRF(**sizes)  # the same weights for both variants
    if variant.split("+")[0] == "reference":
        ref = ReferenceSuDORMRF(**sizes)
        ref.load_state_dict(model.state_dict())
        model = ref
    return model


def _loss_fn() -> Callable[[Any, Any, Any], Any]:
    """(est, ref, mix) -> (B, S) per-source loss; the project's PIT neg SI-SDRi if present."""
    try:
        from ugr_experiments.losses import neg_sisdri

        return neg_sisdri
    except ImportError:  # standalone fallback: PIT over permutations of -SI-SDR
        import itertools

        import torch

        def neg_sisdr_pit(est: Any, ref: Any, mix: Any) -> Any:
            est = est - est.mean(-1, keepdim=True)
            ref = ref - ref.mean(-1, keepdim=True)
            best = None
            for perm in itertools.permutations(range(est.shape[1])):
                e = est[:, list(perm)]
                proj = (e * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + 1e-8)
                t = proj * ref
                sdr = 10 * torch.log10(t.pow(2).sum(-1) / ((e - t).pow(2).sum(-1) + 1e-8) + 1e-8)
                best = (
                    sdr
                    if best is None
                    else torch.where(
                        sdr.mean(1, keepdim=True) > best.mean(1, keepdim=True), sdr, best
                    )
                )
            return -best

        return neg_sisdr_pit


def _weighting_fn() -> Callable[[Any], Any]:
    """(B, S) loss -> scalar: robust UGR (alpha = 0.2), as the training loop computes it."""
    import torch

    try:
        from ugr_experiments.weighting import Progress, RobustWeighting, pmf, weighted_loss

        robust = RobustWeighting(alpha=0.2)

        def weigh(loss: Any) -> Any:
            idx = torch.zeros(loss.shape, dtype=torch.long, device=loss.device)
            return weighted_loss(loss, pmf(robust.scores(loss, idx, idx, Progress(0, 0))))

        return weigh
    except ImportError:

        def weigh_local(loss: Any) -> Any:
            p = torch.softmax(0.2 * loss.detach().flatten(), 0).view_as(loss)
            return (p * loss).sum()

        return weigh_local


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

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
    loss_fn, weigh = _loss_fn(), _weighting_fn()
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
        loss = loss_fn(est.float(), sources, mix)  # (B, S)
        weigh(loss).backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    base_mb = _peak_mb(device)
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
        weigh(loss)
    sync()
    weighting_s = (time.perf_counter() - start) / reps
    return {
        "config": config,
        "variant": variant,
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


def run_worker(config: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", config, variant]
    for key in ("device", "threads", "batch", "seconds", "sample_rate", "num_sources"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    for key in ("steps", "warmup", "infer_reps"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=True
        )
    except subprocess.TimeoutExpired:
        return {"config": config, "variant": variant, "error": f"timeout after {args.timeout} s"}
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or "").strip().splitlines()[-3:]
        return {"config": config, "variant": variant, "error": " | ".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _merge(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Pool the rounds of each (configuration, variant): all steps, the max peak."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        key = (r["config"], r["variant"])
        if "error" in r:
            merged.setdefault(key, r)
            continue
        m = merged.get(key)
        if m is None or "error" in m:
            merged[key] = {**r, "infer_all": {k: [v] for k, v in r["infer_s"].items()}}
            continue
        m["steps_s"] += r["steps_s"]
        m["step_s"] = statistics.median(m["steps_s"])
        m["peak_mb"] = max(m["peak_mb"], r["peak_mb"])
        for k, v in r["infer_s"].items():
            m["infer_all"][k].append(v)
            m["infer_s"][k] = statistics.median(m["infer_all"][k])
    return merged


def report(merged: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace) -> None:
    import torch

    print(
        f"\nSudo rm -rf, batch {args.batch} x {args.seconds:g} s x {args.sample_rate} Hz, "
        f"{args.device}, {args.threads} threads, torch {torch.__version__}; "
        f"medians of {args.steps} steps x {args.rounds} round(s)"
    )
    head = f"{'config':6} {'variant':20} {'params':>10} {'step s':>8} {'peak MB':>9} "
    print(head + f"{'infer b1 s':>11} {'infer b4 s':>11}")
    for config in args.configs:
        rows = [(v, merged.get((config, v))) for v in args.variants]
        for variant, r in rows:
            if r is None or "error" in r:
                print(f"{config:6} {variant:20} ERROR {r and r.get('error')}")
                continue
            print(
                f"{config:6} {variant:20} {r['params']:>10,} {r['step_s']:>8.3f} "
                f"{r['peak_mb']:>9,.0f} {r['infer_s']['b1']:>11.3f} {r['infer_s']['b4']:>11.3f}"
            )
        fast, ref = merged.get((config, "fast")), merged.get((config, "reference"))
        if fast and ref and "error" not in fast and "error" not in ref:
            print(
                f"{config:6} {'speed-up ref/fast':20} {'':>10} "
                f"{ref['step_s'] / fast['step_s']:>7.2f}x "
                f"{fast['peak_mb'] / ref['peak_mb']:>8.2f}x "
                f"{ref['infer_s']['b1'] / fast['infer_s']['b1']:>10.2f}x "
                f"{ref['infer_s']['b4'] / fast['infer_s']['b4']:>10.2f}x"
            )
            share = 100 * fast["weighting_s"] / fast["step_s"]
            print(
                f"{config:6} reweighting (robust pmf + weighted sum) "
                f"{1e3 * fast['weighting_s']:.3f} ms = {share:.4f} % of the fast step"
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
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = ["fast", "reference"]
        if args.device == "cuda":
            args.variants += ["fast+bf16", "fast+compile", "fast+bf16+compile"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for config in args.configs:
        for rnd in range(args.rounds):
            order = args.variants if rnd % 2 == 0 else args.variants[::-1]
            for variant in order:
                print(f"[{config} {variant} round {rnd + 1}] ...", flush=True, file=sys.stderr)
                results.append(run_worker(config, variant, args))
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
