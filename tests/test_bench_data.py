"""``scripts/bench_data.py``: mixtures/s per worker and per DataLoader, workers for a step."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT

from ugr_experiments.training.workers import workers_needed


def test_bench_data_plans_workers_for_a_given_step(tmp_path):
    out = tmp_path / "data.json"
    cmd = [sys.executable, "scripts/bench_data.py", "--mixtures", "8", "--workers", "1", "2"]
    cmd += ["--batches", "2", "--step-seconds", "0.05", "--json", str(out)]
    cmd += ["train.batch_size=2", "dataset.segment_seconds=0.25"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = json.loads(out.read_text())
    assert set(fig["loader_mixtures_per_s"]) == {"1", "2"}
    assert all(rate > 0 for rate in fig["loader_mixtures_per_s"].values())
    assert fig["train_steps_per_s"] == 20 and fig["mixtures_per_s_needed"] == 40
    per_worker = fig["mixtures_per_s_per_worker"]
    assert fig["workers_needed"] == math.ceil(1.25 * 40 / per_worker)
    assert fig["workers_auto"] == workers_needed(2 / per_worker, 0.05, fig["cores"])
    assert "loader 2 worker(s)" in proc.stdout and "train.num_workers=auto" in proc.stdout
