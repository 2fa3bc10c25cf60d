"""TensorBoard HParams: a run's hyper-parameters and final test figures, read back from the
event files as TensorBoard's HParams plugin reads them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, compose_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from torch.utils.tensorboard import SummaryWriter

from ugr_experiments.config import to_plain
from ugr_experiments.training.hparams import final_metrics, log_hparams, run_hparams
from ugr_experiments.training.loop import run


def read_hparams(log_dir: Path) -> tuple[dict[str, object], dict[str, float]]:
    """The session's hyper-parameters and the metric scalars' last values in ``log_dir``."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        hparams[key] = getattr(value, kind)
    scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    return hparams, scalars


def test_hparams_of_a_class_weighting_experiment_flatten_to_config_paths():
    cfg = to_plain(compose_config(TINY + ["weighting=class", "weighting.gamma.speech=3"]))
    cfg["gamma_pair"] = "s3_e0"  # a root key of conf/experiment/class_bias.yaml
    hp = run_hparams(cfg, steps=42)
    assert hp["weighting.name"] == "class"
    assert hp["weighting.gamma.speech"] == 3.0 and hp["weighting.gamma.environmental"] == 0.0
    assert hp["gamma_pair"] == "s3_e0" and "schedule" not in hp
    assert hp["model.name"] == "sudormrf" and hp["model.enc_num_basis"] == 32
    assert hp["dataset.name"] == "synthetic" and hp["train.batch_size"] == 2
    assert hp["optim.lr"] == pytest.approx(1e-3) and hp["steps"] == 42
    assert hp["seed"] == 0 and hp["alpha"] == 0.0
    assert "weighting.alpha" not in hp  # class weighting has no alpha of its own


def test_logged_session_reads_back_in_the_writers_own_folder(tmp_path):
    table = pd.DataFrame(
        {"n": [8.0], "mean": [1.5], "std": [2.0], "q1": [-3.0], "q5": [-2.5], "q50": [1.25]},
        index=["all"],
    )
    metrics = final_metrics(table)
    assert metrics == {
        "test/sisdri_mean": 1.5,
        "test/sisdri_std": 2.0,
        "test/sisdri_q1": -3.0,
        "test/sisdri_q5": -2.5,
        "test/sisdri_q50": 1.25,
    }
    writer = SummaryWriter(str(tmp_path / "tb"))
    hparams = {"alpha": 0.2, "weighting.name": "robust", "seed": 1}
    log_hparams(writer, hparams, metrics, step=7)
    writer.close()
    assert [p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()] == []  # no subfolder
    logged, scalars = read_hparams(tmp_path / "tb")
    assert logged == {"alpha": pytest.approx(0.2), "weighting.name": "robust", "seed": 1.0}
    assert scalars == pytest.approx(metrics)


def test_a_run_logs_its_hparams_and_summary_table(tmp_path):
    run(compose_config(TINY + ["weighting=robust", "alpha=0.2", "seed=3"]), tmp_path)
    logged, scalars = read_hparams(tmp_path / "tb")
    assert logged["alpha"] == pytest.approx(0.2) and logged["weighting.alpha"] == pytest.approx(0.2)
    assert logged["weighting.name"] == "robust" and logged["seed"] == 3
    assert logged["steps"] == 2 and logged["train.batch_size"] == 2
    table = pd.read_csv(tmp_path / "sisdri_table.csv", index_col=0)
    for stat in ("mean", "std", "q1", "q5", "q50"):
        assert scalars[f"test/sisdri_{stat}"] == pytest.approx(table.loc["all", stat], abs=1e-5)
