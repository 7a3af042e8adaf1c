"""The search's outcome as a model: the best trial's weights at its scored epoch are kept
(``search.keep_best_model``), export writes them out, and ``autoft train`` on the exported
config retrains the same model (same seed, same epochs of the same schedule)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

import autoft
from autoft.cli import main as cli_main
from tests.test_trainables_loop import tiny_bert

pytestmark = pytest.mark.slow

WORDS = ["good", "great", "fine", "bad", "awful", "dull", "film", "plot", "acting", "very"]


def test_the_kept_model_is_the_best_trial_at_its_scored_epoch(tmp_path: Path) -> None:
    lines = [f"{WORDS[i % 10]} {WORDS[(3 * i) % 10]} {WORDS[6 + i % 4]}\t{int(i % 10 < 3)}"
             for i in range(48)]
    (tmp_path / "train.tsv").write_text("\n".join(lines[:40]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join(lines[40:]) + "\n")
    result = autoft.search({
        "name": "kept", "trainable": "text", "model": str(tiny_bert(tmp_path / "bert")),
        "data": {"train": str(tmp_path / "train.tsv"), "eval": str(tmp_path / "dev.tsv")},
        "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
        "fixed": {"num_epochs": 3, "batch_size": 8, "max_length": 12},
        "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 2,
                   "keep_best_model": True, "warm_start": "none", "confirm": None},
        "storage": str(tmp_path / "results")})
    best = result.best
    exported = yaml.safe_load(result.best_config_path.read_text())
    assert exported["fixed"].get("stop_after_epochs", 3) == best.scored_epoch + 1
    assert exported["origin"]["trial_id"] == best.trial_id

    kept = result.experiment_dir / "best_model"
    assert yaml.safe_load((kept / "autoft.yaml").read_text())["fixed"] == exported["fixed"]
    assert cli_main(["predict", str(kept), str(tmp_path / "dev.tsv"), "-o",
                     str(tmp_path / "p.csv")]) == 0
    with (tmp_path / "p.csv").open() as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    truth = [line.split("\t")[1] for line in lines[40:]]
    accuracy = sum(a == b for a, b in zip(labels, truth, strict=True)) / len(truth)
    assert accuracy == pytest.approx(best.score)  # the weights of the scored epoch

    assert cli_main(["export", str(result.experiment_dir), "--model", "-o",
                     str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "config.json").is_file()
    assert cli_main(["export", str(result.experiment_dir), "--model", "-o",
                     str(tmp_path / "out")]) == 2  # never over an existing folder

    retrained = autoft.train(result.best_config_path, output_dir=tmp_path / "retrained")
    assert retrained.metrics["epoch"] == best.scored_epoch
    assert retrained.metrics["eval_accuracy"] == pytest.approx(best.score)
