"""Training speed on one GPU: ours against the authors' Sudo rm -rf, fp32 / bf16 / compile.

    python scripts/bench_gpu.py --authors-repo ~/sudo_rm_rf            # ~8 minutes on one GPU
    python scripts/bench_gpu.py --authors-repo ~/sudo_rm_rf --networks sudormrf_1x
    python scripts/bench_gpu.py --tiny                                 # CPU, tiny sizes, seconds

For every network of ``ugr_experiments.models.PRESETS`` (the paper's 1.0x first; CPU-sized
presets only when named in ``--networks``), every precision of ``--modes`` (``fp32``, ``bf16``
autocast, ``bf16+compile``: bf16 autocast and ``torch.compile``) and every implementation
(``ours``; for the original Sudo rm -rf also the authors' own class, imported from the clone
given by ``--authors-repo``, never fetched), one process measures at the paper's batch
(``--batch`` 28 x ``--seconds`` 4 s x 8 kHz), with the training step of ``train.py``
(forward, PIT negative SI-SDRi, robust UGR weighting, backward, gradient norm clipped at 5,
fused Adam):

- steps/s: the median of timed steps after ``--warmup`` (compilation included there);
- peak memory of a step (``torch.cuda.max_memory_allocated``);
- the largest batch that fits (eager modes on CUDA: doubling from the paper's batch until
  out of memory, then bisection, up to ``--max-batch``; compiled modes are not searched,
  since every new batch size recompiles);
- the projected wall time of the paper's full run: 120 epochs of 20,000 mixtures at batch 28
  (85,680 steps) divided by steps/s; validation and test passes are not included.

Without ``--authors-repo`` the authors' column is our direct formulation of their network
(``tests/reference_sudormrf.py``, labelled ``reference``), which ``--tiny`` uses: on the CPU
with a tiny network (``fp32`` and ``bf16`` only; ``torch.compile`` on the CPU builds C++ for
minutes), so the test suite runs the script end to end. Every measurement checks the time
left (``--time-limit``, default 480 s) first and is skipped when it cannot finish; the JSON
and the Markdown table are rewritten after each, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

from bench_model import ChannelInput, load_authors_class  # noqa: E402
from reference_sudormrf import ReferenceSuDORMRF  # noqa: E402  (tests/ on the path)

from ugr_experiments.losses import neg_sisdri  # noqa: E402
from ugr_experiments.models import PRESETS, SuDORMRF, build_model  # noqa: E402
from ugr_experiments.weighting import Progress, RobustWeighting, pmf, weighted_loss  # noqa: E402

PAPER_STEPS = 120 * (20_000 // 28)  # 120 epochs of 20,000 mixtures at batch 28
TINY_SIZES = dict(num_blocks=1, upsampling_depth=2, enc_num_basis=32, in_channels=32)
TINY_SIZES |= dict(out_channels=16)
SIZE_KEYS = ("out_channels", "in_channels", "num_blocks", "upsampling_depth")
SIZE_KEYS += ("enc_kernel_size", "enc_num_basis", "num_sources")
_ROBUST = RobustWeighting(alpha=1 / 15)


@dataclass
class Result:
    """One (network, implementation, precision) measurement; None where not measured."""

    network: str
    impl: str
    mode: str
    params: int = 0
    steps_per_s: float | None = None
    peak_gb: float | None = None
    max_batch: int | None = None
    full_run_h: float | None = None
    note: str = ""
    step_s: list[float] = field(default_factory=list)


def build(network: str, impl: str, tiny: bool, authors_repo: str | None) -> nn.Module | None:
    """``network`` in implementation ``impl`` (None: ``impl`` does not exist for it)."""
    sizes = {k: v for k, v in TINY_SIZES.items() if k in PRESETS[network]} if tiny else {}
    torch.manual_seed(0)
    ours = build_model(network, **sizes)
    if impl == "ours":
        return ours
    if not isinstance(ours, SuDORMRF):  # the authors' original class is this network only
        return None
    args = {k: getattr(ours, k) for k in SIZE_KEYS}
    other = load_authors_class(authors_repo)(**args) if authors_repo else ReferenceSuDORMRF(**args)
    other.load_state_dict(ours.state_dict())  # same names and shapes, same weights
    return ChannelInput(other) if authors_repo else other


class Stepper:
    """The training step of one model on one device, for any batch size."""

    def __init__(self, model: nn.Module, mode: str, device: str, length: int) -> None:
        self.model = model.to(device)
        self.run = torch.compile(self.model) if "compile" in mode else self.model
        self.device, self.length, self.bf16 = device, length, "bf16" in mode
        fused = device == "cuda"
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=fused)

    def __call__(self, batch: int) -> float:
        """Seconds of one step at ``batch`` (forward, loss, weighting, backward, clip, Adam)."""
        gen = torch.Generator().manual_seed(batch)
        sources = torch.randn(batch, 2, self.length, generator=gen).to(self.device)
        mix = sources.sum(1)  # (B, T)
        self.sync()
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device, torch.bfloat16, enabled=self.bf16):
            est = self.run(mix)  # (B, S, T)
        loss = neg_sisdri(est.float(), sources, mix)  # (B, S)
        idx = torch.zeros(loss.shape, dtype=torch.long, device=loss.device)
        p = pmf(_ROBUST.scores(loss.detach(), idx, idx, Progress(0, 0)))
        weighted_loss(loss, p).backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.sync()
        return time.perf_counter() - start

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def fits(step: Stepper, batch: int) -> bool:
    """Whether a training step at ``batch`` runs without running out of GPU memory."""
    try:
        step(batch)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        step.opt.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def largest_batch(step: Stepper, start: int, cap: int, deadline: float) -> tuple[int, str]:
    """Doubling from ``start`` until out of memory (or ``cap``), then bisection."""
    ok, bad = 0, None
    batch = start
    while batch <= cap and time.monotonic() < deadline:
        if not fits(step, batch):
            bad = batch
            break
        ok, batch = batch, batch * 2
    if bad is None:
        return ok, f"capped at --max-batch {cap}" if batch > cap else "search stopped (time)"
    while bad - ok > max(1, ok // 16) and time.monotonic() < deadline:
        mid = (ok + bad) // 2
        ok, bad = (mid, bad) if fits(step, mid) else (ok, mid)
    return ok, ""


def measure(res: Result, model: nn.Module, args: argparse.Namespace, deadline: float) -> None:
    """Fill ``res`` with steps/s, peak memory, largest batch and the projected run time."""
    res.params = sum(p.numel() for p in model.parameters())
    step = Stepper(model, res.mode, args.device, round(args.seconds * args.sample_rate))
    for _ in range(args.warmup):
        step(args.batch)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    end = time.monotonic() + args.step_budget
    while len(res.step_s) < args.steps and (not res.step_s or time.monotonic() < end):
        res.step_s.append(step(args.batch))
    if args.device == "cuda":
        res.peak_gb = torch.cuda.max_memory_allocated() / 2**30
    res.steps_per_s = 1 / statistics.median(res.step_s)
    res.full_run_h = PAPER_STEPS / res.steps_per_s / 3600
    if args.device == "cuda" and "compile" not in res.mode:
        res.max_batch, res.note = largest_batch(step, args.batch, args.max_batch, deadline)
    elif "compile" in res.mode:
        res.note = "largest batch not searched (recompiles)"


def plan(args: argparse.Namespace) -> list[Result]:
    """Every measurement, the most important first (the 1.0x network, eager before compiled)."""
    names = args.networks or [n for n in PRESETS if not n.endswith("_cpu")]
    names = sorted(names, key=lambda n: n != "sudormrf_1x")
    impls = ["ours", "authors" if args.authors_repo else "reference"]
    out = [Result(n, i, m) for n in names[:1] for m in args.modes for i in impls]
    return out + [Result(n, i, m) for n in names[1:] for m in args.modes for i in impls]


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    """The results as a Markdown table, with the ours / authors speed ratio."""
    speed = {(r.network, r.impl, r.mode): r.steps_per_s for r in results}
    lines = [
        f"Training step at batch {args.batch} x {args.seconds:g} s x {args.sample_rate} Hz on "
        f"{args.device_name}, torch {torch.__version__}; full run = {PAPER_STEPS:,} steps "
        "(120 epochs of 20,000 mixtures at batch 28), validation excluded.",
        "",
        "| network | implementation | precision | parameters | steps/s | ms/step | peak GB "
        "| largest batch | full run (h) | ours / other | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        other = speed.get((r.network, "authors", r.mode)) or speed.get(
            (r.network, "reference", r.mode)
        )
        ratio = (
            f"{r.steps_per_s / other:.2f}x" if r.impl == "ours" and r.steps_per_s and other else ""
        )
        cells = [
            r.network,
            r.impl,
            r.mode,
            f"{r.params:,}",
            _fmt(r.steps_per_s, "{:.2f}"),
            _fmt(r.steps_per_s and 1000 / r.steps_per_s, "{:.0f}"),
            _fmt(r.peak_gb, "{:.1f}"),
            _fmt(r.max_batch, "{}"),
            _fmt(r.full_run_h, "{:.1f}"),
            ratio,
            r.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def write(results: list[Result], args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: str(v) for k, v in vars(args).items()}
    data = {"args": meta, "paper_steps": PAPER_STEPS, "results": [asdict(r) for r in results]}
    (args.out / "bench_gpu.json").write_text(json.dumps(data, indent=2))
    (args.out / "bench_gpu.md").write_text(markdown(results, args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authors-repo", help="a local clone of etzinis/sudo_rm_rf (their class)")
    p.add_argument("--networks", nargs="+", choices=sorted(PRESETS), help="default: all but _cpu")
    p.add_argument("--modes", nargs="+", choices=["fp32", "bf16", "bf16+compile"])
    p.add_argument("--tiny", action="store_true", help="CPU, tiny network and batch: seconds")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--batch", type=int, default=28)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--steps", type=int, default=20, help="timed steps (at most)")
    p.add_argument("--step-budget", type=float, default=15.0, help="seconds of timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=1024)
    p.add_argument("--time-limit", type=float, default=480.0, help="seconds for everything")
    p.add_argument("--out", type=Path, default=Path("bench_gpu"), help="JSON + Markdown here")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.seconds, args.steps, args.warmup = 2, 0.25, 2, 1
        args.device = args.device or "cpu"
        args.modes = args.modes or ["fp32", "bf16"]
    args.device = args.device or "cuda"
    args.modes = args.modes or ["fp32", "bf16", "bf16+compile"]
    if args.authors_repo:
        try:
            load_authors_class(args.authors_repo)
        except (FileNotFoundError, ImportError, AttributeError) as err:
            p.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU machine, or --tiny (CPU) to check the script")
    args.device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.time_limit
    results = plan(args)
    for res in results:
        left = deadline - time.monotonic()
        need = 90 if "compile" in res.mode and args.device == "cuda" else 10 * (not args.tiny)
        print(f"[{res.network} {res.impl} {res.mode}] ({left:.0f} s left)", file=sys.stderr)
        if left < need:
            res.note = "skipped: time limit"
            continue
        try:
            model = build(res.network, res.impl, args.tiny, args.authors_repo)
            if model is None:
                res.note = "no such implementation"
                continue
            measure(res, model, args, deadline)
        except Exception as err:  # one failure must not lose the other measurements
            res.note = f"error: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        finally:
            torch._dynamo.reset()
            if args.device == "cuda":
                torch.cuda.empty_cache()
        write(results, args)
    results = [r for r in results if r.note != "no such implementation"]
    write(results, args)
    print(markdown(results, args))
    print(f"wrote {args.out / 'bench_gpu.json'} and .md in {time.monotonic() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
