"""The trained model in MLflow, against a real ``mlflow server`` on 127.0.0.1: ``autoft train
--register`` logs it with its run, registers a version tagged with the search and the trial the
exported config came from, and ``mlflow models serve`` answers a REST request with it.

The search is stood in for by its MLflow runs (a parent run and a trial's child run, made with
MLflow's client), so the test trains one tiny model (a 2-layer BERT) and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from autoft.cli import main as cli_main
from tests.mlflow_server import MLFLOW, MlflowServer, free_port, stop_process
from tests.test_trainables_loop import tiny_bert

pytestmark = pytest.mark.slow

SENTENCES = {"pos": ["a good film", "great acting", "a joy"], "neg": ["a bad film", "awful",
                                                                      "dull and cold"]}


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s: {log.read_text()[-3000:]}")


def test_a_registered_version_names_its_trial_and_mlflow_serves_it(tmp_path: Path,
                                                                    capsys) -> None:
    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server")
    server.start()
    serving = None
    try:
        client = MlflowClient(server.uri)
        experiment = client.create_experiment("registry")
        parent = client.create_run(experiment, tags={"autoft.role": "search"})
        trial = client.create_run(experiment, tags={"autoft.trial_id": "a1b2c_00003",
                                                    "mlflow.parentRunId": parent.info.run_id})
        rows = "".join(f"{s} {i}\t{label}\n" for i in range(6)
                       for label, sentences in SENTENCES.items() for s in sentences)
        (tmp_path / "train.tsv").write_text(rows, encoding="utf-8")
        (tmp_path / "train.yaml").write_text(json.dumps({
            "name": "registry", "trainable": "text", "model": str(tiny_bert(tmp_path / "bert")),
            "data": {"train": "train.tsv"}, "fixed": {"num_epochs": 1, "batch_size": 8},
            "tracking": {"uri": server.uri}, "storage": "results",
            "origin": {"experiment_dir": str(tmp_path / "results" / "registry"),
                       "trial": "trial_0003", "trial_id": "a1b2c_00003"}}))
        assert cli_main(["train", str(tmp_path / "train.yaml"), "--register", "tiny"]) == 0
        assert "registered: tiny/1" in capsys.readouterr().out
        version = client.get_model_version("tiny", "1")
        train_run = client.get_run(version.run_id)
        assert train_run.data.tags["autoft.role"] == "train"
        assert train_run.data.tags["autoft.origin_trial"] == "trial_0003"
        assert {key: version.tags[key] for key in (
            "autoft.search_run_id", "autoft.trial_run_id", "autoft.trial_id",
            "autoft.train_run_id")} == {
            "autoft.search_run_id": parent.info.run_id, "autoft.trial_run_id": trial.info.run_id,
            "autoft.trial_id": "a1b2c_00003", "autoft.train_run_id": version.run_id}

        port, log = free_port(), tmp_path / "serve.log"
        with log.open("wb") as output:
            serving = subprocess.Popen(
                [str(MLFLOW), "models", "serve", "-m", "models:/tiny/1", "--env-manager",
                 "local", "--host", "127.0.0.1", "--port", str(port)], stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "MLFLOW_TRACKING_URI": server.uri, "HF_HUB_OFFLINE": "1",
                     # it runs uvicorn from PATH, as from an activated virtual environment
                     "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}"})
        wait_for(f"http://127.0.0.1:{port}/ping", serving, log)
        texts = ["a good film", "a bad film"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": texts}).encode(),
            {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.loads(answer.read())["predictions"]
        assert [set(p) for p in predictions] == [{"label", "score"}] * 2
        (tmp_path / "new.tsv").write_text("".join(f"{t}\n" for t in texts))
        assert cli_main(["predict", str(tmp_path / "results" / "registry-model"),
                         str(tmp_path / "new.tsv"), "-o", str(tmp_path / "p.jsonl")]) == 0
        ours = [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text()
                .splitlines()]
        assert [p["label"] for p in predictions] == ours  # served as autoft predicts
    finally:
        stop_process(serving, signal.SIGTERM, group=True)
        server.stop()
