"""Score a model on a fixed set of mixtures: one row per (mixture, source); ``ugr-evaluate``.

:func:`evaluate_rows` is what training calls each epoch and at the end. The command line
(``ugr-evaluate``, also ``python -m ugr_experiments.inference.evaluate``) runs the same
evaluation on a checkpoint, a run directory or an export, and writes what the end of training
writes:
``per_source_sisdri.csv`` and ``sisdri_table.{csv,md,tex}`` (plus ``evaluation.json``, what
produced them)::

    ugr-evaluate outputs/2025-01-01/12-00-00 -o eval/                 # the run's own test set
    ugr-evaluate model.pt --dataset esc50 -o eval/ dataset.n_test=500  # another data set
    ugr-evaluate model.pt --manifest manifests/esc50.csv -o eval/      # a manifest

By default the data set, the seed (hence the test mixtures) and the batch size are the run's
own, and the ``epoch`` column is the checkpoint's epoch: on a run's ``best.pt`` (the default
protocol, ``eval.last_epochs=0``) the outputs are those of the end of training, byte for byte
on the same device. Runs tested at their last N epochs average N tables: evaluate each
epoch's checkpoint instead. Outputs are written to a temporary folder and moved into place at
the end, so a failure leaves nothing partial; existing outputs need ``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from ugr_experiments.data.audio import AudioDecodeError
from ugr_experiments.inference.export import (
    LoadedModel,
    ModelFileError,
    OutputError,
    load_model,
    make_output_dir,
    remove_empty_dirs,
)
from ugr_experiments.losses import pit_align, sisdri

log = logging.getLogger(__name__)

ROW_COLUMNS = [
    "epoch",
    "mixture",
    "source",
    "class",
    "group",
    "file",
    "offset",
    "snr_db",
    "sisdr",
    "input_sisdr",
    "sisdri",
]
OUTPUT_FILES = (
    "per_source_sisdri.csv",
    "sisdri_table.csv",
    "sisdri_table.md",
    "sisdri_table.tex",
    "evaluation.json",
)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# The dataset config a manifest's groups select when the model's own dataset has no manifests.
DATASET_OF_GROUPS = {
    ("environmental",): "esc50",
    ("speech",): "speech",
    ("environmental", "speech"): "cross",
}


@torch.no_grad()
def evaluate_rows(
    model: torch.nn.Module,
    batches: Iterable[dict[str, Any]],
    device: torch.device | str = "cpu",
    epoch: int = -1,
    progress: bool = False,
    desc: str = "eval",
) -> pd.DataFrame:
    """Per-source SI-SDR, input SI-SDR and SI-SDRi of ``model`` on ``batches``.

    Args:
        model: maps mixtures (B, T) to estimates (B, S, T).
        batches: collated batches (see ``ugr_experiments.data.base``).
        device: where the model runs.
        epoch: written in the ``epoch`` column (the evaluation epoch; -1 for a one-off).
        progress: show a progress bar.

    Returns:
        One row per (mixture, source) with the columns of ``ROW_COLUMNS``; the source index is
        the reference's, after permutation-invariant alignment of the estimates.
    """
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        mix = batch["mixture"].to(device)  # (B, T)
        ref = batch["sources"].to(device)  # (B, S, T)
        est = model(mix).float()  # (B, S, T)
        sdr, base, _ = sisdri(est, ref, mix)  # (B, S) each
        sdr, base = sdr.cpu().tolist(), base.cpu().tolist()
        for b, (index, info) in enumerate(zip(batch["index"], batch["info"], strict=True)):
            for s, meta in enumerate(info):
                rows.append(
                    {
                        "epoch": epoch,
                        "mixture": index,
                        "source": s,
                        "class": meta["class"],
                        "group": meta["group"],
                        "file": meta["file"],
                        "offset": meta["offset"],
                        "snr_db": meta["snr_db"],
                        "sisdr": sdr[b][s],
                        "input_sisdr": base[b][s],
                        "sisdri": sdr[b][s] - base[b][s],
                    }
                )
    model.train(was_training)
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


# ---------------------------------------------------------------------------------------------
# TensorBoard audio
# ---------------------------------------------------------------------------------------------


def playable(x: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale a clip to ``peak`` (TensorBoard clips audio outside [-1, 1]).

    Shape:
        x (T,) -> (1, T)
    """
    return (x / x.abs().max().clamp_min(1e-8) * peak).reshape(1, -1)


@torch.no_grad()
def log_audio(
    writer: Any,
    model: torch.nn.Module,
    batch: dict[str, Any],
    step: int,
    sample_rate: int,
    n: int = 2,
) -> None:
    """Log the first ``n`` mixtures of ``batch`` and their estimates as TensorBoard audio.

    Tags ``valid_audio/<i>/mixture`` and ``valid_audio/<i>/estimate<k>``; estimate ``k``
    is aligned (PIT) to reference ``k``, so a tag keeps following the same source across
    epochs. Each clip is peak-normalised to be audible. Does nothing when ``writer`` is None
    (e.g. DDP ranks other than 0); a DDP-wrapped model is unwrapped, so no collective runs.
    """
    if writer is None or n <= 0:
        return
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    mix = batch["mixture"][:n]  # (n, T)
    est = net(mix.to(device)).float().cpu()  # (n, S, T)
    net.train(was_training)
    est, _ = pit_align(est, batch["sources"][:n].float())
    for i in range(mix.shape[0]):
        writer.add_audio(f"valid_audio/{i}/mixture", playable(mix[i]), step, sample_rate)
        for k in range(est.shape[1]):
            tag = f"valid_audio/{i}/estimate{k + 1}"
            writer.add_audio(tag, playable(est[i, k]), step, sample_rate)


def first_items(loader: DataLoader, n: int = 2) -> dict[str, Any]:
    """The first ``n`` items of ``loader``'s data set, collated.

    Read straight from the data set: creating a DataLoader iterator would draw from the
    global torch RNG and change the rest of the run.
    """
    items = [loader.dataset[i] for i in range(min(n, len(loader.dataset)))]
    return loader.collate_fn(items)


def audio_due(every: int | None, epoch: int) -> bool:
    """True after every ``every``-th epoch (``epoch`` counts from 0); 0 or None: never."""
    return bool(every) and (epoch + 1) % int(every) == 0


# ---------------------------------------------------------------------------------------------
# Which data set to evaluate on
# ---------------------------------------------------------------------------------------------


def load_dataset_config(spec: str) -> dict[str, Any]:
    """A dataset config: a name under ``conf/dataset/`` or a YAML file, resolved to plain values.

    The YAML file may also be a whole config (e.g. a run's ``config.yaml``): its ``dataset``.

    ``${paths.manifests}`` in it resolves as in training (environment variable
    ``UGR_MANIFESTS``, else ``./manifests``).
    """
    from omegaconf import OmegaConf  # only the entry points touch OmegaConf

    path = Path(spec)
    if not path.is_file() and not (CONF_DIR / "config.yaml").is_file():
        raise ValueError(
            f"--dataset {spec!r}: no such YAML file, and no config tree at {CONF_DIR} to look "
            "the name up in (install the project editable, or give a dataset YAML file)"
        )
    if not path.is_file():
        path = CONF_DIR / "dataset" / f"{spec}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
            raise ValueError(
                f"--dataset {spec!r} is neither a YAML file nor a config under {CONF_DIR}/dataset; "
                f"choose from {names} or give the path of a dataset YAML file"
            )
    node = OmegaConf.load(path)
    if "dataset" in node and "name" not in node:  # a whole config, e.g. a run's config.yaml
        node = node.dataset
    root = OmegaConf.load(CONF_DIR / "config.yaml")
    merged = OmegaConf.create({"paths": root.get("paths", {}), "dataset": node})
    return OmegaConf.to_container(merged.dataset, resolve=True)


def manifest_groups(path: str) -> list[str]:
    """The groups (speech / environmental) a manifest lists."""
    from ugr_experiments.data.manifest import read_manifest

    return sorted(set(read_manifest(path).table["group"]))


def apply_manifests(dataset: dict[str, Any], manifests: Sequence[str], chosen: bool) -> dict:
    """Point ``dataset.manifests.<group>`` at each manifest, with the root it records.

    A dataset without manifests (synthetic) becomes the corpus dataset of the manifests'
    groups (esc50, speech or cross; ``--dataset random_mix`` for the other), keeping the
    model's segment length, number of sources and SNR range, unless ``--dataset`` chose one.
    """
    from ugr_experiments.data.corpus import GROUPS_OF

    groups = {m: manifest_groups(m) for m in manifests}
    found = tuple(sorted({g for gs in groups.values() for g in gs}))
    if "manifests" not in dataset and not chosen:
        if found not in DATASET_OF_GROUPS:
            raise ValueError(f"manifests {list(manifests)} hold groups {found}; pass --dataset")
        dataset = {**load_dataset_config(DATASET_OF_GROUPS[found]), **_mixing(dataset)}
    allowed = GROUPS_OF.get(dataset.get("name"), ())
    if set(found) - set(allowed):
        raise ValueError(
            f"dataset {dataset.get('name')!r} reads {list(allowed)} manifests, but "
            f"{list(manifests)} hold {list(found)}: pass a matching --dataset (esc50, speech, "
            "cross, random_mix)"
        )
    dataset["manifests"] = dict(dataset.get("manifests") or {})
    dataset["roots"] = dict(dataset.get("roots") or {})
    for path, gs in groups.items():
        for group in gs:
            dataset["manifests"][group], dataset["roots"][group] = path, None
    return dataset


def _mixing(dataset: dict[str, Any]) -> dict[str, Any]:
    """The mixing options a corpus dataset inherits from the model's own dataset."""
    keys = ("segment_seconds", "n_sources", "snr_db")
    return {k: dataset[k] for k in keys if k in dataset}


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``KEY=VALUE`` pairs (values parsed as YAML); keys ``seed`` or ``dataset.<...>``."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not (key == "seed" or key.startswith("dataset.")):
            raise ValueError(
                f"override {item!r}: expected seed=N or dataset.<key>=<value> "
                "(e.g. dataset.n_test=500); use --dataset to pick another data set"
            )
        parsed.append((key.split("."), yaml.safe_load(value)))
    return parsed


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


@dataclass
class EvalOptions:
    """What ``ugr-evaluate`` evaluates on and how; None means the run's own value."""

    dataset: str | None = None
    manifests: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    split: str = "test"
    batch_size: int | None = None
    workers: int = 0
    epoch: int | None = None
    progress: bool = True
    overwrite: bool = False


def eval_config(loaded: LoadedModel, opts: EvalOptions) -> dict[str, Any]:
    """``{"dataset", "seed", "batch_size", "epoch"}`` for this evaluation (see EvalOptions)."""
    run = loaded.train_config or {}
    if opts.dataset:
        dataset = load_dataset_config(opts.dataset)
    elif "dataset" in run:
        dataset = copy.deepcopy(run["dataset"])
    elif opts.manifests:
        dataset = {}
    else:
        raise ValueError(
            f"{loaded.path} does not record the data set it was trained on; "
            "pass --dataset <name or YAML file> or --manifest <manifest.csv>"
        )
    if opts.manifests:
        dataset = apply_manifests(dataset, opts.manifests, chosen=bool(opts.dataset))
    cfg = {"dataset": dataset, "seed": int(run.get("seed", 0))}
    for keys, value in parse_overrides(opts.overrides):
        _set(cfg, keys, value)
    check_dataset(cfg["dataset"], loaded)
    batch = opts.batch_size or (run.get("eval") or {}).get("batch_size") or 16
    epoch = opts.epoch if opts.epoch is not None else loaded.epoch
    return {**cfg, "batch_size": int(batch), "epoch": -1 if epoch is None else int(epoch)}


def check_dataset(dataset: dict[str, Any], loaded: LoadedModel) -> None:
    """Mixtures at the model's rate, with the model's number of sources (in place)."""
    rate = dataset.get("sample_rate")
    if rate != loaded.sample_rate:
        log.info("dataset.sample_rate %s -> %d (the model's rate)", rate, loaded.sample_rate)
        dataset["sample_rate"] = loaded.sample_rate
    if int(dataset.get("n_sources", loaded.num_sources)) != loaded.num_sources:
        raise ValueError(
            f"the data set mixes {dataset['n_sources']} sources but the model separates "
            f"{loaded.num_sources}; set dataset.n_sources={loaded.num_sources}"
        )


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


def check_outputs(out_dir: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{out_dir} already holds {existing}; pass --overwrite to replace them, "
            "or choose another --output folder"
        )


def table_title(split: str) -> str:
    return "Test SI-SDRi (dB)" if split == "test" else "Validation SI-SDRi (dB)"


def eval_loader(cfg: dict[str, Any], split: str, workers: int) -> DataLoader:
    """The fixed ``split`` mixtures of ``cfg["dataset"]``, as training builds them."""
    from ugr_experiments.data import build_datasets, collate_mixtures

    if split not in ("test", "valid"):
        raise ValueError(f"--split must be test or valid, got {split!r}")
    data = build_datasets(cfg["dataset"], cfg["seed"], 1)[split]
    return DataLoader(
        data,
        batch_size=cfg["batch_size"],
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_mixtures,
    )


def write_outputs(
    rows: pd.DataFrame, out_dir: Path, title: str, record: dict[str, Any]
) -> pd.DataFrame:
    """Write every output into ``out_dir`` (a staging folder); returns the table."""
    from ugr_experiments.analysis.tables import summarize, write_table

    rows.to_csv(out_dir / "per_source_sisdri.csv", index=False)
    table = summarize(rows)
    write_table(table, out_dir, title=title)
    record["sisdri_mean"] = float(table.loc["all", "mean"])
    text = json.dumps(record, indent=2, default=str) + "\n"
    (out_dir / "evaluation.json").write_text(text, encoding="utf-8")
    return table


def commit(staging: Path, out_dir: Path) -> None:
    """Move the staged files into ``out_dir`` and remove the staging folder."""
    for path in sorted(staging.iterdir()):
        os.replace(path, out_dir / path.name)
    staging.rmdir()


def evaluate_model(
    loaded: LoadedModel,
    out_dir: str | Path,
    opts: EvalOptions,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Evaluate ``loaded`` and write the outputs of the module docstring to ``out_dir``.

    Returns:
        The SI-SDRi table (as in ``sisdri_table.csv``).
    """
    from ugr_experiments.training.runinfo import run_info

    start, out_dir = time.time(), Path(out_dir)
    cfg = eval_config(loaded, opts)
    check_outputs(out_dir, opts.overwrite)
    loader = eval_loader(cfg, opts.split, opts.workers)
    created = make_output_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".ugr-evaluate-", dir=out_dir))
    try:
        rows = evaluate_rows(loaded.model, loader, device, cfg["epoch"], opts.progress, opts.split)
        record = {"model": str(loaded.path), "split": opts.split, **cfg}
        record.update(run_info(cfg, start))
        table = write_outputs(rows, staging, table_title(opts.split), record)
        commit(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_dirs(created)
        raise
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ugr-evaluate",
        description="Evaluate a checkpoint, run directory or export on a fixed test set: "
        "writes per_source_sisdri.csv and the SI-SDRi table as at the end of training.",
    )
    p.add_argument("model", help="a run directory, a checkpoint (.pt) or an export (ugr-export)")
    p.add_argument(
        "overrides", nargs="*", help="seed=N or dataset.<key>=<value>, e.g. dataset.n_test=500"
    )
    p.add_argument("-o", "--output", required=True, help="the folder to write to")
    p.add_argument(
        "--dataset", help="a config name (conf/dataset) or YAML file; default: the run's"
    )
    p.add_argument(
        "--manifest", action="append", default=[], help="a data_prep manifest (repeatable)"
    )
    p.add_argument("--split", default="test", choices=("test", "valid"))
    p.add_argument("--batch-size", type=int, help="default: the run's eval.batch_size")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--epoch", type=int, help="the epoch column; default: the checkpoint's epoch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def main(argv: list[str] | None = None) -> None:
    """``ugr-evaluate MODEL [OVERRIDES] -o OUT``: errors exit with a message, nothing partial."""
    from ugr_experiments.analysis.tables import to_markdown
    from ugr_experiments.training.distributed import resolve_device

    args = build_parser().parse_intermixed_args(argv)
    opts = EvalOptions(
        dataset=args.dataset,
        manifests=list(args.manifest),
        overrides=list(args.overrides),
        split=args.split,
        batch_size=args.batch_size,
        workers=args.workers,
        epoch=args.epoch,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    try:
        device = resolve_device(args.device)
        loaded = load_model(args.model, device)
        table = evaluate_model(loaded, args.output, opts, device)
    except (ModelFileError, AudioDecodeError, OSError, ValueError) as err:
        sys.exit(f"ugr-evaluate: error: {err}")
    print(to_markdown(table, title=table_title(args.split)))
    print(f"wrote {', '.join(OUTPUT_FILES)} to {args.output}")


if __name__ == "__main__":
    main()
