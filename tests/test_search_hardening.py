"""The CLI on the real embedded default (local Ray, SQLite MLflow) where a new user went wrong:
checks before anything is written, tracking that is never lost silently, a readable console,
resume and retry semantics, Ctrl-C. The trainables are the toy user functions of
``tests.toy_trainable``, so each search takes seconds.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from autoft.cli import best_trials_table
from autoft.cli import main as cli_main
from autoft.tuning.results import TrialRecord
from tests.conftest import REPO
from tests.mlflow_server import free_port

SPACE = {"learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}}


def write_config(folder: Path, name: str = "toy", **changes: object) -> Path:
    config = {"name": name, "trainable": "tests.toy_trainable:quadratic", "space": SPACE,
              "fixed": {"num_epochs": 3},
              "search": {"algorithm": "tpe", "scheduler": "asha", "num_samples": 4,
                         "max_concurrent": 2, "seed": 0},
              "storage": str(folder / "results"), **changes}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def terminal_signals() -> None:
    """Ctrl-C interrupts the child as in a terminal, even when pytest itself runs in a
    background job of a shell without job control, whose children start ignoring SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def autoft(*args: str) -> subprocess.Popen:
    """``autoft ARGS`` as a child process (the toy trainables import from this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "autoft.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=terminal_signals)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def runs(folder: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{folder / 'results' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def assert_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], *names: str) -> None:
    """Exit 2 with one line on stderr naming each of ``names``, and no traceback."""
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert all(name in lines[0] for name in names), lines[0]
    assert "Traceback" not in captured.out + captured.err


# Checked before anything is written (fast: these fail before Ray starts).

@pytest.mark.parametrize(("changes", "names"), [
    ({"search": {"algorithm": "grid", "num_samples": 4}}, ("learning_rate", "step")),
    ({"search": {"algorithm": "tpe", "points_to_evaluate": [{"learning_rate": 5.0}]}},
     ("points_to_evaluate[0]", "learning_rate")),
    ({"search": {"algorithm": "pso"},
      "space": {**SPACE, "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
                "cut_frac": {"type": "float", "low": 0.0, "high": 0.2,
                             "when": {"lr_schedule": "stlr"}}}}, ("pso", "when")),
    ({"search": {"scheduler": "pbt"}, "space": {"dis_blocks": {"type": "int", "low": 0,
                                                                "high": 3}}}, ("pbt",)),
    ({"fixed": {"num_epochs": "three"}, "trainable": "text", "model": "m",
      "data": {"train": "toy.yaml"}}, ("fixed", "num_epochs")),
])
def test_a_bad_search_writes_nothing_and_the_fixed_config_runs_after_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict,
        names: tuple[str, ...]) -> None:
    path = write_config(tmp_path, **changes)
    for command in ("validate", "search"):
        assert_bad_input(capsys, [command, str(path)], str(path), *names)
    assert not (tmp_path / "results" / "toy").exists()
    assert runs(tmp_path, "toy") == []


@pytest.mark.parametrize(("uri", "problem"), [
    ("htp://127.0.0.1:5000", "scheme 'htp'"),
    ("http://127.0.0.1:{closed}", "cannot reach"),
    ("http://127.0.0.1:{refusing}", "refuses this client (HTTP 401)"),
    ("http://127.0.0.1:{not_mlflow}", "not an MLflow tracking server"),
])
def test_a_tracking_store_that_cannot_take_the_runs_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], http_servers: dict[str, int],
        uri: str, problem: str) -> None:
    uri = uri.format(**http_servers)
    path = write_config(tmp_path)
    for command in ("validate", "search"):
        assert_bad_input(capsys, [command, str(path), "--tracking-uri", uri],
                         "tracking.uri", problem)
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def http_servers() -> Iterator[dict[str, int]]:
    """A closed port, a server that answers 401 to everything and one that answers 404."""

    def handler(status: int) -> type[http.server.BaseHTTPRequestHandler]:
        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
                self.send_response(status)
                self.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        return Answer

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(status))
               for status in (401, 404)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"closed": free_port(), "refusing": servers[0].server_port,
           "not_mlflow": servers[1].server_port}
    for server in servers:
        server.shutdown()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trials_without_a_gpu_are_bad_input(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, resources={"cpu": 1, "gpu": 0.5})
    for command in ("validate", "search"):
        assert_bad_input(capsys, [command, str(path)], str(path), "resources.gpu", "no CUDA GPU")
    assert not (tmp_path / "results").exists()


def test_validate_takes_a_train_config_and_says_what_train_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, space=None)
    assert cli_main(["validate", str(path)]) == 0
    assert "train config: `autoft train` runs one" in capsys.readouterr().out


# Searches on the embedded Ray.

@pytest.mark.slow
def test_console_one_line_per_event_then_resume_of_a_finished_search(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    code, out, err = finish(autoft("search", str(path)))
    assert code == 0, err
    events = [line for line in out.splitlines() if line.startswith("trial_")]
    assert sum(" started: " in line for line in events) == 4
    assert sum(line.endswith(("completed", "pruned")) or ": eval_accuracy=" in line
               for line in events) >= 4
    assert "Configuration for experiment" not in out + err  # Ray's own tables stay quiet
    assert len(out.splitlines()) < 60, out
    assert "#/experiments/" in out and out.count("best 4 of 4 trials") == 1
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"#/experiments/{experiment.experiment_id}/runs" in out

    code, again, err = finish(autoft("resume", str(tmp_path / "results" / "toy")))
    assert code == 0, err
    assert "the search had finished; nothing to resume" in again
    assert " started: " not in again  # nothing ran
    children = [r for r in runs(tmp_path, "toy") if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(tmp_path / "results" / "toy", moved / "toy")
    code, _, err = finish(autoft("resume", str(moved / "toy")))
    assert code == 2 and "this search ran in" in err and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_kills_the_parent_run_claims_no_best_and_resume_finishes(tmp_path: Path) -> None:
    path = write_config(tmp_path, trainable="tests.toy_trainable:slow_quadratic",
                        search={"algorithm": "random", "scheduler": "fifo", "num_samples": 4,
                                "max_concurrent": 1, "seed": 0})
    driver = autoft("search", str(path))
    deadline = time.monotonic() + 120
    while not any(r.data.metrics for r in runs(tmp_path, "toy")
                  if "mlflow.parentRunId" in r.data.tags):
        assert time.monotonic() < deadline and driver.poll() is None, "no epoch reported"
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    code, _, err = finish(driver, timeout=120)
    assert code == 130, err
    assert "parent run is marked KILLED" in err and "autoft resume" in err
    parents = [r for r in runs(tmp_path, "toy") if r.data.tags.get("autoft.role") == "search"]
    assert [p.info.status for p in parents] == ["KILLED"]
    assert not (tmp_path / "results" / "toy" / "best_config.yaml").exists()

    code, out, err = finish(autoft("resume", str(tmp_path / "results" / "toy")))
    assert code == 0, err
    assert (tmp_path / "results" / "toy" / "best_config.yaml").is_file()
    children = [r for r in runs(tmp_path, "toy") if "mlflow.parentRunId" in r.data.tags]
    # each trial once (one the driver lost is superseded: among the deleted runs), each ended
    assert len(children) == len({c.data.tags["autoft.trial_id"] for c in children}) == 4
    assert {(c.info.status, c.data.tags["autoft.status"]) for c in children} == {
        ("FINISHED", "completed")}
    parents = [r for r in runs(tmp_path, "toy") if r.data.tags.get("autoft.role") == "search"]
    assert [p.info.status for p in parents] == ["FINISHED"]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_ui_links_the_runs_view_and_stops_its_server_on_sigterm(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("shown")
    client.create_run(experiment_id)
    port = free_port()
    ui = autoft("ui", "--tracking-uri", uri, "--port", str(port))
    try:
        deadline = time.monotonic() + 90
        while not listening(port):
            assert time.monotonic() < deadline and ui.poll() is None, "the UI never listened"
            time.sleep(0.5)
        ui.send_signal(signal.SIGTERM)
        code, out, err = finish(ui, timeout=30)
    finally:
        if ui.poll() is None:
            ui.kill()
    assert f"shown: http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs" in out
    deadline = time.monotonic() + 10
    while listening(port):  # the server went with autoft ui
        assert time.monotonic() < deadline, "the MLflow server still listens"
        time.sleep(0.5)


def test_sync_names_a_bad_timeout_and_a_folder_that_is_no_experiment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_bad_input(capsys, ["sync", str(tmp_path), "--timeout", "-1"], "--timeout")
    assert_bad_input(capsys, ["sync", str(tmp_path)], str(tmp_path), "not an autoft experiment")


def test_the_summary_table_of_trials_that_all_failed_is_its_counts() -> None:
    failed = [TrialRecord(trial_id=str(i), name=f"trial_000{i}", hparams={"learning_rate": 1e-4},
                          status="failed", epochs=0, score=None, error="TrialFailed: NaN")
              for i in range(2)]
    assert best_trials_table(failed, "eval_accuracy") == "best 0 of 2 trials (2 failed)"
