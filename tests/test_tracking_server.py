"""The writer against a real ``mlflow server`` that goes down and comes back mid-search."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from autoft.tracking.writer import MlflowWriter
from tests.mlflow_server import MlflowServer

MAX_ENQUEUE_S = 0.05


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    running = MlflowServer(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def timed(call, *args, **kwargs) -> float:
    started = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - started


@pytest.mark.slow
def test_server_down_then_back_loses_and_duplicates_nothing(
        server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="autoft.tracking.writer")
    started = time.monotonic()
    writer = MlflowWriter(server.uri, "outage", tmp_path / "search", retry_initial_s=0.2,
                          retry_max_s=1.0)
    writer.create_run("parent", run_name="outage", tags={"autoft.role": "search"})
    writer.log_params("parent", {"num_samples": 2})
    writer.create_run("t1", run_name="t1", tags={"autoft.trial_id": "t1"}, parent_key="parent")
    writer.log_params("t1", {"learning_rate": 1e-4})
    for epoch in range(3):
        writer.log_metrics("t1", {"train_loss": 1.0 / (epoch + 1), "lr": 0.1}, epoch)
    assert writer.flush(timeout=60)
    assert writer.run_id("t1", 0) is not None

    server.stop()
    slowest = 0.0
    for epoch in range(3, 30):
        slowest = max(slowest, timed(writer.log_metrics, "t1",
                                     {"train_loss": 1.0 / (epoch + 1), "lr": 0.1}, epoch))
    slowest = max(slowest, timed(writer.set_tags, "t1", {"autoft.status": "completed"}))
    slowest = max(slowest, timed(writer.set_terminated, "t1", "FINISHED"))
    slowest = max(slowest, timed(writer.create_run, "t2", run_name="t2",
                                 tags={"autoft.trial_id": "t2"}, parent_key="parent"))
    for epoch in range(2):
        slowest = max(slowest, timed(writer.log_metrics, "t2", {"train_loss": 2.0}, epoch))
    slowest = max(slowest, timed(writer.set_terminated, "parent", "FINISHED"))
    assert slowest < MAX_ENQUEUE_S, f"an enqueue took {slowest * 1000:.1f} ms"
    assert not writer.flush(timeout=2) and writer.unsent() > 0

    server.start()
    assert writer.close(timeout=120)
    elapsed = time.monotonic() - started
    print(f"server-down test: {elapsed:.1f} s, slowest enqueue {slowest * 1000:.2f} ms")

    warnings = [r.getMessage() for r in caplog.records]
    assert sum("is not answering" in message for message in warnings) == 1
    assert any("answers again" in message for message in warnings)
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("outage")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["outage", "t1", "t2"]
    parent_id = runs["outage"].info.run_id
    assert runs["outage"].info.status == "FINISHED"
    assert runs["outage"].data.params == {"num_samples": "2"}
    for name in ("t1", "t2"):
        assert runs[name].data.tags["mlflow.parentRunId"] == parent_id
    assert runs["t1"].info.status == "FINISHED"
    assert runs["t1"].data.tags["autoft.status"] == "completed"
    assert runs["t1"].data.params == {"learning_rate": "0.0001"}
    loss = client.get_metric_history(runs["t1"].info.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in loss) == [(e, 1.0 / (e + 1)) for e in range(30)]
    assert sorted(m.step for m in client.get_metric_history(runs["t1"].info.run_id, "lr")) == (
        list(range(30)))
    assert sorted(m.step for m in client.get_metric_history(runs["t2"].info.run_id,
                                                            "train_loss")) == [0, 1]
