"""Searches on a real 2-node Ray cluster, and the faults a search must survive there.

The cluster is two ``ray start`` nodes of 1 CPU each on this machine, with token authentication
(:mod:`tests.cluster`); every search is an ``autoft`` child process (the driver) that joins it
through ``ray.address``, each trial takes 1 CPU, two run at once. Trials fine-tune
EfficientNet-Lite0 on a tiny real ImageFolder, so the whole path is real: Ray Tune on the
cluster, epoch checkpoints in ``storage``, MLflow written by the driver.

Where a trial ran: every node keeps its own temp dir, whose raylet names each worker's log after
the worker's pid, and Ray Tune records that ``pid`` with every result
(:meth:`tests.cluster.RayNode.ran`); ``node_ip`` is the same for both nodes on one machine.

Faults: a driver without the cluster's token, the worker node dies mid-trial, the driver is
SIGKILLed, the MLflow server is down for 30 s, a trial's loss becomes NaN, a user's trainable
has a bug. (A CUDA out-of-memory error
cannot happen on these CPU-only machines; it reaches Ray Tune as any other exception of
``fit`` does, like the two failures tested here.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from ray.tune.search.optuna import OptunaSearch

from tests.cluster import LocalRayCluster, RayNode, process_tree
from tests.mlflow_server import MlflowServer
from tests.test_search import (
    assert_complete_tracking,
    epochs_of,
    is_lost,
    results_of,
    runs_of,
    search_config,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EPOCH_METRICS = ("eval_accuracy", "train_loss", "lr")
OUTAGE_S = 30


class Driver:
    """``autoft ARGS`` as a child process that joins the cluster; its output goes to a file."""

    def __init__(self, cluster: LocalRayCluster, log: Path, *args: str) -> None:
        self.log = log
        with open(log, "wb") as output:
            # cwd: Ray adds the driver's directory to the workers' sys.path (``tests.*``).
            self.process = subprocess.Popen([sys.executable, "-m", "autoft.cli", *args],
                                            stdout=output, stderr=subprocess.STDOUT,
                                            env=cluster.env, cwd=REPO)

    def output(self) -> str:
        """Everything the driver printed so far."""
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        """Whether the driver has not exited yet."""
        return self.process.poll() is None

    def finish(self, timeout: float = 600) -> str:
        """Wait for the driver; its output, after checking that it exited with status 0."""
        self.process.wait(timeout)
        assert self.process.returncode == 0, self.output()[-6000:]
        return self.output()

    def kill(self) -> None:
        """SIGKILL the driver (no clean-up of its own), if it still runs."""
        if self.running():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    with LocalRayCluster(num_cpus=1, env=dict(os.environ)) as running:
        running.add_node()
        yield running


@pytest.fixture
def two_nodes(cluster: LocalRayCluster) -> LocalRayCluster:
    """The cluster with its head and a live worker node (a test before may have killed one)."""
    if not any(node.alive() for node in cluster.nodes[1:]):
        cluster.add_node()
    return cluster


@pytest.fixture
def start_driver(two_nodes: LocalRayCluster,
                 tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """Start ``autoft ARGS`` on the cluster; drivers still running at teardown are killed."""
    drivers: list[Driver] = []

    def start(*args: str) -> Driver:
        drivers.append(Driver(two_nodes, tmp_path / f"driver{len(drivers)}.log", *args))
        return drivers[-1]

    yield start
    for driver in drivers:
        driver.kill()


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training and 8 evaluation digit images of 3 classes: 2 steps of 8 per epoch."""
    from autoft.demo import write_digits_imagefolder

    return write_digits_imagefolder(tmp_path_factory.mktemp("digits"), n_train=16, n_eval=8,
                                    classes=3)


def cluster_config(folder: Path, data: Path, name: str, cluster: LocalRayCluster, *,
                   num_samples: int, epochs: int = 2, max_failures: int = 1,
                   **extra: Any) -> Path:
    """A search over the conditional image space that runs on ``cluster``, 1 CPU a trial."""
    search = {"algorithm": "tpe", "scheduler": "fifo", "num_samples": num_samples,
              "max_concurrent": 2, "seed": 0, "max_failures": max_failures,
              **extra.pop("search", {})}
    return search_config(folder, data, name, num_samples, ray={"address": cluster.address},
                         resources={"cpu": 1, **extra.pop("resources", {})},
                         fixed={"num_epochs": epochs, "batch_size": 8},
                         search=search, **extra)


def sqlite_uri(folder: Path) -> str:
    """The default tracking store of a config written by :func:`cluster_config`."""
    return f"sqlite:///{folder / 'results' / 'mlflow.db'}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               driver: Driver | None = None) -> None:
    """Poll ``condition`` every 0.25 s; fail after ``timeout`` s or when ``driver`` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if driver is not None and not driver.running():
            raise AssertionError(f"the driver exited before {what}:\n{driver.output()[-6000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def result_rows(experiment_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each trial folder's results so far, by folder name (folders with a ``result.json``)."""
    return {path.parent.name: results_of(path.parent)
            for path in sorted(experiment_dir.glob("trial_*/result.json"))}


def assert_every_epoch_once(uri: str, experiment: str, epochs: int) -> None:
    """Every child run holds each epoch's metrics at steps 0..epochs-1, each exactly once
    (but the run of a trial lost with a killed driver, which never reported)."""
    client = MlflowClient(uri)
    for child in runs_of(uri, experiment)[1]:
        if is_lost(child):
            continue
        for key in EPOCH_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == list(range(epochs)), (child.data.tags["autoft.trial_id"], key, steps)


def optuna_states(experiment_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """(params, state) of every trial the searcher was told about, from its saved state."""
    searcher = OptunaSearch()
    searcher.restore_from_dir(str(experiment_dir))
    study = searcher._ot_study  # Ray keeps the Optuna study here; it has no public accessor
    return [(trial.params, trial.state.name) for trial in study.trials]


def children_by_status(uri: str, experiment: str) -> tuple[list, list]:
    """(failed, completed) child runs; no child has another status."""
    children = runs_of(uri, experiment)[1]
    statuses = {run.data.tags.get("autoft.status") for run in children}
    assert statuses <= {"failed", "completed"}, statuses
    return ([run for run in children if run.data.tags["autoft.status"] == "failed"],
            [run for run in children if run.data.tags["autoft.status"] == "completed"])


def trial_on(node: RayNode, epochs: int, experiment_dir: Path) -> str | None:
    """A trial that runs on ``node`` and has reported at least one but not all its epochs."""
    for name, rows in result_rows(experiment_dir).items():
        if rows and len(rows) < epochs and node.ran(rows[-1]["pid"]):
            return name
    return None


def follower_pid(cluster: LocalRayCluster) -> int | None:
    """The process of a data-parallel trial's second worker (Ray titles a task's worker
    process ``ray::<function>``), among the cluster's processes."""
    for node in cluster.nodes:
        for pid in process_tree(node.process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_follow"):
                    return pid
    return None


def test_a_two_worker_trial_spans_both_nodes_and_is_retried_when_a_worker_dies(
        start_driver: Callable[..., Driver], two_nodes: LocalRayCluster, tiny_digits: Path,
        tmp_path: Path) -> None:
    config = cluster_config(tmp_path, tiny_digits, "parallel", two_nodes, num_samples=1,
                            epochs=3, resources={"workers": 2})
    experiment_dir = tmp_path / "results" / "parallel"
    driver = start_driver("search", str(config))
    wait_until(lambda: any(result_rows(experiment_dir).values()), 600,
               "the 2-worker trial's first epoch", driver)
    follower = follower_pid(two_nodes)
    assert follower is not None, "no second worker runs"
    os.kill(follower, signal.SIGKILL)  # mid-epoch: the next epoch is under way
    output = driver.finish()

    assert "worker 1 of 2 failed" in output, output[-6000:]
    (rows,) = result_rows(experiment_dir).values()
    assert epochs_of(rows) == [0, 1, 2], "retried from its checkpoint, each epoch once"
    lead = two_nodes.node_of(rows[0]["pid"])
    assert lead is not None and lead is not two_nodes.node_of(follower), "not on both nodes"
    uri = sqlite_uri(tmp_path)
    assert_complete_tracking(uri, "parallel", 1)  # one child run, not one per worker
    assert_every_epoch_once(uri, "parallel", 3)


def test_cluster_refuses_a_driver_without_its_token(two_nodes: LocalRayCluster) -> None:
    join = f"import ray; ray.init(address={two_nodes.address!r})"
    # One connection attempt instead of Ray's 20 (it retries a refused token too).
    env = {**two_nodes.env, "RAY_gcs_server_port_wait_time_s": "1"}
    for changed in ({"RAY_AUTH_TOKEN": "0" * 64}, {"RAY_AUTH_MODE": "disabled"}):
        refused = subprocess.run([sys.executable, "-c", join], env={**env, **changed},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0, changed
        assert "Authentication token is missing or incorrect" in refused.stderr, changed


def test_trials_spread_over_both_nodes(start_driver: Callable[..., Driver],
                                       two_nodes: LocalRayCluster, tiny_digits: Path,
                                       tmp_path: Path) -> None:
    config = cluster_config(tmp_path, tiny_digits, "spread", two_nodes, num_samples=2)
    start_driver("search", str(config)).finish()

    rows = result_rows(tmp_path / "results" / "spread")
    assert sorted(rows) == ["trial_0000", "trial_0001"]
    nodes = {}
    for name, trial_rows in rows.items():
        node = two_nodes.node_of(trial_rows[-1]["pid"])
        assert node is not None, f"{name}: pid {trial_rows[-1]['pid']} ran on no cluster node"
        nodes[name] = node.name
    live = {node.name for node in two_nodes.nodes if node.alive()}
    assert set(nodes.values()) == live and len(live) == 2, nodes
    assert_complete_tracking(sqlite_uri(tmp_path), "spread", 2)
    assert_every_epoch_once(sqlite_uri(tmp_path), "spread", 2)


def test_driver_killed_then_resumed_on_the_cluster(start_driver: Callable[..., Driver],
                                                   two_nodes: LocalRayCluster,
                                                   tiny_digits: Path, tmp_path: Path) -> None:
    config = cluster_config(tmp_path, tiny_digits, "killed", two_nodes, num_samples=3)
    experiment_dir = tmp_path / "results" / "killed"
    driver = start_driver("search", str(config))
    wait_until(lambda: any(epochs_of(r) == [0, 1] for r in result_rows(experiment_dir).values()),
               600, "a finished trial", driver)
    driver.kill()
    rows = result_rows(experiment_dir)
    assert sum(epochs_of(r) == [0, 1] for r in rows.values()) < 3, "killed too late"

    start_driver("resume", str(experiment_dir)).finish()
    # A trial created just before the kill, but not yet in Ray's experiment snapshot, is made
    # again on resume; its first folder stays without results and the new one gets a suffix.
    rows = {name: trial_rows for name, trial_rows in result_rows(experiment_dir).items()
            if trial_rows}
    assert len({row["trial_id"] for trial_rows in rows.values() for row in trial_rows}) == 3
    assert [epochs_of(trial_rows) for trial_rows in rows.values()] == [[0, 1]] * 3, rows
    assert_complete_tracking(sqlite_uri(tmp_path), "killed", 3)
    assert_every_epoch_once(sqlite_uri(tmp_path), "killed", 2)


def test_tracking_server_down_for_30_s(start_driver: Callable[..., Driver],
                                       two_nodes: LocalRayCluster, tiny_digits: Path,
                                       tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.folder.mkdir()
    server.start()
    try:
        config = cluster_config(tmp_path, tiny_digits, "outage", two_nodes, num_samples=4,
                                tracking={"uri": server.uri})
        experiment_dir = tmp_path / "results" / "outage"
        driver = start_driver("search", str(config))
        wait_until(lambda: any(result_rows(experiment_dir).values()), 600,
                   "a trial's first epoch", driver)
        server.stop()
        time.sleep(OUTAGE_S)
        assert driver.running(), "the search ended during the outage: make it longer"
        server.start()
        output = driver.finish()
        assert "is not answering" in output and "answers again" in output, output[-6000:]
        assert_complete_tracking(server.uri, "outage", 4)
        assert_every_epoch_once(server.uri, "outage", 2)
    finally:
        server.stop()


def test_nan_loss_fails_the_trial_and_the_search_goes_on(start_driver: Callable[..., Driver],
                                                         two_nodes: LocalRayCluster,
                                                         tiny_digits: Path,
                                                         tmp_path: Path) -> None:
    # 1e20 diverges to NaN within the first epoch; 1e6 does not (the loss stays finite, ~1e9).
    space = {"learning_rate": {"type": "categorical", "choices": [1.0e-3, 1.0e20]}}
    config = cluster_config(tmp_path, tiny_digits, "nan", two_nodes, num_samples=2,
                            space=space, search={"points_to_evaluate": [
                                {"learning_rate": 1.0e20}, {"learning_rate": 1.0e-3}]})
    output = start_driver("search", str(config)).finish()
    assert "training loss became nan" in output

    failed, completed = children_by_status(sqlite_uri(tmp_path), "nan")
    assert [run.data.params["learning_rate"] for run in failed] == ["1e+20"]
    assert [run.data.params["learning_rate"] for run in completed] == ["0.001"]
    assert "TrialFailed: training loss became nan in epoch 0" in (
        failed[0].data.tags["autoft.error"])
    assert failed[0].info.status == "FAILED"
    assert sorted(optuna_states(tmp_path / "results" / "nan"),
                  key=lambda item: item[0]["learning_rate"]) == [
        ({"learning_rate": 1.0e-3}, "COMPLETE"), ({"learning_rate": 1.0e20}, "FAIL")]


def trainable_with_a_bug(hparams: dict[str, Any], reporter: Any) -> dict[str, float]:
    """A user's trainable (``tests.test_cluster:trainable_with_a_bug``) with a bug: it divides
    by ``warmup_steps``, which its space lets be 0."""
    score = 0.0
    for epoch in range(int(hparams["num_epochs"])):
        score = 1.0 - 1.0 / (hparams["warmup_steps"] * (epoch + 2))
        reporter.report({"epoch": epoch, "train_loss": 1.0 - score, "eval_accuracy": score,
                         "lr": 0.1})
    return {"eval_accuracy": score}


def test_user_trainable_bug_fails_the_trial_and_the_search_goes_on(
        start_driver: Callable[..., Driver], two_nodes: LocalRayCluster, tiny_digits: Path,
        tmp_path: Path) -> None:
    points = [{"warmup_steps": steps} for steps in (0, 1, 2)]
    config = cluster_config(tmp_path, tiny_digits, "bug", two_nodes, num_samples=3,
                            trainable="tests.test_cluster:trainable_with_a_bug",
                            space={"warmup_steps": {"type": "int", "low": 0, "high": 2}},
                            search={"points_to_evaluate": points})
    output = start_driver("search", str(config)).finish()
    assert "ZeroDivisionError" in output

    uri = sqlite_uri(tmp_path)
    failed, completed = children_by_status(uri, "bug")
    assert [run.data.params["warmup_steps"] for run in failed] == ["0"]
    assert sorted(run.data.params["warmup_steps"] for run in completed) == ["1", "2"]
    assert "ZeroDivisionError: float division by zero" in failed[0].data.tags["autoft.error"]
    client = MlflowClient(uri)
    for run in completed:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")]
        assert sorted(steps) == [0, 1]
    assert sorted(optuna_states(tmp_path / "results" / "bug"),
                  key=lambda item: item[0]["warmup_steps"]) == [
        ({"warmup_steps": 0}, "FAIL"), ({"warmup_steps": 1}, "COMPLETE"),
        ({"warmup_steps": 2}, "COMPLETE")]


def test_worker_node_lost_mid_trial(start_driver: Callable[..., Driver],
                                    two_nodes: LocalRayCluster, tiny_digits: Path,
                                    tmp_path: Path) -> None:
    epochs = 3
    config = cluster_config(tmp_path, tiny_digits, "lost", two_nodes, num_samples=3,
                            epochs=epochs, max_failures=2)
    experiment_dir = tmp_path / "results" / "lost"
    worker = two_nodes.nodes[-1]
    driver = start_driver("search", str(config))
    wait_until(lambda: trial_on(worker, epochs, experiment_dir) is not None, 600,
               "a trial on the worker node with an epoch done", driver)
    victim = trial_on(worker, epochs, experiment_dir)
    worker.kill()
    driver.finish()

    rows = result_rows(experiment_dir)
    assert sorted(rows) == [f"trial_{i:04d}" for i in range(3)]
    for name, trial_rows in rows.items():
        assert epochs_of(trial_rows) == list(range(epochs)), (name, trial_rows)
    restarts = [row for row in rows[victim] if row["iterations_since_restore"] == 1]
    assert len(restarts) == 2, rows[victim]
    resumed = restarts[1]  # restored from the epoch checkpoint, not retrained from epoch 0
    assert resumed["epoch"] == resumed["training_iteration"] - 1 > 0
    assert worker.ran(rows[victim][0]["pid"]) and two_nodes.head.ran(resumed["pid"])
    uri = sqlite_uri(tmp_path)
    assert_complete_tracking(uri, "lost", 3)
    assert_every_epoch_once(uri, "lost", epochs)
