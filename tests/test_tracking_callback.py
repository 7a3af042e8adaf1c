"""The Ray Tune tracking callback: design.md's MLflow layout, resume, statuses, real Ray Tune."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from ray import tune

from autoft.tracking import MlflowTrackingCallback


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def make_callback(store: str, experiment: str, state_dir: Path) -> MlflowTrackingCallback:
    return MlflowTrackingCallback(
        tracking_uri=store, experiment_name=experiment, run_name=experiment,
        state_dir=state_dir, num_epochs=3,
        parent_params={"num_epochs": 3, "algorithm": "tpe", "scheduler": "asha",
                       "num_samples": 3})


def stand_in_trial(trial_id: str, error_file: Path | None = None, **config: Any) -> Any:
    """The few attributes of a Ray ``Trial`` the callback reads (pure unit tests only)."""
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={},
                           error_file=None if error_file is None else str(error_file))


def epoch_result(epoch: int, **extra: Any) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "eval_accuracy": 0.5 + epoch / 10,
            "lr": 1e-4, "training_iteration": epoch + 1, "time_this_iter_s": 0.1, **extra}


def runs_by_name(store: str, experiment: str) -> dict[str, Run]:
    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    by_name = {run.info.run_name: run for run in runs}
    assert len(by_name) == len(runs), "a run was created twice"
    return by_name


def metric_steps(store: str, run: Run, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, key))


def test_a_resumed_search_reuses_its_runs_and_logs_each_epoch_once(store: str,
                                                                   tmp_path: Path) -> None:
    first = make_callback(store, "resumed", tmp_path)
    first.setup(num_samples=3, total_num_samples=3)
    trial = stand_in_trial("t_00000", learning_rate=1e-4, optimizer={"name": "adamw"})
    first.on_trial_start(0, [trial], trial)
    for epoch in range(2):
        first.on_trial_result(epoch, [trial], trial, epoch_result(epoch))
    assert first.writer.close(timeout=60)  # the driver dies here

    restored = pickle.loads(pickle.dumps(first))  # what Tuner.restore unpickles
    restored.setup(num_samples=3, total_num_samples=3)
    restored.on_trial_start(5, [trial], trial)  # restarted from its epoch-0 checkpoint
    for epoch in range(1, 3):
        restored.on_trial_result(5 + epoch, [trial], trial, epoch_result(epoch, lr=2e-4))
    restored.on_trial_complete(9, [trial], trial)
    second = stand_in_trial("t_00001", learning_rate=2e-4)
    restored.on_trial_start(9, [trial, second], second)
    restored.on_trial_result(10, [trial, second], second, epoch_result(0))
    restored.on_trial_complete(11, [trial, second], second)

    driver_copy = make_callback(store, "resumed", tmp_path)  # the driver's own instance
    driver_copy.log_parent_metric("best_eval_accuracy", 0.7)
    parent_id = driver_copy.finish(timeout=60)

    runs = runs_by_name(store, "resumed")
    assert sorted(runs) == ["resumed", "t_00000", "t_00001"]
    parent, child, pruned = runs["resumed"], runs["t_00000"], runs["t_00001"]
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert parent.data.tags["autoft.role"] == "search"
    assert parent.data.params == {"num_epochs": "3", "algorithm": "tpe", "scheduler": "asha",
                                  "num_samples": "3"}
    assert parent.data.metrics == {"best_eval_accuracy": 0.7}
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["autoft.trial_id"] == "t_00000"
    assert child.data.params == {"learning_rate": "0.0001", "optimizer.name": "adamw"}
    for key in ("train_loss", "eval_accuracy", "lr"):
        assert metric_steps(store, child, key) == [0, 1, 2]
    lr_history = MlflowClient(store).get_metric_history(child.info.run_id, "lr")
    assert sorted((m.step, m.value) for m in lr_history) == [(0, 1e-4), (1, 1e-4), (2, 2e-4)]
    assert set(child.data.metrics) == {"train_loss", "eval_accuracy", "lr"}
    assert child.data.tags["autoft.status"] == "completed" and child.info.status == "FINISHED"
    assert pruned.data.tags["autoft.status"] == "pruned" and pruned.info.status == "FINISHED"
    assert metric_steps(store, pruned, "eval_accuracy") == [0]


def test_a_failed_trial_records_its_error(store: str, tmp_path: Path) -> None:
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1 (occurred at 2026-11-26)\nray::run()\n"
                          "  File \"trial.py\", line 3\nRuntimeError: first\n"
                          "Failure # 2 (occurred at 2026-11-26)\nray::run()\n"
                          "  File \"trial.py\", line 3\nValueError: NaN loss in epoch 1\n")
    callback = make_callback(store, "failed", tmp_path / "search")
    callback.setup()
    trial = stand_in_trial("t_00000", error_file, num_epochs=5)
    callback.on_trial_start(0, [trial], trial)
    callback.on_trial_result(1, [trial], trial, epoch_result(0))
    callback.on_trial_error(2, [trial], trial)
    assert callback.finish(status="FAILED", timeout=60) == callback.parent_run_id(0)

    runs = runs_by_name(store, "failed")
    child = runs["t_00000"]
    assert child.info.status == "FAILED" and runs["failed"].info.status == "FAILED"
    assert child.data.tags["autoft.status"] == "failed"
    assert child.data.tags["autoft.error"] == "ValueError: NaN loss in epoch 1"
    artifacts = MlflowClient(store).list_artifacts(child.info.run_id)
    assert [a.path for a in artifacts] == ["error.txt"]
    assert metric_steps(store, child, "train_loss") == [0]


def test_a_failed_trial_that_completes_after_a_resume_loses_its_error(store: str,
                                                                       tmp_path: Path) -> None:
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1\nRuntimeError: node lost\n")
    first = make_callback(store, "recovered", tmp_path / "search")
    first.setup()
    trial = stand_in_trial("t_00000", error_file, num_epochs=1)
    first.on_trial_start(0, [trial], trial)
    first.on_trial_error(1, [trial], trial)
    assert first.writer.close(timeout=60)

    restored = pickle.loads(pickle.dumps(first))  # autoft resume retries the errored trial
    restored.setup()
    restored.on_trial_start(2, [trial], trial)
    restored.on_trial_result(3, [trial], trial, epoch_result(0))
    restored.on_trial_complete(4, [trial], trial)
    restored.finish(timeout=60)

    child = runs_by_name(store, "recovered")["t_00000"]
    assert child.info.status == "FINISHED" and child.data.tags["autoft.status"] == "completed"
    assert "autoft.error" not in child.data.tags


def test_a_trial_lost_with_the_driver_is_superseded(store: str, tmp_path: Path) -> None:
    first = make_callback(store, "lost", tmp_path)
    first.setup()
    kept, lost = stand_in_trial("t_00000"), stand_in_trial("t_00001")
    for trial in (kept, lost):
        first.on_trial_start(0, [kept, lost], trial)
    first.on_trial_result(1, [kept, lost], kept, epoch_result(0))
    assert first.writer.close(timeout=60)  # the driver dies before Ray saved t_00001

    restored = pickle.loads(pickle.dumps(first))
    restored.setup()
    restored.on_trial_complete(2, [kept], kept)
    assert restored.mark_lost_trials(["t_00000"]) == ["t_00001"]
    restored.finish(timeout=60)

    runs = runs_by_name(store, "lost")
    assert "t_00001" not in runs  # the runs table holds each trial once
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lost").experiment_id
    gone = {r.info.run_name: r for r in client.search_runs(
        [experiment], run_view_type=ViewType.DELETED_ONLY)}["t_00001"]
    assert gone.info.status == "KILLED" and gone.data.tags["autoft.status"] == "superseded"
    assert gone.data.tags["autoft.error"].startswith("lost: the driver stopped")
    assert runs["t_00000"].data.tags["autoft.status"] == "pruned"
    assert "autoft.error" not in runs["t_00000"].data.tags


def test_the_callback_pickles_without_its_writer(store: str, tmp_path: Path) -> None:
    callback = make_callback(store, "pickled", tmp_path)
    callback.setup()
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.search_id == callback.search_id and copy._writer is None
    assert copy.writer is callback.writer  # one writer per folder in a process
    assert callback.finish(timeout=60) == copy.parent_run_id(0) is not None


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """An embedded Ray of this test module alone (``address="local"``, see design.md)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def tiny_trainable(config: dict[str, Any]) -> None:
    """Three epochs of made-up metrics (the callback, not training, is under test here).

    ``x == 3`` fails in epoch 1; ``x == 1`` too while the file ``config["fail_flag"]`` exists.
    """
    for epoch in range(3):
        flagged = config["x"] == 1 and Path(config.get("fail_flag", "")).is_file()
        if epoch == 1 and (config["x"] == 3 or flagged):
            raise ValueError("boom in epoch 1")
        tune.report({"epoch": epoch, "train_loss": 1.0 / (epoch + 1 + config["x"]),
                     "eval_accuracy": 0.1 * (epoch + config["x"]), "lr": 1e-3 * config["x"]})


@pytest.mark.slow
def test_a_real_ray_tune_search_is_tracked_in_the_design_layout(
        local_ray: None, store: str, tmp_path: Path) -> None:
    callback = make_callback(store, "ray-search", tmp_path / "results" / "ray-search")
    tuner = tune.Tuner(
        tiny_trainable,
        param_space={"x": tune.grid_search([0, 1, 2, 3]), "opt": {"name": "adamw"}},
        tune_config=tune.TuneConfig(metric="eval_accuracy", mode="max"),
        run_config=tune.RunConfig(
            name="ray-search", storage_path=str(tmp_path / "results"),
            stop=lambda _trial_id, result: result["config"]["x"] == 2 and result["epoch"] >= 1,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[callback], verbose=0),
    )
    assert tuner.fit().num_errors == 1
    callback.log_parent_artifacts([tmp_path / "results" / "ray-search" / "tuner.pkl"])
    parent_id = callback.finish(timeout=60)

    runs = runs_by_name(store, "ray-search")
    parent = runs.pop("ray-search")
    assert parent.info.run_id == parent_id and parent.data.tags["autoft.role"] == "search"
    assert [a.path for a in MlflowClient(store).list_artifacts(parent_id)] == ["tuner.pkl"]
    assert len(runs) == 4
    by_x = {run.data.params["x"]: run for run in runs.values()}
    for x, run in by_x.items():
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.tags["autoft.trial_id"] == run.info.run_name
        assert run.data.params == {"x": x, "opt.name": "adamw"}
    expected = {"0": ("completed", "FINISHED", [0, 1, 2]),
                "1": ("completed", "FINISHED", [0, 1, 2]),
                "2": ("pruned", "FINISHED", [0, 1]),
                "3": ("failed", "FAILED", [0])}
    for x, (status, run_status, steps) in expected.items():
        run = by_x[x]
        assert (run.data.tags["autoft.status"], run.info.status) == (status, run_status), x
        for key in ("train_loss", "eval_accuracy", "lr"):
            assert metric_steps(store, run, key) == steps, (x, key)
        assert run.data.metrics["trial_seconds"] > 0, x  # what it cost, failed ones too
        assert run.data.metrics["gpu_seconds"] == 0, x  # no GPU held
    assert by_x["3"].data.tags["autoft.error"] == "ValueError: boom in epoch 1"


@pytest.mark.slow
def test_tuner_restore_reuses_the_parent_and_the_errored_trial_run(
        local_ray: None, store: str, tmp_path: Path) -> None:
    experiment_dir = tmp_path / "results" / "restored"
    fail_flag = tmp_path / "fail"
    fail_flag.touch()
    callback = make_callback(store, "restored", experiment_dir)
    tuner = tune.Tuner(
        tiny_trainable,
        param_space={"x": tune.grid_search([0, 1]), "fail_flag": str(fail_flag)},
        run_config=tune.RunConfig(name="restored", storage_path=str(tmp_path / "results"),
                                  callbacks=[callback], verbose=0),
    )
    assert tuner.fit().num_errors == 1
    first_parent = callback.finish(timeout=60)

    fail_flag.unlink()
    restored = tune.Tuner.restore(str(experiment_dir), tiny_trainable, resume_errored=True)
    assert restored.fit().num_errors == 0  # Ray runs its unpickled copy of the callback
    assert callback.finish(timeout=60) == first_parent  # the driver's copy shares the writer

    runs = runs_by_name(store, "restored")
    assert len(runs) == 3 and runs["restored"].info.status == "FINISHED"
    again = next(run for run in runs.values() if run.data.params.get("x") == "1")
    assert again.data.tags["autoft.status"] == "completed" and again.info.status == "FINISHED"
    for key in ("train_loss", "eval_accuracy", "lr"):
        assert metric_steps(store, again, key) == [0, 1, 2]
