"""Data-parallel training (issue 6): gloo DDP on the CPU equals one process holding the whole
batch; torchrun and a submitit launcher end to end; launcher configs; CUDA paths (skipped
without a GPU)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from conftest import ROOT, TINY, compose_config

import ugr_experiments.training.loop as train_module
from ugr_experiments.config import ConfigError
from ugr_experiments.models import build_model
from ugr_experiments.training import collectives, distributed
from ugr_experiments.training.checkpoint import load_checkpoint
from ugr_experiments.training.loop import train_step
from ugr_experiments.training.parts import build_parts
from ugr_experiments.training.state import ResumableSampler
from ugr_experiments.weighting import Progress, build_weighting

WORLD = 2
MODEL = {
    "num_sources": 2,
    "num_blocks": 1,
    "upsampling_depth": 2,
    "enc_num_basis": 32,
    "in_channels": 32,
    "out_channels": 16,
}
# The other networks, for the robust DDP check (same sizes; the GC form with 4 groups).
OTHER_NETS = {"sudormrf_improved": {}, "sudormrf_gc": {"group_size": 4}}
CLASSES, GROUPS = ["voice", "noise"], ["speech", "environmental"]
WEIGHTINGS = {
    "uniform": {"name": "uniform"},
    "robust": {"name": "robust", "alpha": 0.5},
    "curriculum": {"name": "curriculum", "beta0": -0.5, "length": 10},
    "class": {"name": "class", "gamma": {"speech": 2.0}},
    "cvar": {"name": "cvar", "fraction": 0.25},
    "group_dro": {"name": "group_dro", "eta": 0.5},
    "tilted_groups": {"name": "tilted_groups", "t_in": 0.5, "t_out": 1.0},
}
# Modes whose pmf depends on which items share a rank (uniform does not: 1/N either way).
RANK_SENSITIVE = ("robust", "curriculum", "class", "cvar", "group_dro", "tilted_groups")
DRO_STEPS = 4  # group DRO's state is compared after this many steps
# Float32 sums in another order: gradients (up to ~10 here) agree to ~1e-6 absolute.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
SCALED_ATOL = 1e-5  # x a gradient tensor's largest magnitude: float32 reordering noise
# Adam moves every weight by about lr * sign(g): where g is float noise (the decoder bias: SI-SDR
# ignores offsets, g ~ 1e-6) the sign is noise too, so weights are compared where |g| is not.
NOISE = 1e-4
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ---------------------------------------------------------------------------------------------
# One step, in one process or as one rank
# ---------------------------------------------------------------------------------------------


def global_batch(nan_mixture: int | None = None, seed: int = 0) -> dict[str, Any]:
    """4 mixtures of 2 random sources at random levels (so the losses differ).

    Under 2 ranks, rank 0 holds mixtures 0 and 2 (3 speech sources of 4), rank 1 mixtures 1
    and 3 (no speech), so per-rank class weights would differ from global ones.
    """
    gen = torch.Generator().manual_seed(seed)
    scale = 0.1 + 2.0 * torch.rand(4, 2, 1, generator=gen)
    sources = scale * torch.randn(4, 2, 800, generator=gen)  # (B, S, T)
    mixture = sources.sum(1)  # (B, T)
    if nan_mixture is not None:
        mixture[nan_mixture] = float("nan")
    classes = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 1]])
    return {"mixture": mixture, "sources": sources, "class_idx": classes, "group_idx": classes}


def rank_slice(batch: dict[str, Any], rt: distributed.Runtime) -> dict[str, Any]:
    """This rank's items, chosen by the training sampler itself."""
    index = torch.tensor(list(ResumableSampler(4, rt.rank, rt.world_size)))
    return {key: value[index] for key, value in batch.items()}


def one_step(
    mode: str,
    batch: dict[str, Any],
    rt: distributed.Runtime,
    fused: bool = False,
    net: str = "sudormrf",
) -> dict[str, Any]:
    """Same initial weights, one train_step; the gradients and the updated weights."""
    torch.manual_seed(0)
    model = build_model(net, **MODEL, **OTHER_NETS.get(net, {})).to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    weighting = build_weighting(WEIGHTINGS[mode], CLASSES, GROUPS)
    train_model = distributed.wrap_model(model, rt)
    out = train_step(train_model, batch, weighting, optimizer, Progress(0, 0), None, rt.device, rt)
    params = list(model.parameters())
    return {
        "grads": [torch.zeros_like(p) if p.grad is None else p.grad.cpu() for p in params],
        "weights": [p.detach().cpu().clone() for p in params],
        "finite": bool(out.finite),
        "loss": float(out.loss),
        "sisdri": float(out.sisdri),
    }


def dro_steps(rt: distributed.Runtime) -> dict[str, Any]:
    """``DRO_STEPS`` group DRO steps on different batches: the state ``log q`` and weights."""
    torch.manual_seed(0)
    model = build_model("sudormrf", **MODEL).to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    weighting = build_weighting(WEIGHTINGS["group_dro"], CLASSES, GROUPS)
    train_model = distributed.wrap_model(model, rt)
    for step in range(DRO_STEPS):
        batch = global_batch(seed=step)
        if rt.distributed:
            batch = rank_slice(batch, rt)
        batch = {key: value.to(rt.device) for key, value in batch.items()}
        train_step(train_model, batch, weighting, optimizer, Progress(step, 0), None, rt.device, rt)
    return {
        "log_q": weighting.state_dict()["log_q"],
        "weights": [p.detach().cpu().clone() for p in model.parameters()],
    }


@contextlib.contextmanager
def per_rank_pmf() -> Iterator[None]:
    """The mistake the DDP tests must catch: each rank normalises its own scores."""
    original = train_module.batch_pmf
    train_module.batch_pmf = lambda w, loss, c, g, progress, *_: original(w, loss, c, g, progress)
    try:
        yield
    finally:
        train_module.batch_pmf = original


def _rank_work(rt: distributed.Runtime) -> dict[str, Any]:
    local = rank_slice(global_batch(), rt)
    local = {key: value.to(rt.device) for key, value in local.items()}
    results: dict[str, Any] = {mode: one_step(mode, local, rt) for mode in WEIGHTINGS}
    results["dro_steps"] = dro_steps(rt)
    with per_rank_pmf():
        for mode in RANK_SENSITIVE:
            results[f"{mode}/per_rank"] = one_step(mode, local, rt)
    for net in OTHER_NETS:
        results[f"{net}/robust"] = one_step("robust", local, rt, net=net)
    bad = rank_slice(global_batch(nan_mixture=1), rt)  # only rank 1 sees a NaN
    bad = {key: value.to(rt.device) for key, value in bad.items()}
    results["nan/local_finite"] = bool(torch.isfinite(bad["mixture"]).all())
    results["nan/host"] = one_step("uniform", bad, rt)
    results["nan/fused"] = one_step("uniform", bad, rt, fused=True)
    rows = pd.DataFrame({"mixture": [2 * rt.rank, 2 * rt.rank + 1], "rank": rt.rank})
    results["rows"] = collectives.gather_rows(rows, rt).to_dict("list")
    results["path"] = str(collectives.shared_path(Path(f"/run/of/rank{rt.rank}"), rt))
    p = torch.full((3,), 1.0 / 6.0, device=rt.device)
    groups = torch.full((3,), rt.rank, device=rt.device)
    p_all, groups_all = collectives.global_pmf(p, groups, rt)
    results["pmf_sum"], results["groups"] = float(p_all.sum()), groups_all.tolist()
    results["any"] = [collectives.any_rank(rt.rank == 1, rt), collectives.any_rank(False, rt)]
    collectives.barrier(rt)
    return results


def _worker(rank: int, init_file: str, out_dir: str, device: str) -> None:
    """One of ``WORLD`` processes: join the group (file rendezvous), do every check, save."""
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        rt = distributed.setup(device)
        torch.save(_rank_work(rt), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def spawn_ranks(tmp: Path, device: str) -> list[dict[str, Any]]:
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp), device), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Two gloo processes, each holding half of the global batch."""
    return spawn_ranks(tmp_path_factory.mktemp("gloo"), "cpu")


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    """One process holding the whole global batch."""
    rt = distributed.Runtime()
    results = {mode: one_step(mode, global_batch(), rt) for mode in WEIGHTINGS}
    for net in OTHER_NETS:
        results[f"{net}/robust"] = one_step("robust", global_batch(), rt, net=net)
    return results


def assert_same_step(got: dict[str, Any], want: dict[str, Any]) -> None:
    for a, b in zip(got["grads"], want["grads"], strict=True):
        # Summing a batch of 2 per rank or 4 in one process reorders float32 sums (oneDNN
        # splits them across threads by batch size): the error scales with the tensor's
        # largest entry (the encoder's gradient reaches ~50; 1.8e-4 apart was seen).
        atol = max(TOLERANCE["atol"], SCALED_ATOL * float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=TOLERANCE["rtol"], atol=atol)
    compared = 0
    for a, b, g in zip(got["weights"], want["weights"], want["grads"], strict=True):
        signal = g.abs() > NOISE
        torch.testing.assert_close(a[signal], b[signal], rtol=0.0, atol=1e-6)
        compared += int(signal.sum())
    assert compared > 0.95 * sum(w.numel() for w in want["weights"])
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert got["sisdri"] == pytest.approx(want["sisdri"], rel=1e-5, abs=1e-6)


def relative_gap(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    a, b = torch.cat([g.reshape(-1) for g in got]), torch.cat([w.reshape(-1) for w in want])
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------
# DDP on the CPU (gloo) equals one process
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(WEIGHTINGS))
def test_ddp_step_equals_one_process_holding_the_global_batch(ranks, single, mode):
    """Gradients, updated weights and logged figures of both ranks = the single process's."""
    for rank in ranks:
        assert rank[mode]["finite"]
        assert_same_step(rank[mode], single[mode])


@pytest.mark.parametrize("net", list(OTHER_NETS))
def test_ddp_step_of_the_other_networks_equals_one_process(ranks, single, net):
    """SuDoRM-RF++ and its GC form under DDP: robust weighting, the single process's step."""
    for rank in ranks:
        assert_same_step(rank[f"{net}/robust"], single[f"{net}/robust"])


def test_group_dro_state_is_the_same_on_every_rank_and_as_one_process(ranks):
    """After several steps on different batches, ``log q`` is bit-identical on both ranks
    (computed from the gathered losses) and equals the single process's; so do the weights."""
    want = dro_steps(distributed.Runtime())
    assert torch.equal(ranks[0]["dro_steps"]["log_q"], ranks[1]["dro_steps"]["log_q"])
    assert not torch.equal(want["log_q"], torch.full_like(want["log_q"], want["log_q"][0]))
    torch.testing.assert_close(ranks[0]["dro_steps"]["log_q"], want["log_q"], rtol=1e-5, atol=1e-7)
    # Weights where the gradient is float noise move by +-lr per step either way (see NOISE):
    # nearly all of them agree.
    got = torch.cat([w.reshape(-1) for w in ranks[0]["dro_steps"]["weights"]])
    ref = torch.cat([w.reshape(-1) for w in want["weights"]])
    assert float(((got - ref).abs() < 1e-5).float().mean()) > 0.99


@pytest.mark.parametrize("mode", RANK_SENSITIVE)
def test_normalising_per_rank_would_differ(ranks, single, mode):
    """The check above can fail: a per-rank softmax moves the gradient far beyond tolerance."""
    ok = relative_gap(ranks[0][mode]["grads"], single[mode]["grads"])
    wrong = relative_gap(ranks[0][f"{mode}/per_rank"]["grads"], single[mode]["grads"])
    assert ok < 1e-5
    assert wrong > 1e-2, f"per-rank normalisation changed the gradient by only {wrong:.1e}"


@pytest.mark.parametrize("optimizer", ["host", "fused"])
def test_nonfinite_loss_on_one_rank_skips_the_step_on_all(ranks, single, optimizer):
    """Rank 1 alone sees a NaN mixture; both ranks skip (and nobody hangs)."""
    assert ranks[0]["nan/local_finite"] and not ranks[1]["nan/local_finite"]
    torch.manual_seed(0)
    initial = [p.detach() for p in build_model("sudormrf", **MODEL).parameters()]
    for rank in ranks:
        out = rank[f"nan/{optimizer}"]
        assert not out["finite"]
        for got, want in zip(out["weights"], initial, strict=True):
            assert torch.equal(got, want)


def test_collectives_gather_in_item_order_and_share_rank0_values(ranks):
    for rank in ranks:
        assert rank["rows"] == {"mixture": [0, 1, 2, 3], "rank": [0, 0, 1, 1]}
        assert rank["path"] == "/run/of/rank0"
        assert rank["pmf_sum"] == pytest.approx(1.0)
        assert rank["groups"] == [0, 0, 0, 1, 1, 1]
        assert rank["any"] == [True, False]


# ---------------------------------------------------------------------------------------------
# Single-process behaviour and the pieces, without a process group
# ---------------------------------------------------------------------------------------------


def _old_train_step(model, batch, weighting, optimizer) -> torch.Tensor:
    """The train step before DDP support, verbatim in substance (the bit-identity reference)."""
    from ugr_experiments.losses import neg_sisdri
    from ugr_experiments.weighting import pmf, to_units, weighted_loss

    loss = neg_sisdri(model(batch["mixture"]), batch["sources"], batch["mixture"])
    units, classes, groups = to_units(loss, batch["class_idx"], batch["group_idx"], "sources")
    p = pmf(weighting.scores(units.detach(), classes, groups, Progress(0, 0)))
    total = weighted_loss(units, p)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return total.detach()


def test_single_process_step_is_bit_identical_to_before():
    weighting = build_weighting(WEIGHTINGS["robust"], CLASSES, GROUPS)
    results = []
    for step in (_old_train_step, None):
        torch.manual_seed(0)
        model = build_model("sudormrf", **MODEL)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            if step is None:
                args = (Progress(0, 0), 5.0, torch.device("cpu"))
                total = train_step(model, global_batch(), weighting, optimizer, *args).loss
            else:
                total = step(model, global_batch(), weighting, optimizer)
        results.append((total, [p.detach().clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


@pytest.mark.parametrize("fused", [False, True])
def test_nonfinite_step_is_skipped_in_one_process(fused):
    out = one_step("robust", global_batch(nan_mixture=0), distributed.Runtime(), fused=fused)
    torch.manual_seed(0)
    initial = [p.detach() for p in build_model("sudormrf", **MODEL).parameters()]
    assert not out["finite"]
    assert all(torch.equal(a, b) for a, b in zip(out["weights"], initial, strict=True))


def test_fused_skip_leaves_no_flag_on_the_optimizer():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=0.1, fused=True)
    param.grad = torch.ones(3)
    rt = distributed.Runtime()
    taken = collectives.step_if_finite(optimizer, torch.tensor(1.0), torch.tensor(1.0), rt)
    assert bool(taken) and not hasattr(optimizer, "found_inf")
    assert not torch.equal(param.detach(), torch.ones(3))


@pytest.mark.parametrize(("batch", "world", "fix"), [(6, 4, 8), (28, 8, 32), (2, 4, 4)])
def test_global_batch_that_the_world_size_does_not_divide_is_refused(batch, world, fix):
    with pytest.raises(ConfigError, match=rf"batch_size={batch} is the global batch.*{world} "):
        distributed.per_rank_batch(batch, world)
    with pytest.raises(ConfigError, match=rf"train.batch_size={fix}"):
        distributed.per_rank_batch(batch, world)
    assert distributed.per_rank_batch(28, 4) == 7


def test_build_refuses_the_batch_before_building_anything(monkeypatch):
    rt = distributed.Runtime(rank=0, world_size=2)
    monkeypatch.setattr(distributed, "setup", lambda *args: rt)
    cfg = train_module.to_plain(compose_config(TINY + ["train.batch_size=3"]))
    with pytest.raises(ConfigError, match="train.batch_size=3 is the global batch"):
        build_parts(cfg, Path("unused"))


def test_ranks_read_exactly_the_global_batches_of_one_process():
    """Step k of W ranks covers items kB .. (k+1)B-1, also when an epoch resumes mid-way."""
    global_b, steps = 4, 3
    for start in (0, global_b):
        per_rank = []
        for rank in range(WORLD):
            sampler = ResumableSampler(global_b * steps, rank, WORLD)
            sampler.start = start
            items = list(sampler)
            per_rank.append([items[i : i + 2] for i in range(0, len(items), 2)])
        for k, batches in enumerate(zip(*per_rank, strict=True)):
            first = start + k * global_b
            assert sorted(sum(batches, [])) == list(range(first, first + global_b))


def test_evaluation_shards_are_contiguous_and_cover_the_set():
    shards = [distributed.shard(range(7), distributed.Runtime(r, 3)) for r in range(3)]
    assert shards == [[0, 1], [2, 3], [4, 5, 6]]
    assert distributed.shard(range(7), distributed.Runtime()) is None


def test_precision_and_device_options():
    cpu = torch.device("cpu")
    assert distributed.check_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="bf16 needs CUDA.*train.precision=fp32"):
        distributed.check_precision("bf16", cpu)
    with pytest.raises(ConfigError, match=r"unsupported train.precision: 'fp16'"):
        distributed.check_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="device must be one of"):
        distributed.resolve_device("tpu")
    assert isinstance(distributed.autocast(distributed.Runtime()), contextlib.nullcontext)
    assert distributed.Runtime().fused is None  # CPU: the default (foreach) Adam


def test_config_keys_and_cpu_refusal_of_bf16():
    cfg = compose_config(TINY)
    assert cfg.train.precision == "fp32" and cfg.train.compile is False
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="bf16 needs CUDA"):
            distributed.setup("auto", "bf16")


def test_wrap_model_in_one_process_is_the_model_itself():
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, distributed.Runtime()) is model
    with pytest.raises(ConfigError, match="train.compile must be true or false"):
        distributed.wrap_model(model, distributed.Runtime(), compile="yes")  # type: ignore[arg-type]


def test_other_ranks_write_nothing(tmp_path):
    worker = distributed.Runtime(rank=1, world_size=2)
    writer = collectives.make_writer(tmp_path / "tb", worker, purge_step=3)
    writer.add_scalar("x", 1.0, 0)
    writer.add_audio("y", torch.zeros(10), 0, sample_rate=8000)
    writer.close()
    collectives.save_on_main({"a": torch.zeros(1)}, tmp_path / "c.pt", worker)
    assert not any(tmp_path.iterdir())


def test_shared_run_dir_callback_is_a_no_op_in_one_process():
    cfg = compose_config(TINY)
    callback = distributed.SharedRunDir()
    callback.on_run_start(config=cfg)
    callback.on_job_start(config=cfg, task_function=print)  # every other hook: nothing
    with pytest.raises(AttributeError):
        callback.not_a_hook  # noqa: B018


def test_submitit_task_environment_becomes_torch_env(monkeypatch):
    """A SLURM task started by submitit (Hydra's submitit launcher) joins as its global rank."""
    pytest.importorskip("submitit")
    env = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "123",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    monkeypatch.setattr(os, "environ", env)
    assert distributed.launch_env() == (5, 8, 1)
    assert env["MASTER_ADDR"] == "gpu07" and int(env["MASTER_PORT"]) > 0


# ---------------------------------------------------------------------------------------------
# Launcher configs
# ---------------------------------------------------------------------------------------------


def compose_hydra(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_submitit_slurm_config_composes_one_task_per_gpu():
    """Composes whether or not the plugin is installed (the yaml carries its _target_)."""
    launcher = compose_hydra(["hydra/launcher=submitit_slurm"]).hydra.launcher
    assert launcher._target_.endswith("hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == launcher.tasks_per_node == 4
    assert launcher.nodes == 1 and launcher.timeout_min == 1440
    cfg = compose_hydra(["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=8"])
    assert cfg.hydra.launcher.tasks_per_node == 8


def test_joblib_config_composes():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    launcher = compose_hydra(["hydra/launcher=joblib"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")


def test_submitit_slurm_launcher_submits_one_multi_gpu_job_per_sweep_point(tmp_path, monkeypatch):
    """The plugin's own launch() with our config, up to the sbatch script (no cluster)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit
    from hydra.utils import instantiate

    fake_srun = tmp_path / "bin" / "srun"  # submitit checks that SLURM is there
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}{os.pathsep}{os.environ['PATH']}")
    scripts: list[str] = []

    def map_array(self: Any, fn: Any, *args: Any) -> list[Any]:
        scripts.append(self._executor._make_submission_file_text("python train.py", "uid"))
        return [_FakeJob() for _ in args[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    overrides = [f"hydra.sweep.dir={tmp_path}/sweep", "hydra.launcher.gpus_per_node=2"]
    cfg = compose_hydra(["hydra/launcher=submitit_slurm", "hydra.job.name=train", *overrides])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["alpha=0"], ["alpha=0.1"], ["alpha=0.2"]], initial_job_idx=0)
    assert len(scripts) == 1  # one array of three jobs
    assert "#SBATCH --gpus-per-node=2" in scripts[0]
    assert "#SBATCH --ntasks-per-node=2" in scripts[0]
    assert "#SBATCH --time=1440" in scripts[0]


class _FakeJob:
    def results(self) -> list[None]:
        return [None]


# ---------------------------------------------------------------------------------------------
# End to end (slow): torchrun, and submitit's local executor standing in for SLURM
# ---------------------------------------------------------------------------------------------


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def check_ddp_run_dir(run_dir: Path, n_test: int = 4) -> pd.DataFrame:
    rows = pd.read_csv(run_dir / "per_source_sisdri.csv")
    assert len(rows) == 2 * n_test and not rows.duplicated(["mixture", "source"]).any()
    assert list(rows["mixture"]) == sorted(rows["mixture"])  # gathered in item order
    assert (run_dir / "sisdri_table.csv").is_file() and (run_dir / "history.csv").is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == WORLD
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in state["model"])
    spec = yaml.safe_load(state["config"])["model"]
    model = build_model(spec.pop("name"), **spec)
    model.load_state_dict(state["model"])  # loads in one process: any world size
    return rows


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_one_run_dir_with_one_table(tmp_path):
    """`torchrun --nproc_per_node=2 train.py ...` with gloo; the run dir pattern has
    microseconds, so ranks that resolved it on their own would make two directories."""
    args = [*TINY, "train.batch_size=4", "weighting=robust", "alpha=0.2"]
    run_dir = f"hydra.run.dir={tmp_path}/runs/" + "${now:%H-%M-%S-%f}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    out = _run([*torchrun, f"--nproc_per_node={WORLD}", "train.py", *args, run_dir])
    (run,) = list((tmp_path / "runs").iterdir())
    assert (run / ".hydra" / "config.yaml").is_file()
    ddp_rows = check_ddp_run_dir(run)
    assert out.stdout.count("Test SI-SDRi") == 1  # rank 0 alone prints the table
    one = _run([sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path}/one"])
    assert "Test SI-SDRi" in one.stdout
    one_rows = pd.read_csv(tmp_path / "one" / "per_source_sisdri.csv")
    pd.testing.assert_series_equal(ddp_rows["sisdri"], one_rows["sisdri"], atol=0.05, rtol=0)


@pytest.mark.slow
def test_torchrun_sweep_shares_one_sweep_dir(tmp_path):
    """`torchrun ... train.py -m`: each rank runs the sweep's jobs in turn, in one sweep dir."""
    args = ["-m", *TINY, "train.batch_size=4", "weighting=robust", "alpha=0,0.2"]
    sweep_dir = f"hydra.sweep.dir={tmp_path}/sweeps/" + "${now:%H-%M-%S-%f}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _run([*torchrun, f"--nproc_per_node={WORLD}", "train.py", *args, sweep_dir])
    (sweep,) = list((tmp_path / "sweeps").iterdir())
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        check_ddp_run_dir(sweep / job)


@pytest.mark.slow
def test_submitit_local_job_runs_two_processes_as_on_slurm(tmp_path):
    """The SLURM path on the CPU: submitit's local executor starts 2 tasks for the sweep point,
    which join one gloo group from submitit's environment, as a SLURM job's tasks do."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = ["hydra/launcher=submitit_local", f"hydra.launcher.tasks_per_node={WORLD}"]
    args = [*TINY, "train.batch_size=4", "weighting=robust", "alpha=0.2"]
    _run([sys.executable, "train.py", "-m", *launcher, *args, f"hydra.sweep.dir={tmp_path}"])
    assert [p.name for p in tmp_path.iterdir() if p.name.isdigit()] == ["0"]
    check_ddp_run_dir(tmp_path / "0")


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------


@CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_train_step_never_waits_for_the_gpu(precision):
    """bf16 autocast, fused Adam, pinned batch: no host-device sync inside train_step."""
    rt = distributed.Runtime(device=torch.device("cuda"), precision=precision)
    torch.manual_seed(0)
    model = build_model("sudormrf", **MODEL).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=rt.fused)
    weighting = build_weighting(WEIGHTINGS["class"], CLASSES, GROUPS)
    batch = {key: value.pin_memory() for key, value in global_batch().items()}
    args = (weighting, optimizer, Progress(0, 0), 5.0, rt.device, rt)
    train_step(model, batch, *args)  # warm-up: lookup tables, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = train_step(model, batch, *args)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(out.finite) and torch.isfinite(out.loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@CUDA
@pytest.mark.gpu
def test_cuda_nonfinite_step_is_skipped_on_the_device():
    rt = distributed.Runtime(device=torch.device("cuda"))
    bad = {k: v.cuda() for k, v in global_batch(nan_mixture=0).items()}
    out = one_step("robust", bad, rt, fused=True)
    torch.manual_seed(0)
    initial = [p.detach() for p in build_model("sudormrf", **MODEL).parameters()]
    assert not out["finite"]
    assert all(torch.equal(a, b) for a, b in zip(out["weights"], initial, strict=True))


@CUDA
@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_compiled_bf16_run(tmp_path):
    args = [*TINY, "device=cuda", "train.precision=bf16", "train.compile=true"]
    train_module.run(compose_config(args), tmp_path)
    assert (tmp_path / "sisdri_table.csv").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < WORLD, reason=f"needs {WORLD} GPUs")
def test_nccl_ddp_step_equals_one_process(tmp_path, single):
    for rank in spawn_ranks(tmp_path, "cuda"):
        for mode in WEIGHTINGS:
            for key in ("grads", "weights"):
                for a, b in zip(rank[mode][key], single[mode][key], strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
