"""The background MLflow writer on a real SQLite store: order, completeness, spool replay."""

from __future__ import annotations

import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from autoft.tracking.writer import MlflowWriter, WriterClosedError, tracking_dir

WRITER_LOG = "autoft.tracking.writer"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    return request.node.name


def unreachable_uri() -> str:
    """An http URI where nothing listens (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def spooled_rows(writer: MlflowWriter) -> int:
    """Rows left in the ``ops`` table of a closed writer's spool, applied or not."""
    with closing(sqlite3.connect(writer.spool_path)) as spool:
        return spool.execute("SELECT COUNT(*) FROM ops").fetchone()[0]


def steps_and_values(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    history = client.get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def enqueue_search(writer: MlflowWriter, epochs: range) -> None:
    """A parent, one nested child with params, metrics per epoch, tags and a status."""
    writer.create_run("parent", run_name="search", tags={"autoft.role": "search"})
    writer.create_run("t1", run_name="t1", tags={"autoft.trial_id": "t1"}, parent_key="parent")
    writer.log_params("t1", {"learning_rate": 1e-4, "lr_schedule": "stlr"})
    for epoch in epochs:
        writer.log_metrics("t1", {"train_loss": 1.0 / (epoch + 1), "lr": 0.5 * epoch}, epoch)
    writer.set_tags("t1", {"autoft.status": "completed"})
    writer.set_terminated("t1", "FINISHED")


def assert_search_arrived(uri: str, experiment: str, writer: MlflowWriter, epochs: range) -> None:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 2
    parent_id, child_id = writer.run_id("parent", 0), writer.run_id("t1", 0)
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["autoft.status"] == "completed"
    assert child.info.status == "FINISHED" and child.info.run_name == "t1"
    assert child.data.params == {"learning_rate": "0.0001", "lr_schedule": "stlr"}
    assert steps_and_values(client, child_id, "train_loss") == [
        (epoch, 1.0 / (epoch + 1)) for epoch in epochs]
    assert [step for step, _ in steps_and_values(client, child_id, "lr")] == list(epochs)


def test_operations_arrive_in_order_exactly_once(store: str, experiment: str,
                                                 tmp_path: Path) -> None:
    writer = MlflowWriter(store, experiment, tmp_path)
    enqueue_search(writer, range(5))
    writer.log_params("parent", {"long": "x" * (MAX_PARAM_VAL_LENGTH + 10), "num_samples": 4})
    writer.log_metrics("parent", {"best_eval_accuracy": 0.75}, 0)
    (tmp_path / "best_config.yaml").write_text("name: x\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "history.png").write_bytes(b"png")
    writer.log_artifacts("parent", [tmp_path / "best_config.yaml", tmp_path / "plots"])
    assert writer.close(timeout=60)

    assert_search_arrived(store, experiment, writer, range(5))
    client = MlflowClient(store)
    parent = client.get_run(writer.run_id("parent", 0))
    assert len(parent.data.params["long"]) == MAX_PARAM_VAL_LENGTH
    assert parent.data.metrics == {"best_eval_accuracy": 0.75}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "best_config.yaml", "plots"}
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == [
        "plots/history.png"]
    assert writer.unsent() == 0 and spooled_rows(writer) == 0  # applied rows are deleted


def test_a_tiny_queue_overflows_to_the_spool_in_order(store: str, experiment: str,
                                                      tmp_path: Path) -> None:
    writer = MlflowWriter(store, experiment, tmp_path, max_queue=2)
    enqueue_search(writer, range(40))
    assert writer.last_step("t1") == 39 and writer.has_run("t1") and not writer.has_run("t2")
    assert writer.close(timeout=120)
    assert_search_arrived(store, experiment, writer, range(40))


def test_close_without_a_store_keeps_the_spool_and_the_next_writer_replays_it(
        store: str, experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WRITER_LOG)
    down = MlflowWriter(unreachable_uri(), experiment, tmp_path, retry_initial_s=0.05,
                        retry_max_s=0.1)
    started = time.monotonic()
    enqueue_search(down, range(3))
    assert time.monotonic() - started < 0.5
    assert not down.close(timeout=1.0)
    assert down.unsent() == 8 and down.run_id("parent", 0) is None
    assert spooled_rows(down) == 8
    with pytest.raises(WriterClosedError):
        down.log_metrics("t1", {"lr": 1.0}, 3)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("is not answering" in message for message in messages) == 1
    assert any("8 operation(s) not sent" in message and str(down.spool_path) in message
               for message in messages)

    replay = MlflowWriter(store, experiment, tmp_path)
    assert replay.has_run("t1") and replay.last_step("t1") == 2
    assert replay.close(timeout=60)
    assert_search_arrived(store, experiment, replay, range(3))


CRASHING_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from autoft.tracking.writer import MlflowWriter
    writer = MlflowWriter(sys.argv[1], sys.argv[2], sys.argv[3])
    writer.create_run("parent", run_name="search", tags={"autoft.role": "search"})
    writer.create_run("t1", run_name="t1", tags={"autoft.trial_id": "t1"}, parent_key="parent")
    writer.log_params("t1", {"learning_rate": 1e-4, "lr_schedule": "stlr"})
    for epoch in range(4):
        writer.log_metrics("t1", {"train_loss": 1.0 / (epoch + 1), "lr": 0.5 * epoch}, epoch)
    os.kill(os.getpid(), signal.SIGKILL)  # dies without close() while the writer works
""")


def test_operations_of_a_process_that_died_are_replayed(store: str, experiment: str,
                                                        tmp_path: Path) -> None:
    died = subprocess.run([sys.executable, "-c", CRASHING_DRIVER, unreachable_uri(),
                           experiment, str(tmp_path)], timeout=120)
    assert died.returncode == -signal.SIGKILL

    writer = MlflowWriter(store, experiment, tmp_path)
    assert writer.last_step("t1") == 3
    writer.set_tags("t1", {"autoft.status": "completed"})
    writer.set_terminated("t1", "FINISHED")
    assert writer.close(timeout=60)
    assert_search_arrived(store, experiment, writer, range(4))


def test_a_lost_spool_does_not_duplicate_runs(store: str, experiment: str,
                                                   tmp_path: Path) -> None:
    first = MlflowWriter(store, experiment, tmp_path)
    enqueue_search(first, range(2))
    assert first.close(timeout=60)
    for path in tracking_dir(tmp_path).iterdir():  # as if it died right after create_run
        path.unlink()

    second = MlflowWriter(store, experiment, tmp_path)
    assert not second.has_run("t1")
    second.create_run("parent", run_name="search", tags={"autoft.role": "search"})
    second.create_run("t1", run_name="t1", tags={"autoft.trial_id": "t1"}, parent_key="parent")
    assert second.close(timeout=60)
    assert second.run_id("t1", 0) == first.run_id("t1", 0)
    assert_search_arrived(store, experiment, second, range(2))


def test_a_rejected_operation_is_dropped_and_the_rest_goes_on(
        store: str, experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WRITER_LOG)
    writer = MlflowWriter(store, experiment, tmp_path)
    enqueue_search(writer, range(2))
    writer.log_params("t1", {"learning_rate": 2e-4})  # MLflow params cannot change
    writer.log_metrics("ghost", {"lr": 1.0}, 0)  # a run that was never created
    writer.log_metrics("t1", {"train_loss": 1 / 3, "lr": 1.0}, 2)
    assert writer.close(timeout=60)
    assert_search_arrived(store, experiment, writer, range(3))
    assert sum("rejected and is dropped" in r.getMessage() for r in caplog.records) == 2


def test_one_writer_per_folder_and_identifying_tags_are_required(tmp_path: Path) -> None:
    writer = MlflowWriter(unreachable_uri(), "x", tmp_path)
    with pytest.raises(RuntimeError, match="in use"):
        MlflowWriter(unreachable_uri(), "x", tmp_path)
    with pytest.raises(ValueError, match="identifying tags"):
        writer.create_run("t1", run_name="t1", tags={})
    with pytest.raises(ValueError, match="status"):
        writer.set_terminated("t1", "DONE")
    assert writer.unsent() == 0 and not writer.has_run("t1")  # nothing spooled
    assert writer.close(timeout=0.2)
    MlflowWriter(unreachable_uri(), "x", tmp_path).close(timeout=0.2)  # free once closed
