"""Sudo rm -rf networks: the fast models against their direct reference formulations.

    python scripts/bench_model.py                                  # 0.25x, 0.5x, 1.0x on CPU
    python scripts/bench_model.py --configs 1x --steps 5 --rounds 2 --json bench.json
    python scripts/bench_model.py --configs improved_1x gc_1x      # SuDoRM-RF++ and its GC form
    python scripts/bench_model.py --device cuda                    # + bf16 autocast, torch.compile
    python scripts/bench_model.py --configs 1x --authors-repo ~/sudo_rm_rf   # + the authors' class

Each configuration is a preset of ``ugr_experiments.models`` (``1x`` is ``sudormrf_1x``,
``improved_1x`` is ``sudormrf_improved_1x``, ...); its reference is the direct formulation
of that network in ``tests/`` (``reference_sudormrf.py``, ``reference_sudormrf_pp.py``).

For each configuration (``--configs``) and variant (``--variants``: ``fast``, ``reference``,
``authors``, optionally with ``+bf16`` and/or ``+compile``), subprocesses build the network
with the same seeded weights and measure, at batch ``--batch`` x ``--seconds`` s x
``--sample-rate``:

- the training step (forward, PIT negative SI-SDRi from ``ugr_experiments.losses``, robust
  UGR weighting, backward, Adam): ``--warmup`` untimed steps, then the median of ``--steps``;
- inference (``torch.inference_mode``) at batch 1 and 4: the median of ``--infer-reps``;
- the real-time factor of separation: seconds of audio separated per second of wall time
  for a ``--rtf-seconds`` (60) recording at batch 1, cut into chunks of each of
  ``--chunk-seconds`` as ``ugr-separate`` cuts it (0: the whole recording in one pass);
- the cost of the reweighting alone (scores, softmax, weighted sum on the (B, S) loss);
- the peak memory of one training step, in a process of its own (a process's peak never
  goes down). CPU: the maximum resident set size with glibc told to map every block of
  64 KiB or more separately and unmap it on free, so the resident set follows the live
  tensors; the timing process's own maximum RSS under default malloc is shown too (it
  adds heap fragmentation, which varies from run to run). CUDA:
  ``torch.cuda.max_memory_allocated``.

``authors`` is the authors' own ``SuDORMRF`` class (etzinis/sudo_rm_rf,
``sudo_rm_rf/dnn/models/sudormrf.py``), imported from the clone given by ``--authors-repo``
(never fetched); ``reference`` is our direct formulation (``tests/reference_sudormrf.py``).

The timing processes run interleaved: fast, reference, then reference, fast in the next
round (``--rounds``), so a load change on a shared machine hits both. Besides wall time,
each step's CPU time (``time.process_time``: all threads of the process) is recorded: on a
machine whose cores other jobs share, wall time also counts the time the process waited
for a core, CPU time mostly not, so the CPU-time ratio is the steadier of the two there.
OpenMP threads sleep while waiting by default (``--omp-wait-policy``): spinning threads
stall for whole scheduler slices when other processes share the cores. Ratios are
reference (or authors) / fast for times and fast / reference for memory.
"""

from __future__ import annotations

import argparse
import importlib.util
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

from ugr_experiments.inference.chunks import ChunkPlan  # noqa: E402
from ugr_experiments.inference.separate import separate_chunked  # noqa: E402
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


AUTHORS_FILE = Path("sudo_rm_rf", "dnn", "models", "sudormrf.py")


def load_authors_class(repo: str | os.PathLike[str]) -> type[nn.Module]:
    """The authors' ``SuDORMRF`` class, imported from a local clone of etzinis/sudo_rm_rf.

    Args:
        repo: the clone's root (or the path of ``sudormrf.py`` itself).

    Raises:
        FileNotFoundError: no ``sudo_rm_rf/dnn/models/sudormrf.py`` there.
    """
    path = Path(repo).expanduser()
    path = path if path.is_file() else path / AUTHORS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no authors' model at {path}: pass the root of a clone of "
            "https://github.com/etzinis/sudo_rm_rf (or the path of its sudormrf.py)"
        )
    spec = importlib.util.spec_from_file_location("authors_sudormrf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SuDORMRF


class ChannelInput(nn.Module):
    """Feeds (B, T) mixtures to a network that takes (B, 1, T) (the authors' class)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.lcm = getattr(net, "lcm", 1)

    def forward(self, mix: Tensor) -> Tensor:
        return self.net(mix.unsqueeze(1))


def build_variant(
    preset: str, variant: str, num_sources: int = 2, authors_repo: str | None = None
) -> nn.Module:
    """The network of ``preset`` in one formulation, with the same seeded weights for all.

    Args:
        preset: a model or preset name of ``ugr_experiments.models``.
        variant: ``fast`` (ours), ``reference`` (the direct formulation in ``tests/``) or
            ``authors`` (their original class from ``authors_repo``); a ``+flag`` suffix is
            ignored.
        num_sources: S.
        authors_repo: a clone of etzinis/sudo_rm_rf (for ``authors``).
    """
    name, sizes = resolve(preset, {"num_sources": num_sources})
    torch.manual_seed(0)
    model = build_model(name, **sizes)  # the same weights for every variant
    kind = variant.split("+")[0]
    if kind == "fast":
        return model
    if kind == "authors":
        if authors_repo is None:
            raise ValueError("variant 'authors' needs --authors-repo PATH (a clone of their repo)")
        if name != "sudormrf":
            raise ValueError(f"variant 'authors' exists for the original Sudo rm -rf, not {name!r}")
        other = load_authors_class(authors_repo)(**sizes)
        other.load_state_dict(model.state_dict())  # their names and shapes are ours
        return ChannelInput(other)
    if kind != "reference":
        raise ValueError(f"unknown variant {variant!r}; choose from fast, reference, authors")
    ref = REFERENCES[name](**sizes)
    ref.load_state_dict(model.state_dict())
    return ref


def separation_rtf(
    model: nn.Module, seconds: float, chunk_seconds: float, sample_rate: int, device: str
) -> float:
    """Seconds of audio separated per second of wall time, chunked as ``ugr-separate`` does.

    A ``seconds`` long recording at batch 1 (one chunk per forward pass);
    ``chunk_seconds`` 0: the whole recording in one pass.
    """
    mix = torch.randn(round(seconds * sample_rate), generator=torch.Generator().manual_seed(2))
    plan = None
    if chunk_seconds > 0:
        multiple = int(getattr(model, "lcm", 1) or 1)
        plan = ChunkPlan.from_seconds(chunk_seconds, 0.5, 0.25, sample_rate, multiple)
    start = time.perf_counter()
    separate_chunked(model, mix, plan, batch_size=1, device=device)  # inference mode inside
    if device == "cuda":
        torch.cuda.synchronize()
    return seconds / (time.perf_counter() - start)


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
    model = build_variant(CONFIGS[config], variant, args.num_sources, args.authors_repo)
    model = model.to(device)
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

    cpu_s: list[float] = []  # CPU seconds of each step, all threads (see the docstring)

    def step() -> float:
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with autocast:
            est = run(mix)  # (B, S, T)
        loss = neg_sisdri(est.float(), sources, mix)  # (B, S)
        _weigh(loss).backward()
        opt.step()
        sync()
        cpu_s.append(time.process_time() - cpu)
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
    del cpu_s[:]
    steps = [step() for _ in range(args.steps)]
    step_cpu = list(cpu_s)
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
    with autocast:
        rtf = {
            f"{c:g}": separation_rtf(run, args.rtf_seconds, c, args.sample_rate, device)
            for c in args.chunk_seconds
        }

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
        "steps_cpu_s": step_cpu,
        "peak_mb": peak_mb,
        "base_mb": base_mb,
        "infer_s": infer,
        "rtf": rtf,
        "weighting_s": weighting_s,
    }


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def run_worker(config: str, variant: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", config, variant, "--mode", mode]
    for key in ("device", "threads", "batch", "seconds", "sample_rate", "num_sources"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    for key in ("steps", "warmup", "infer_reps", "rtf_seconds"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    cmd += ["--chunk-seconds", *map(str, args.chunk_seconds)]
    if args.authors_repo:
        cmd += ["--authors-repo", str(args.authors_repo)]
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
            m.setdefault("round_s", []).append(statistics.median(r["steps_s"]))
            m.setdefault("round_cpu_s", []).append(statistics.median(r["steps_cpu_s"]))
            m["rss_mb"] = max(m.get("rss_mb", 0.0), r["peak_mb"])
            m["weighting_s"], m["params"] = r["weighting_s"], r["params"]
            for k, v in r["infer_s"].items():
                m["infer"].setdefault(k, []).append(v)
            for k, v in r.get("rtf", {}).items():
                m.setdefault("rtfs", {}).setdefault(k, []).append(v)
    for m in merged.values():
        if m["steps_s"]:
            m["step_s"] = statistics.median(m["steps_s"])
            m["infer_s"] = {k: statistics.median(v) for k, v in m["infer"].items()}
            m["rtf"] = {k: statistics.median(v) for k, v in m.get("rtfs", {}).items()}
    return merged


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}x" if num and den else "-"


def _ratio_row(config: str, base: str, fast: dict[str, Any], ref: dict[str, Any]) -> None:
    """``base`` / fast for times, fast / ``base`` for memory; the median of pair ratios too."""
    if not fast or not ref:
        return
    fi, ri = fast.get("infer_s", {}), ref.get("infer_s", {})
    cells = [
        _ratio(ref.get("step_s"), fast.get("step_s")),
        _ratio(fast.get("peak_mb"), ref.get("peak_mb")),
        _ratio(fast.get("rss_mb"), ref.get("rss_mb")),
        _ratio(ri.get("b1"), fi.get("b1")),
        _ratio(ri.get("b4"), fi.get("b4")),
    ]
    label = {"reference": "ref/fast (mem f/r)", "authors": "auth/fast (mem f/a)"}[base]
    print(f"{config:13} {label:18} {'':>10} " + " ".join(f"{c:>11}" for c in cells))
    for clock in ("round_s", "round_cpu_s"):
        pairs = [b / a for a, b in zip(fast.get(clock, []), ref.get(clock, []), strict=False)]
        if pairs:
            print(
                f"{config:13} {base}/fast step {'CPU' if 'cpu' in clock else 'wall'} time, "
                f"median of {len(pairs)} interleaved round ratios: "
                f"{statistics.median(pairs):.2f}x ({', '.join(f'{p:.2f}' for p in pairs)})"
            )


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
        fast = merged.get((config, "fast"), {})
        for base in ("reference", "authors"):
            _ratio_row(config, base, fast, merged.get((config, base), {}))
        for variant in args.variants:
            rtf = merged.get((config, variant), {}).get("rtf", {})
            if rtf:
                cells = ", ".join(f"{k} s: {v:.1f}x" for k, v in rtf.items())
                print(
                    f"{config:13} {variant:18} separation RTF, {args.rtf_seconds:g} s at batch 1, "
                    f"by chunk (0: whole): {cells}"
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
        help="fast, reference, authors (needs --authors-repo), optionally +bf16 / +compile "
        "(CUDA default adds them)",
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
    p.add_argument(
        "--authors-repo",
        default=None,
        help="a local clone of etzinis/sudo_rm_rf: adds the variant 'authors' (their class)",
    )
    p.add_argument("--rtf-seconds", type=float, default=60.0, help="recording for the RTF")
    chunk_help = "chunk lengths for the RTF (as ugr-separate's; 0: one pass)"
    p.add_argument("--chunk-seconds", type=float, nargs="+", default=[8.0], help=chunk_help)
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
        args.variants = ["fast", "authors" if args.authors_repo else "reference"]
        if args.device == "cuda":
            args.variants += ["fast+bf16", "fast+compile", "fast+bf16+compile"]
    return args


def _variants(config: str, variants: list[str]) -> list[str]:
    """The variants that exist for ``config``: a reference only for a network with one, the
    authors' class only for the original Sudo rm -rf."""
    name = resolve(CONFIGS[config], {})[0]
    missing = {"reference"} if name not in REFERENCES else set()
    missing |= {"authors"} if name != "sudormrf" else set()
    return [v for v in variants if v.split("+")[0] not in missing]


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
                steps = ", ".join(f"{t:.2f}" for t in results[-1].get("steps_s", []))
                print(f"  steps (s): {steps}", flush=True, file=sys.stderr)
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
