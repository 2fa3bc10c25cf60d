"""The README's benchmark command runs (shrunk) and prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, TINY


@pytest.mark.slow
def test_bench_train_step_prints_overhead_and_memory(tmp_path):
    out_json = tmp_path / "bench.json"
    model = [o for o in TINY if o.startswith(("model.", "dataset.segment"))]
    cmd = [
        sys.executable,
        "scripts/bench_train_step.py",
        "--pairs",
        "3",
        "--warmup",
        "1",
        "--json",
        str(out_json),
        *model,
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "overhead" in out.stdout and "steps/s" in out.stdout
    figures = json.loads(out_json.read_text())
    assert figures["steps_per_s_uniform"] > 0 and figures["steps_per_s_robust"] > 0
    assert figures["peak_rss_mb_uniform"] > 0
    assert 0 < figures["weighting_only_pct_of_step"] < 100
