"""Smoke run of every benchmark script on a tiny budget (real models, Ray and MLflow).

The scripts write into a temporary results folder (``AUTOFT_BENCHMARK_RESULTS``), never into the
committed ``benchmarks/results``. Each must finish, write its markdown and its summary.json key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

TINY = {
    "reproduce_study": (["--task", "image", "--seeds", "1", "--epochs", "1", "--strategies",
                         "baseline", "stlr_0.01", "--train-samples", "8"], "study"),
    # Without the suggested config's search: its probe and search doubled this smoke run
    # (224 s of CI); suggest itself is tested in tests/test_suggest.py.
    "search_quality": (["--tasks", "hymenoptera_effnet", "--trials", "1", "--seeds", "1",
                        "--train-samples", "8", "--no-suggest"], "quality"),
    "search_efficiency": (["--reference-trials", "1", "--trials", "1", "--seeds", "1",
                           "--epochs", "1", "--train-samples", "8"], "efficiency"),
    "overhead": (["--trials", "1", "--repeats", "1", "--train-samples", "8"], "overhead"),
    "tasks": (["--tasks", "stsb_minilm", "--trials", "1", "--seeds", "1", "--train-samples",
               "16"], "tasks"),
    "model_choice": (["--trials", "1", "--seeds", "1", "--train-samples", "8"], "model_choice"),
}


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_script_runs_on_a_tiny_budget(script: str, shared_data: Path,
                                                tmp_path: Path) -> None:
    args, key = TINY[script]
    env = {**os.environ, "AUTOFT_BENCHMARK_RESULTS": str(tmp_path / "results"),
           "AUTOFT_BENCHMARK_WORKDIR": str(tmp_path / "work"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary[key], summary
    report = (tmp_path / "results" / f"{script}.md").read_text()
    assert "## Machine" in report and "## Budget of these numbers" in report
