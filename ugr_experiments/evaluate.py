"""Score a model on a fixed set of mixtures: one row per (mixture, source)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ugr_experiments.losses import sisdri

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
