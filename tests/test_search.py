"""End-to-end searches on a real local Ray and a real SQLite MLflow store.

A tiny real ImageFolder (scikit-learn digits) and EfficientNet-Lite0 with its packaged ImageNet
weights keep every trial to seconds while the whole path runs for real: config -> space ->
OptunaSearch + ASHA -> trials on Ray workers -> MLflow -> export -> train.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

import autoft
from autoft.cli import main as cli_main
from autoft.demo import digits_search_config
from autoft.tracking.callback import LOST_ERROR
from autoft.tuning.state_backup import STATE_FILES

pytestmark = pytest.mark.slow

CONDITIONAL_SPACE = {
    "lr_schedule": {"type": "categorical", "choices": ["constant", "warmup_linear", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "when": {"lr_schedule": "stlr"}},
    "warmup_proportion": {"type": "float", "low": 0.0, "high": 0.2,
                          "when": {"lr_schedule": "warmup_linear"}},
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
    "dis_blocks": {"type": "int", "low": 0, "high": 3},
}


def search_config(folder: Path, data: Path, name: str, num_samples: int = 4,
                  **extra: object) -> Path:
    """A 2-epoch image search config over the conditional space, written into ``folder``."""
    config = digits_search_config(data, name, **{
        "space": CONDITIONAL_SPACE, "fixed": {"num_epochs": 2, "batch_size": 8},
        "search": {"algorithm": "tpe", "scheduler": "asha", "num_samples": num_samples,
                   "max_concurrent": 2, "seed": 0},
        "storage": str(folder / "results"), **extra})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def runs_of(tracking_uri: str, experiment: str) -> tuple[list, list]:
    """(parent runs, child runs) of an experiment."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("autoft.role") == "search"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def is_lost(run: Run) -> bool:
    """Whether ``run`` belongs to a trial lost with a killed driver (marked by the callback;
    it is then among the deleted runs, which ``search_runs`` does not show)."""
    return run.data.tags.get("autoft.error") == LOST_ERROR


def assert_complete_tracking(tracking_uri: str, experiment: str, num_trials: int) -> None:
    """1 parent; one child per trial, nested, with params and a metric per reported epoch.

    A trial started just before a driver was killed may be unknown to Ray's last saved state:
    its run must then be marked failed as lost, and it does not count.
    """
    client = MlflowClient(tracking_uri)
    parents, children = runs_of(tracking_uri, experiment)
    assert len(parents) == 1
    lost = {c.info.run_id for c in children if is_lost(c)}
    for child in children:
        if child.info.run_id in lost:
            assert child.info.status == "KILLED"
            assert child.data.tags["autoft.status"] == "superseded"
    children = [c for c in children if c.info.run_id not in lost]
    trial_ids = [c.data.tags["autoft.trial_id"] for c in children]
    assert len(children) == num_trials and len(set(trial_ids)) == num_trials
    seeds = {int(c.data.params["seed"]) for c in children}
    assert seeds == set(range(num_trials)), "search seed 0 + the index the driver gave"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["autoft.status"] in ("completed", "pruned")
        assert child.info.status == "FINISHED"  # a pruned trial ended normally
        assert "learning_rate" in child.data.params and "lr_schedule" in child.data.params
        schedule = child.data.params["lr_schedule"]
        assert ("cut_frac" in child.data.params) == (schedule == "stlr")
        assert ("warmup_proportion" in child.data.params) == (schedule == "warmup_linear")
        history = client.get_metric_history(child.info.run_id, "eval_accuracy")
        steps = sorted(m.step for m in history)
        assert steps == list(range(len(steps))) and steps, steps
        for key in ("train_loss", "lr"):
            assert len(client.get_metric_history(child.info.run_id, key)) == len(steps)


def test_search_export_train(tmp_path: Path, digits_folder: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    config_path = search_config(tmp_path, digits_folder, "digits4")
    assert cli_main(["search", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "autoft ui --tracking-uri" in out

    experiment_dir = tmp_path / "results" / "digits4"
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    assert_complete_tracking(uri, "digits4", 4)
    parent = runs_of(uri, "digits4")[0][0]
    assert "best_eval_accuracy" in parent.data.metrics
    assert parent.data.params["algorithm"] == "tpe"
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "trials.csv"} <= artifacts
    assert (experiment_dir / "plots" / "optimization_history.png").is_file()

    exported = tmp_path / "best.yaml"
    assert cli_main(["export", str(experiment_dir), "-o", str(exported)]) == 0
    best = yaml.safe_load(exported.read_text())
    assert best["space"] is None and best["fixed"]["seed"] in range(4)
    as_json = autoft.export(experiment_dir, "json", tmp_path / "best.json")
    assert json.loads(as_json.read_text())["fixed"] == best["fixed"]
    assert autoft.validate(exported).space is None  # a train config: what `train` would run
    assert best["fixed"]["learning_rate"] == pytest.approx(
        float(yaml.safe_load((experiment_dir / "best_config.yaml").read_text())
              ["fixed"]["learning_rate"]))
    assert cli_main(["train", str(exported)]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("digits4").experiment_id])
    assert any(r.data.tags.get("autoft.role") == "train" for r in runs)


def autoft_process(*args: str, **kwargs: object) -> subprocess.Popen:
    """``autoft ARGS`` as a child process of this test."""
    return subprocess.Popen([sys.executable, "-m", "autoft.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


def wait_for(condition, timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def completed_children(uri: str, experiment: str) -> int:
    try:
        return sum(c.data.tags.get("autoft.status") == "completed"
                   for c in runs_of(uri, experiment)[1])
    except Exception:  # the store may not exist yet
        return 0


def results_of(trial_dir: Path) -> list[dict[str, Any]]:
    """A trial folder's results so far (Ray Tune's ``result.json``, one line per epoch; a line
    still being written left out)."""
    path = trial_dir / "result.json"
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    return [json.loads(line) for line in lines if line.endswith("\n")]


def epochs_of(rows: list[dict[str, Any]]) -> list[int]:
    """The ``epoch`` of each result row, in the order they were reported."""
    return [int(row["epoch"]) for row in rows]


def _complete_json(path: Path) -> bool:
    """Whether ``path`` holds whole JSON: Ray copies its state files in place, and a driver
    killed mid-copy leaves them empty (then nothing can resume)."""
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def halfway_trial(experiment_dir: Path) -> Path | None:
    """A trial folder with its first epoch reported and checkpointed, its second not yet, and
    Ray's experiment state saved since the driver took that epoch (``result.json`` written):
    else the state might not hold the trial, and a resume would make it again."""
    states = [p for p in experiment_dir.glob("experiment_state-*.json") if _complete_json(p)]
    saved = max((p.stat().st_mtime for p in states), default=0.0)
    for trial_dir in sorted(experiment_dir.glob("trial_*")):
        if (epochs_of(results_of(trial_dir)) == [0] and any(trial_dir.glob("checkpoint_*"))
                and saved > (trial_dir / "result.json").stat().st_mtime):
            return trial_dir
    return None


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and every process it started (the embedded Ray's) at once, as a lost
    machine stops them: no trial goes on after its driver (and writes a checkpoint the driver
    never heard of)."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGKILL)
    process.wait()
    psutil.wait_procs(tree, timeout=30)


def test_resume_after_driver_sigkill(tmp_path: Path, digits_folder: Path) -> None:
    config_path = search_config(tmp_path, digits_folder, "killed", num_samples=4,
                                search={"algorithm": "tpe", "scheduler": "fifo",
                                        "num_samples": 4, "max_concurrent": 1, "seed": 0})
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    experiment_dir = tmp_path / "results" / "killed"
    driver = autoft_process("search", str(config_path))
    try:
        wait_for(lambda: completed_children(uri, "killed") >= 1
                 and halfway_trial(experiment_dir) is not None, 300,
                 "a completed trial and one halfway", every=0.1)
    finally:
        kill_tree(driver)
    assert completed_children(uri, "killed") < 4
    # Ray's saved state may name a checkpoint it deleted once a newer one came (a kill between
    # the two): the trial resumes from the newest one left, not from its first epoch.
    halfway = halfway_trial(experiment_dir)
    assert halfway is not None, "the halfway trial finished before the kill"
    newest = max(halfway.glob("checkpoint_*"))
    newest.rename(newest.with_name(f"checkpoint_{int(newest.name.split('_')[1]) + 1:06d}"))
    # A kill during Ray's in-place copy of its state files leaves them empty: the resume puts
    # back the whole set autoft copied when Ray saved them.
    for pattern in STATE_FILES:
        for path in experiment_dir.glob(pattern):
            path.write_bytes(b"")

    resumed = autoft_process("resume", str(experiment_dir))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert epochs_of(results_of(halfway)) == [0, 1], f"resumed anew:\n{output}"
    assert_complete_tracking(uri, "killed", 4)


@pytest.mark.parametrize(("config", "message"), [
    ("name: x\n  bad: [\n", "malformed YAML"),
    ("name: x\ntrainable: image\nmodel: m\ndata: {train: /nowhere}\n", "data.train"),
    ("name: x\ncolour: red\n", "colour: unknown key"),
])
def test_bad_configs_exit_2_with_one_line(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    for command in ("validate", "search"):
        process = autoft_process(command, str(path))
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 2, output
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in output
