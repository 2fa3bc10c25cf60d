"""Is data loading the bottleneck? Mixtures per second per worker against training steps per second.

Composes the real config (same overrides as ``train.py``), then, in one run:

1. times the training data set in this process (what one DataLoader worker does): mixtures/s
   per worker, after a warm-up batch;
2. times a DataLoader with each of ``--workers`` (default 1 2 4) processes (mixtures/s in
   total, worker start-up excluded);
3. times training steps of the configured model on batches of the configured size
   (forward, per-source loss, weighting, backward, Adam:
   ``ugr_experiments.training.loop.train_step``), or takes ``--step-seconds`` as given (e.g.
   a GPU step measured by ``scripts/bench_gpu.py``: 28 mixtures of 4 s per step);
4. prints how many mixtures/s training consumes and how many workers keep up with it, by the
   rule of ``train.num_workers=auto`` (``ugr_experiments/training/workers.py``) with this
   machine's cores, and without the cap.

Example, on the real clips (manifests as in the README's "Data" section)::

    python scripts/bench_data.py dataset=cross paths.manifests=/tmp/manifests
    python scripts/bench_data.py dataset=esc50 paths.manifests=/tmp/manifests --workers 1 2
    python scripts/bench_data.py dataset=cross train.batch_size=28 dataset.segment_seconds=4 \
        --step-seconds 0.25      # would a GPU step of 0.25 s at batch 28 wait for data?

On a machine where workers and training share few cores, the per-worker figure is an upper
bound: workers take cores from the training step.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ugr_experiments.config import to_plain  # noqa: E402
from ugr_experiments.data import build_datasets, collate_mixtures  # noqa: E402
from ugr_experiments.models import build_model  # noqa: E402
from ugr_experiments.training.distributed import resolve_device  # noqa: E402
from ugr_experiments.training.loop import train_step  # noqa: E402
from ugr_experiments.training.workers import HEADROOM, usable_cores, workers_needed  # noqa: E402
from ugr_experiments.weighting import Progress, build_weighting  # noqa: E402


def time_dataset(dataset, n: int, warmup: int) -> float:
    """Mixtures per second of ``dataset`` read in this process (one worker's work)."""
    for i in range(warmup):
        dataset[i % len(dataset)]
    start = time.perf_counter()
    for i in range(n):
        dataset[(warmup + i) % len(dataset)]
    return n / (time.perf_counter() - start)


def time_loader(dataset, batch_size: int, workers: int, batches: int) -> float:
    """Mixtures per second through a DataLoader with ``workers`` processes (startup excluded)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_mixtures
    )
    it = iter(loader)
    next(it)  # workers started and warm
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        try:
            count += len(next(it)["index"])
        except StopIteration:
            break
    return count / (time.perf_counter() - start)


def time_steps(cfg: dict, dataset, steps: int) -> tuple[float, int]:
    """Training steps per second of the configured model; returns (steps/s, parameters)."""
    device = resolve_device(cfg["device"])
    model_cfg = dict(cfg["model"])
    model = build_model(model_cfg.pop("name"), **model_cfg).to(device)
    weighting = build_weighting(cfg["weighting"], dataset.class_names, dataset.group_names)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"])
    batch = collate_mixtures([dataset[i % len(dataset)] for i in range(cfg["train"]["batch_size"])])
    clip = cfg["optim"]["grad_clip"]
    train_step(model, batch, weighting, optimizer, Progress(0, 0), clip, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for k in range(steps):
        train_step(model, batch, weighting, optimizer, Progress(k + 1, 0), clip, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start), sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    parser.add_argument("--mixtures", type=int, default=100, help="mixtures timed per worker")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed")
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2, 4], help="time DataLoaders with N"
    )
    parser.add_argument("--batches", type=int, default=8, help="batches timed per DataLoader")
    parser.add_argument("--step-seconds", type=float, help="a step time to plan for (no timing)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_plain(compose(config_name="config", overrides=args.overrides))
    tr, data_cfg = cfg["train"], cfg["dataset"]
    batch = tr["batch_size"]
    # Each loader is timed over at least 3 batches per worker: the first ones are prefetched.
    n_batches = {n: max(args.batches, 3 * n) for n in args.workers if n > 0}
    size = max(args.mixtures + 64, 256, batch * (max(n_batches.values(), default=0) + 2))
    train_set = build_datasets(data_cfg, cfg["seed"], size)["train"]
    per_worker = time_dataset(train_set, args.mixtures, warmup=batch)
    loaders = {n: time_loader(train_set, batch, n, k) for n, k in n_batches.items()}
    params = None
    if args.step_seconds:
        steps_per_s = 1 / args.step_seconds
    else:
        steps_per_s, params = time_steps(cfg, train_set, args.steps)
    needed = steps_per_s * batch
    cores = usable_cores()
    load_s, step_s = batch / per_worker, 1 / steps_per_s
    fig = {
        "dataset": data_cfg["name"],
        "segment_seconds": data_cfg["segment_seconds"],
        "sample_rate": data_cfg["sample_rate"],
        "batch_size": batch,
        "model": cfg["model"]["name"],
        "parameters": params,
        "device": cfg["device"],
        "torch_threads": torch.get_num_threads(),
        "cores": cores,
        "mixtures_per_s_per_worker": per_worker,
        "loader_mixtures_per_s": loaders,
        "train_steps_per_s": steps_per_s,
        "step_seconds_given": args.step_seconds,
        "mixtures_per_s_needed": needed,
        "workers_needed": math.ceil(HEADROOM * needed / per_worker),
        "workers_auto": workers_needed(load_s, step_s, cores),
    }
    report(fig, data_cfg)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return fig


def report(fig: dict, data_cfg: dict) -> None:
    """Print the figures and the verdict."""
    per_worker, needed = fig["mixtures_per_s_per_worker"], fig["mixtures_per_s_needed"]
    print(
        f"data   {fig['dataset']}: {data_cfg['segment_seconds']} s at {data_cfg['sample_rate']} Hz"
        f" -> {per_worker:8.1f} mixtures/s per worker (in this process)"
    )
    for n, rate in fig["loader_mixtures_per_s"].items():
        print(f"loader {n} worker(s): {rate:8.1f} mixtures/s")
    source = (
        f"given step {fig['step_seconds_given']:g} s"
        if fig["step_seconds_given"]
        else f"{fig['model']} ({fig['parameters']:,} parameters)"
    )
    print(
        f"train  {source}, batch {fig['batch_size']}: {fig['train_steps_per_s']:8.3f} steps/s"
        f" = {needed:8.1f} mixtures/s consumed"
    )
    print(
        f"=> one worker supplies {per_worker / needed:.1f}x what training consumes; workers "
        f"for it with {HEADROOM:g}x headroom: {fig['workers_needed']}; train.num_workers=auto "
        f"here ({fig['cores']} cores): {fig['workers_auto']}"
    )
    if fig["workers_needed"] > max(1, fig["cores"] - 1):
        print("   data loading would limit training on this machine: more cores are needed")


if __name__ == "__main__":
    main()
