"""The prepared GPU benchmark (benchmarks/gpu.py) runs every section end to end; CI has no GPU,
so it runs its ``--smoke`` form: tiny synthetic data on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.xdist_group("gpu_script")
def test_gpu_benchmark_runs_every_section_and_names_the_crossover(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and result["device"] == "cpu" and not result.get("skipped")
    rows = result["throughput"]["rows"]
    assert {(r["loss"], r["bf16"]) for r in rows} == {("ce", False), ("sampled_ce", False), ("ce", True), ("sampled_ce", True)}
    assert all(r["positions_per_s"] > 0 for r in rows)
    assert "cuda_crossover_items" in result["throughput"]
    assert set(result["ml1m"]) == {"float32", "bfloat16"}
    assert all(r["objective"]["loss"] == "ce" and r["epochs_run"] >= 1 for r in result["ml1m"].values())
    assert result["ml1m"]["bfloat16"]["settings"]["precision"] == "bfloat16"
    assert set(result["beauty"]) == {"full_ce", "sampled_default_cpu"}
    assert result["beauty"]["sampled_default_cpu"]["objective"]["loss"] == "sampled_ce"
    syncs = result["syncs"]
    assert set(syncs) == {"sasrec_ce", "sasrec_sampled_ce", "bert4rec_ce", "gru4rec_ce"}
    assert all(r["steps"] >= 1 and r["syncs_per_step"] is not None for r in syncs.values())
    assert syncs["sasrec_sampled_ce"]["objective"]["loss"] == "sampled_ce"


def test_gpu_benchmark_refuses_to_run_without_a_gpu_unless_asked_for_the_smoke_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr and "--smoke" in proc.stderr
    assert not (tmp_path / "g.json").exists()
