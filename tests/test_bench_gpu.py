"""``scripts/bench_gpu.py --tiny`` runs end to end on the CPU (no GPU needed), with the
reference formulation standing in for the authors' class, or a class loaded from a path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# A stand-in for a clone of etzinis/sudo_rm_rf: their class takes (B, 1, T) mixtures.
FAKE_AUTHORS = f"""
import sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from reference_sudormrf import ReferenceSuDORMRF

class SuDORMRF(ReferenceSuDORMRF):
    def forward(self, x):
        assert x.dim() == 3 and x.shape[1] == 1
        return super().forward(x[:, 0])
"""


def run_tiny(out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "scripts/bench_gpu.py", "--tiny", "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| sudormrf_1x | ours | fp32 |" in proc.stdout
    assert (out / "bench_gpu.md").read_text() in proc.stdout
    return json.loads((out / "bench_gpu.json").read_text())


def test_bench_gpu_tiny_runs_on_the_cpu_with_the_reference_stand_in(tmp_path: Path) -> None:
    results = run_tiny(tmp_path, "--networks", "sudormrf_1x", "sudormrf_025x")["results"]
    assert [(r["network"], r["impl"], r["mode"]) for r in results[:4]] == [
        ("sudormrf_1x", "ours", "fp32"),
        ("sudormrf_1x", "reference", "fp32"),
        ("sudormrf_1x", "ours", "bf16"),
        ("sudormrf_1x", "reference", "bf16"),
    ]
    assert len(results) == 8 and all(not r["note"] for r in results)
    for r in results:
        assert r["steps_per_s"] > 0 and r["params"] > 0
        # 85,680 paper steps (120 epochs x 714 steps of batch 28) at the measured rate.
        assert abs(r["full_run_h"] - 85_680 / r["steps_per_s"] / 3600) < 1e-9


def test_bench_gpu_loads_the_authors_class_from_a_path(tmp_path: Path) -> None:
    repo = tmp_path / "sudo_rm_rf_clone"
    (repo / "sudo_rm_rf" / "dnn" / "models").mkdir(parents=True)
    (repo / "sudo_rm_rf" / "dnn" / "models" / "sudormrf.py").write_text(FAKE_AUTHORS)
    out = tmp_path / "out"
    args = ["--networks", "sudormrf_1x", "--modes", "fp32", "--authors-repo", str(repo)]
    results = run_tiny(out, *args)["results"]
    assert [r["impl"] for r in results] == ["ours", "authors"]
    assert "ours / other" in (out / "bench_gpu.md").read_text()


def test_bench_gpu_refuses_a_missing_authors_clone(tmp_path: Path) -> None:
    cmd = [sys.executable, "scripts/bench_gpu.py", "--tiny", "--out", str(tmp_path)]
    cmd += ["--authors-repo", str(tmp_path / "no_clone")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no authors' model at" in proc.stderr
    assert "sudo_rm_rf" in proc.stderr and not (tmp_path / "bench_gpu.json").exists()
