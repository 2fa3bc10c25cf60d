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

Which data set is scored is decided in :mod:`ugr_experiments.inference.eval_data`; the
TensorBoard audio that training logs is :mod:`ugr_experiments.inference.tensorboard_audio`
(both re-exported here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ugr_experiments.data.audio import AudioDecodeError
from ugr_experiments.inference.eval_data import (
    CONF_DIR,
    DATASET_OF_GROUPS,
    EvalOptions,
    apply_manifests,
    check_dataset,
    describe,
    eval_config,
    load_dataset_config,
    manifest_groups,
    parse_overrides,
)
from ugr_experiments.inference.export import LoadedModel, ModelFileError, load_model
from ugr_experiments.inference.outputs import OutputError, make_output_dir, remove_empty_dirs
from ugr_experiments.inference.tensorboard_audio import audio_due, first_items, log_audio, playable
from ugr_experiments.losses import sisdri

__all__ = [
    "CONF_DIR",
    "DATASET_OF_GROUPS",
    "OUTPUT_FILES",
    "ROW_COLUMNS",
    "EvalOptions",
    "apply_manifests",
    "audio_due",
    "build_parser",
    "check_dataset",
    "check_outputs",
    "commit",
    "describe",
    "eval_config",
    "eval_loader",
    "evaluate_model",
    "evaluate_rows",
    "first_items",
    "load_dataset_config",
    "log_audio",
    "main",
    "manifest_groups",
    "parse_overrides",
    "playable",
    "table_title",
    "write_outputs",
]
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
        sdr_t, base_t, _ = sisdri(est, ref, mix)  # (B, S) each
        sdr, base = sdr_t.cpu().tolist(), base_t.cpu().tolist()
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
    data = build_datasets(cfg["dataset"], cfg["seed"], 1, splits=(split,))[split]
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
    record["sisdri_mean"] = float(table["mean"].loc["all"])
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
    print(describe(cfg, opts.split, len(loader.dataset)), flush=True)  # type: ignore[arg-type]
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
