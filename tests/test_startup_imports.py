"""What a search's processes import before their first trial: start-up is paid by every
``autoft search`` and by every new trial worker (benchmarks/results/overhead.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "absent"), [
    # the driver: Nevergrad (0.8 s) only for `algorithm: pso`, scikit-learn (0.8 s) only for
    # `suggest`
    ("autoft.api", ["nevergrad", "sklearn"]),
    # a trial worker: no MLflow (0.9 s; the driver logs), no search algorithms
    ("autoft.tuning.trial", ["mlflow", "nevergrad", "optuna"]),
    # the command line: nothing heavy before a command needs it (a bad config is refused in
    # 0.2 s, not 6; the embedded Ray starts while the rest imports)
    ("autoft.cli", ["torch", "ray", "mlflow", "optuna", "pandas", "transformers", "timm"]),
])
def test_a_process_imports_only_what_it_uses(module: str, absent: list[str]) -> None:
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
