"""MLflow on PostgreSQL, as docker/compose.yaml runs it, under a search that loses its server.

A real PostgreSQL cluster (Debian's package; ``.ci/run`` installs it) and a real ``mlflow server``
on it run as child processes of this test, on 127.0.0.1 only. A short ``autoft search`` (a slow
toy trainable) tracks to that server; after the first results reach MLflow the server is killed
(SIGKILL, as in a crash) and kept down while trials report, end and start, then started again on
the same port and database; the last two trials wait for that, so the search goes on after it.
When the search has ended, MLflow must hold every run, param, metric step and status exactly
once, as Ray Tune recorded them (``result.json``).

MLflow's URI is ``postgresql://`` as in the compose file; SQLAlchemy 2.1 maps that scheme to the
``psycopg`` (3) driver.

Without PostgreSQL (``initdb`` and ``postgres``) or ``psycopg`` the test skips, except under CI
(``CI=true``), where ``.ci/run`` installs PostgreSQL and a skip would hide a broken setup.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.mlflow_server import MlflowServer, free_port, stop_process
from tests.toy_trainable import quadratic
from trainables.api import Reporter

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "pg-outage"
NUM_TRIALS, NUM_EPOCHS = 6, 4
EPOCH_S = 0.8  # one epoch of a trial: trials report, end and start during the outage
OUTAGE_S = 8.0  # how long the server stays down, before the seconds its restart takes


# The trainable (``tests.test_tracking_postgres:slow_quadratic``), imported on Ray's workers.

class _SlowReporter:
    """Passes every epoch on to the real reporter after a pause, like a real epoch."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self.trial = reporter.trial

    def restore(self) -> dict[str, Any] | None:
        return self._reporter.restore()

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        time.sleep(EPOCH_S)
        self._reporter.report(metrics, state)


def slow_quadratic(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """``tests.toy_trainable:quadratic`` with epochs of :data:`EPOCH_S` seconds; trials from
    index ``held_from`` on wait (up to 5 minutes) until the file ``release`` exists."""
    if reporter.trial.index >= int(hparams["held_from"]):
        deadline = time.monotonic() + 300
        while not Path(hparams["release"]).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    return quadratic(hparams, _SlowReporter(reporter))


# The processes.

def _missing(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI, which installs everything this test needs."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: CI must run this test, not skip it)")
    pytest.skip(reason)


def _postgres_bindir() -> Path | None:
    """Debian's newest ``/usr/lib/postgresql/<version>/bin``, else wherever PATH has initdb."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit()
                   else 0)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None or not (Path(initdb).parent / "postgres").is_file():
        return None
    return Path(initdb).parent


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster of this test's own: its database URI for MLflow."""

    uri: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """``initdb`` into a temporary folder and ``postgres`` on 127.0.0.1 and a free port, run as
    the ``postgres`` system user when this test is root (PostgreSQL refuses root); one database
    ``mlflow`` owned by a password-protected role. Stopped by its process id, folder removed."""
    bindir = _postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL is not installed (no initdb/postgres under /usr/lib/postgresql/*/bin"
                 " or on PATH): apt-get install postgresql")
    try:
        import psycopg
    except ImportError:
        _missing("psycopg is not installed (SQLAlchemy 2.1's driver for postgresql:// URIs): "
                 "pip install -e '.[test]'")
    as_user: dict[str, Any] = {}
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no `postgres` system user to run PostgreSQL")
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    # Not under pytest's tmp_path: its parent folders are private to root.
    folder = Path(tempfile.mkdtemp(prefix="autoft-pg-"))
    process = None
    try:
        password = secrets.token_hex(16)
        (folder / "pwfile").write_text(password + "\n")
        if owner is not None:
            for path in (folder, folder / "pwfile"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        log = folder / "postgres.log"
        with open(log, "ab") as output:
            subprocess.run([str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "autoft",
                            "--pwfile", str(folder / "pwfile"), "--auth", "scram-sha-256",
                            "-E", "UTF8", "--locale", "C", "--no-sync"],
                           stdout=output, stderr=subprocess.STDOUT, cwd=folder, check=True,
                           timeout=120, **as_user)
            port = free_port()
            process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(folder / "data"), "-k", str(folder),
                 "-h", "127.0.0.1", "-p", str(port)],
                stdout=output, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
                **as_user)
        connect = {"host": "127.0.0.1", "port": port, "user": "autoft", "password": password,
                   "connect_timeout": 5}
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                connection = psycopg.connect(dbname="postgres", autocommit=True, **connect)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with connection:
            connection.execute("CREATE DATABASE mlflow")
        yield Postgres(f"postgresql://autoft:{password}@127.0.0.1:{port}/mlflow", process, log)
    finally:
        stop_process(process, signal.SIGINT, group=False)  # "fast" shutdown of the postmaster
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres: Postgres, tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path, postgres.uri)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# The test.

def search_config(folder: Path, release: Path) -> Path:
    """A TPE + FIFO search of :data:`NUM_TRIALS` trials, two at a time; the last two wait for
    ``release``."""
    config = {
        "name": EXPERIMENT,
        "trainable": "tests.test_tracking_postgres:slow_quadratic",
        "space": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
            "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
        },
        "fixed": {"num_epochs": NUM_EPOCHS, "held_from": NUM_TRIALS - 2,
                  "release": str(release)},
        "search": {"algorithm": "tpe", "scheduler": "fifo", "num_samples": NUM_TRIALS,
                   "max_concurrent": 2, "seed": 0},
        "resources": {"cpu": 1},
        "storage": str(folder / "results"),
    }
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ray_results(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """Per Ray trial id: its config and the rows it reported, from Ray Tune's result.json."""
    trials: dict[str, dict[str, Any]] = {}
    for result_file in sorted(experiment_dir.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        assert rows, f"{result_file} is empty"
        trials[rows[0]["trial_id"]] = {"config": rows[0]["config"], "rows": rows}
    return trials


def _wait(condition, timeout: float, what: str, process: subprocess.Popen[bytes],
          log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the search ended before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.5)


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.slow
def test_search_on_postgres_loses_nothing_when_the_server_dies(
        mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Imported here, not at the top: Ray's workers import this module for the trainable.
    from mlflow.tracking import MlflowClient

    # This test's own client fails at once instead of retrying for minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    started = time.monotonic()
    client = MlflowClient(mlflow_server.uri)
    driver_log, release = tmp_path / "search.log", tmp_path / "release"

    def results_in_mlflow() -> bool:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        return experiment is not None and any(
            "eval_accuracy" in run.data.metrics
            for run in client.search_runs([experiment.experiment_id]))

    with open(driver_log, "wb") as output:
        driver = subprocess.Popen(
            [sys.executable, "-m", "autoft.cli", "search", str(search_config(tmp_path, release)),
             "--tracking-uri", mlflow_server.uri],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    try:
        _wait(results_in_mlflow, 180, "the first results in MLflow", driver, driver_log)
        down_ms = _now_ms()
        mlflow_server.kill()
        time.sleep(OUTAGE_S)  # trials report, end and start; the last two wait for `release`
        assert driver.poll() is None, driver_log.read_text()
        mlflow_server.start()
        up_ms = _now_ms()
        release.touch()
        try:
            driver.wait(240)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the search did not end:\n{driver_log.read_text()}")
    finally:
        stop_process(driver, signal.SIGKILL, group=True)
    output = driver_log.read_text()
    assert driver.returncode == 0, output
    print(f"postgres outage test: {time.monotonic() - started:.1f} s from the search's start; "
          f"server down {(up_ms - down_ms) / 1000:.1f} s")
    assert "is not answering" in output and "answers again" in output, output
    assert "not sent to" not in output and "rejected and is dropped" not in output, output

    trials = ray_results(tmp_path / "results" / EXPERIMENT)
    assert len(trials) == NUM_TRIALS
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if run.data.tags.get("autoft.role") == "search"]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1 and len(runs) == 1 + NUM_TRIALS, [r.info.run_name for r in runs]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {key: parent.data.params.get(key) for key in ("algorithm", "scheduler", "num_samples",
                                                         "num_epochs")} == {
        "algorithm": "tpe", "scheduler": "fifo", "num_samples": str(NUM_TRIALS),
        "num_epochs": str(NUM_EPOCHS)}
    artifacts = {artifact.path for artifact in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "trials.csv"} <= artifacts, artifacts

    by_trial = {run.data.tags["autoft.trial_id"]: run for run in children}
    assert sorted(by_trial) == sorted(trials), "one child run per Ray trial, no other"
    in_outage = after_outage = 0
    best = float("-inf")
    for trial_id, run in by_trial.items():
        config, rows = trials[trial_id]["config"], trials[trial_id]["rows"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["autoft.status"] == "completed" and run.info.status == "FINISHED"
        sampled = {key: value for key, value in config.items() if key != "autoft_trial"}
        assert run.data.params == {**{key: str(value) for key, value in sampled.items()},
                                   "seed": str(config["autoft_trial"]["seed"])}
        assert [row["epoch"] for row in rows] == list(range(NUM_EPOCHS))
        for key in ("train_loss", "eval_accuracy", "lr"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted((m.step, m.value) for m in history) == [
                (row["epoch"], row[key]) for row in rows], (trial_id, key)
            in_outage += sum(down_ms <= m.timestamp <= up_ms for m in history)
            after_outage += sum(m.timestamp > up_ms for m in history)
        best = max(best, *(row["eval_accuracy"] for row in rows))
    assert sorted(int(run.data.params["seed"]) for run in children) == list(range(NUM_TRIALS))
    assert in_outage > 0, "no epoch was reported while the server was down"
    assert after_outage > 0, "no epoch was reported after the server came back"
    assert parent.data.metrics["best_eval_accuracy"] == pytest.approx(best)
    assert len(client.get_metric_history(parent.info.run_id, "best_eval_accuracy")) == 1
