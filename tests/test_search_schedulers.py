"""Every scheduler and sampler through the real driver on a real local Ray, with a toy trainable.

The trainable is a user function (no model), so these runs check the driver's wiring of Optuna,
Nevergrad and Ray's schedulers — the pairs Ray accepts or refuses — in seconds per search.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from autoft.cli import main as cli_main
from autoft.core.config import config_from_mapping
from autoft.tuning.driver import run_search
from autoft.tuning.results import load_trials

pytestmark = pytest.mark.slow

SPACE = {
    "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "when": {"lr_schedule": "stlr"}},
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize(("algorithm", "scheduler"), [
    ("tpe", "asha"), ("random", "hyperband"), ("tpe", "pbt"), ("cmaes", "fifo"),
])
def test_each_algorithm_and_scheduler_runs(tmp_path: Path, algorithm: str,
                                           scheduler: str) -> None:
    space = SPACE if algorithm in ("tpe", "random") else {"learning_rate": SPACE["learning_rate"]}
    config = config_from_mapping({
        "name": f"{algorithm}-{scheduler}",
        "trainable": "tests.toy_trainable:quadratic",
        "space": space,
        "fixed": {"num_epochs": 3},
        "search": {"algorithm": algorithm, "scheduler": scheduler, "num_samples": 4,
                   "max_concurrent": 2, "seed": 0,
                   "points_to_evaluate": [{"learning_rate": 5.0e-4}]},
        "storage": str(tmp_path),
    }, tmp_path)
    outcome = run_search(config)
    assert len(outcome.trials) == 4
    assert all(t.status in ("completed", "pruned") for t in outcome.trials)
    assert outcome.best is not None and outcome.best.score > 0.5
    # Every trial keeps the index and seed the driver gave it, PBT's exploits included.
    assert sorted((t.context.index, t.context.seed) for t in outcome.trials) == [
        (i, i) for i in range(4)]
    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name(config.name)
    runs = client.search_runs([experiment.experiment_id])
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 4


def test_pso_searches_numeric_spaces(tmp_path: Path) -> None:
    config = config_from_mapping({
        "name": "pso", "trainable": "tests.toy_trainable:quadratic",
        "space": {"learning_rate": SPACE["learning_rate"]}, "fixed": {"num_epochs": 1},
        "search": {"algorithm": "pso", "scheduler": "fifo", "num_samples": 4,
                   "max_concurrent": 2},
        "storage": str(tmp_path),
    }, tmp_path)
    outcome = run_search(config)
    assert len(outcome.trials) == 4 and outcome.best is not None
    assert sorted(t.name for t in outcome.trials) == [f"trial_{i:04d}" for i in range(4)]


def test_a_failure_a_retry_cannot_fix_is_not_retried(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = tmp_path / "calls.txt"
    config = config_from_mapping({
        "name": "fails", "trainable": "tests.toy_trainable:always_fails",
        "space": {"learning_rate": SPACE["learning_rate"]},
        "fixed": {"num_epochs": 2, "calls_file": str(calls)},
        "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 2,
                   "max_concurrent": 1, "max_failures": 2},
        "storage": str(tmp_path),
    }, tmp_path)
    (tmp_path / "fails.yaml").write_text(yaml.safe_dump(config.to_yaml_dict()))
    assert cli_main(["search", str(tmp_path / "fails.yaml")]) == 1  # every trial failed
    said = capsys.readouterr()
    assert "no trial reported a score" in said.err
    summary = said.out[said.out.rindex("best 0 of 2 trials"):].splitlines()
    failed = [line for line in summary if " failed: " in line]  # one line each, after the table
    # The retry of a lasting failure is not a start, and none follows it.
    assert [said.out.count(f"trial_000{i} started") for i in range(2)] == [1, 1]
    assert all(line.count("not retried: ") == 1 for line in failed), failed
    assert [line[:len("trial_0000 failed: ")] for line in failed] == [
        f"trial_000{i} failed: " for i in range(2)]
    assert all("NaN" in line for line in failed)
    outcome = load_trials(config.experiment_dir, config.metric_key, config.num_epochs,
                          config.search.select)
    assert [t.status for t in outcome] == ["failed", "failed"]
    assert sorted(calls.read_text().split()) == ["0", "1"]  # each trained once, not 3 times
    client = MlflowClient(config.tracking_uri)
    children = client.search_runs([client.get_experiment_by_name("fails").experiment_id],
                                  "tags.autoft.status = 'failed'")
    assert len(children) == 2 and all("NaN" in c.data.tags["autoft.error"] for c in children)


def test_a_trial_out_of_gpu_memory_fails_alone_with_its_error(tmp_path: Path) -> None:
    config = config_from_mapping({
        "name": "oom", "trainable": "tests.toy_trainable:out_of_memory_in_trial_one",
        "space": {"learning_rate": SPACE["learning_rate"]}, "fixed": {"num_epochs": 2},
        "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 3,
                   "max_concurrent": 3, "max_failures": 0, "confirm": None},
        "storage": str(tmp_path),
    }, tmp_path)
    outcome = run_search(config)
    assert [t.status for t in outcome.trials] == ["completed", "failed", "completed"]
    assert "OutOfMemoryError: CUDA out of memory" in outcome.trials[1].error
    client = MlflowClient(config.tracking_uri)
    failed = client.search_runs([client.get_experiment_by_name("oom").experiment_id],
                                "tags.autoft.status = 'failed'")
    assert [run.data.tags["autoft.trial_id"] for run in failed] == [outcome.trials[1].trial_id]
    assert "out of memory" in failed[0].data.tags["autoft.error"]


def test_the_top_trials_are_retrained_and_the_best_mean_is_exported(tmp_path: Path) -> None:
    config = config_from_mapping({
        "name": "confirm", "trainable": "tests.toy_trainable:noisy_quadratic",
        "space": {"learning_rate": SPACE["learning_rate"]}, "fixed": {"num_epochs": 2},
        "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 8,
                   "max_concurrent": 2, "seed": 0},
        "storage": str(tmp_path),
    }, tmp_path)
    assert config.search.confirmation.top_k == 2 and config.search.confirmation.seeds == 1
    outcome = run_search(config)
    assert len(outcome.confirmed) == 2 and outcome.best is outcome.confirmed[0].trial
    assert outcome.confirmed[0].mean >= outcome.confirmed[1].mean
    assert all(len(c.scores) == 2 for c in outcome.confirmed)
    assert outcome.selection.startswith(f"{outcome.best.name}: best mean eval_accuracy")
    exported = yaml.safe_load((tmp_path / "confirm" / "best_config.yaml").read_text())
    assert exported["fixed"]["learning_rate"] == outcome.best.hparams["learning_rate"]
    frame = pd.read_csv(tmp_path / "confirm" / "trials.csv")
    assert frame["seeds"].notna().sum() == 2
    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name("confirm").experiment_id
    confirms = client.search_runs([experiment], "tags.`autoft.role` = 'confirm'")
    assert len(confirms) == 2 and all(r.data.tags["autoft.status"] == "completed"
                                      for r in confirms)
    assert {r.data.params["seed"] for r in confirms}.isdisjoint(
        {str(t.context.seed) for t in outcome.trials})
    parent = client.search_runs([experiment], "tags.`autoft.role` = 'search'")[0]
    assert parent.data.tags["autoft.selection"] == outcome.selection
    assert "best_eval_accuracy_mean" in parent.data.metrics


def test_a_trial_that_peaks_early_is_ranked_and_exported_by_its_peak(tmp_path: Path) -> None:
    config = config_from_mapping({
        "name": "peaks", "trainable": "tests.toy_trainable:peaks_at",
        "space": {"peak": {"type": "int", "low": 0, "high": 2}}, "fixed": {"num_epochs": 3},
        "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 2,
                   "points_to_evaluate": [{"peak": 0}, {"peak": 2}], "seed": 0},
        "storage": str(tmp_path),
    }, tmp_path)
    outcome = run_search(config)
    early, late = outcome.trials
    assert (early.history, early.scored_epoch, early.score) == ([1.0, 0.8, 0.6], 0, 1.0)
    assert outcome.best is early  # by its peak (1.0), though its last epoch (0.6) is the worst
    exported = yaml.safe_load((tmp_path / "peaks" / "best_config.yaml").read_text())
    assert exported["fixed"]["num_epochs"] == 1  # a function trainable: the peak's epoch count
    client = MlflowClient(config.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("peaks").experiment_id],
                             f"tags.`autoft.trial_id` = '{early.trial_id}'")[0]
    assert (run.data.metrics["best_epoch"], run.data.metrics["best_eval_accuracy"]) == (0, 1.0)
    by_last = load_trials(config.experiment_dir, config.metric_key, config.num_epochs, "last")
    assert [t.score for t in by_last] == [0.6, 0.9]  # search.select: last judges the last epoch
