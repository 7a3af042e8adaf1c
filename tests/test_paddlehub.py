"""``autoft paddlehub``: PaddleHub's command line, files and layout on real Ray and MLflow.

The searches run a small finetunee.py of the test's own: a deterministic score of its two
hyperparameters (best at x = 0.7, n = 6), the PaddleHub protocol around it, and a crash on
request (``crash_run round1/model-0`` fails exactly that run).
"""

from __future__ import annotations

import json
import os
import struct
import textwrap
from collections import Counter
from pathlib import Path

import mlflow
import pytest
import ray
import torch
import yaml

from autoft import cli
from autoft.compat.paddlehub import (
    Run,
    best_run,
    log_file_text,
    parse_cuda,
    pass_through,
    visible_gpus,
    write_visualization,
)
from autoft.core.errors import InputError

FINETUNEE = textwrap.dedent("""
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--saved_params_dir", required=True)
    parser.add_argument("--model_path")
    parser.add_argument("--tag")
    parser.add_argument("--crash_run")
    args = parser.parse_args()
    os.makedirs(args.saved_params_dir)
    with open(os.path.join(args.saved_params_dir, "received.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "model_path": args.model_path,
                   "tag": args.tag}, f)
    if args.crash_run and args.saved_params_dir.endswith(args.crash_run):
        sys.exit("deliberate crash")
    print("AutoFinetuneEval\\t%r" % (1 - (args.x - 0.7) ** 2 - ((args.n - 6) / 10) ** 2))
""")
INIT_X, INIT_N = 0.05, 1
INIT_SCORE = 1 - (INIT_X - 0.7) ** 2 - ((INIT_N - 6) / 10) ** 2
PARAMS = {"param_list": [
    {"name": "x", "init_value": INIT_X, "type": "float", "greater_than": 0.0, "lower_than": 1.0},
    {"name": "n", "init_value": INIT_N, "type": "int", "greater_than": 0, "lower_than": 10},
]}


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding finetunee.py and hparam.yaml, and the current folder of the test."""
    (tmp_path / "finetunee.py").write_text(FINETUNEE, encoding="utf-8")
    (tmp_path / "hparam.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for the module's searches (the driver joins an initialised Ray)."""
    ray.init(address="local", include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("param_list", "message"), [
    (None, "hparam.yaml: no param_list"),
    ([{"name": "x", "init_value": 0.1, "type": "float", "lower_than": 1.0}],
     "hparam.yaml: x: no greater_than (lower bound)"),
    ([{"name": "x", "init_value": 0.1, "type": "float", "greater_than": 1.0, "lower_than": 1.0}],
     "hparam.yaml: x: greater_than (1) must be below lower_than (1)"),
    ([{"name": "x", "init_value": 1, "type": "str", "greater_than": 0, "lower_than": 2}],
     "hparam.yaml: x: type must be int or float"),
])
def test_a_bad_param_file_exits_2_with_one_line(workdir: Path, capsys, param_list,
                                                 message: str) -> None:
    content = {"params": []} if param_list is None else {"param_list": param_list}
    (workdir / "hparam.yaml").write_text(yaml.safe_dump(content), encoding="utf-8")
    assert cli.main(["paddlehub", "finetunee.py", "--param_file=hparam.yaml"]) == 2
    assert _one_error_line(capsys).startswith(f"autoft: error: {message}")
    assert not list(workdir.glob("output_*"))


@pytest.mark.parametrize(("argv", "message"), [
    (["missing.py", "--param_file", "hparam.yaml"], "paddlehub: missing.py: no such script"),
    (["finetunee.py", "--param_file", "absent.yaml"], "absent.yaml: param file not found"),
    (["finetunee.py"], "the following arguments are required: --param_file"),
    (["finetunee.py", "--param_file=hparam.yaml", "--tuning_strategy=pso"],
     "argument --tuning_strategy: invalid choice: 'pso'"),
    (["finetunee.py", "--param_file=hparam.yaml", "--evaluate_choice", "populationbased"],
     "argument --evaluate_choice: invalid choice"),
    (["finetunee.py", "--param_file=hparam.yaml", "--popsize=0"], "--popsize must be at least 1"),
    (["finetunee.py", "--param_file=hparam.yaml", "--cuda=gpu1"], "argument --cuda: expected"),
    (["finetunee.py", "--param_file=hparam.yaml", "max_seq_len"], "name value pairs"),
])
def test_bad_command_lines_exit_2_with_one_line(workdir: Path, capsys, argv: list[str],
                                                message: str) -> None:
    assert cli.main(["paddlehub", *argv]) == 2
    assert message in _one_error_line(capsys)


def test_cuda_lists_and_pass_through_options() -> None:
    assert parse_cuda("['1','2']") == parse_cuda("[1,2]") == parse_cuda("1,2") == ["1", "2"]
    assert parse_cuda("0") == ["0"]
    assert pass_through(["max_seq_len", "128", "--data", "a b"]) == ["--max_seq_len=128",
                                                                     "--data=a b"]
    with pytest.raises(InputError):
        pass_through(["max_seq_len"])


def test_visible_gpus_sets_and_restores_cuda_visible_devices(
        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with visible_gpus(["0"]) as usable:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert usable == torch.cuda.is_available()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    warning = capsys.readouterr().err
    assert ("the runs use the CPU" in warning) == (not usable)


def _runs(tmp_path: Path) -> list[Run]:
    def run(r: int, j: int, x: float, score: float | None) -> Run:
        folder = tmp_path / f"round{r}"
        return Run(r, j, {"x": x, "n": 2}, score, score is None, folder / f"log-{j}.info",
                   folder / f"model-{j}")

    return [run(0, 0, 0.1, 0.5), run(0, 1, 0.2, 0.8), run(1, 0, 0.3, None), run(1, 1, 0.4, 0.6)]


def test_log_file_lists_every_round_with_its_best_and_the_best_so_far(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    assert best_run(runs) == runs[1]
    text = log_file_text(["x", "n"], runs, tmp_path / "best_model")
    assert text.startswith("The final best hyperparameters:\nx\t:\t0.2\nn\t:\t2\n"
                           "The final best eval score is 0.8.\n")
    assert "Round 0:\nx\tn\teval_value\tsaved_params_dir\n" in text
    assert f"0.3\t2\tcrashed\t{tmp_path}/round1/model-0 (crashed, see " in text
    assert ("The local best eval value in round 1 is 0.6; the best so far is 0.8 (x=0.2, n=2)."
            in text)


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard event files in ``folder`` (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in folder.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_visualization_has_paddlehubs_tags(tmp_path: Path) -> None:
    write_visualization(tmp_path / "visualization", ["x", "n"], _runs(tmp_path), 2)
    overall = _scalars(tmp_path / "visualization")
    assert overall["hyperparameter_tuning/best_eval_value"] == [(0, pytest.approx(0.8)),
                                                                (1, pytest.approx(0.8))]
    assert overall["hyperparameter_tuning/x"] == [(0, pytest.approx(0.2)),
                                                  (1, pytest.approx(0.2))]
    member = _scalars(tmp_path / "visualization" / "pop_0")
    assert member["population_transformation/x"] == [(0, pytest.approx(0.1)),
                                                     (1, pytest.approx(0.3))]
    assert member["population_transformation/eval_value"] == [(0, pytest.approx(0.5))]


def _mlflow_runs(output: Path) -> tuple[list, list]:
    client = mlflow.MlflowClient(f"sqlite:///{output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autofinetune")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("autoft.role") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return parents, children


def _received(output: Path, rounds: int, popsize: int) -> dict[tuple[int, int], dict]:
    return {(r, j): json.loads((output / f"round{r}/model-{j}/received.json").read_text())
            for r in range(rounds) for j in range(popsize)}


def _check_layout(output: Path, rounds: int, popsize: int) -> None:
    assert sorted(p.name for p in output.glob("round*")) == [f"round{r}" for r in range(rounds)]
    for r in range(rounds):
        folder = output / f"round{r}"
        assert sorted(p.name for p in folder.glob("log-*.info")) == [
            f"log-{j}.info" for j in range(popsize)]
        assert sorted(p.name for p in folder.glob("model-*")) == [
            f"model-{j}" for j in range(popsize)]
    assert (output / "log_file.txt").is_file()
    assert (output / "best_model" / "received.json").is_file()
    for folder in [output / "visualization", *(output / f"visualization/pop_{j}"
                                               for j in range(popsize))]:
        assert list(folder.glob("events.out.tfevents.*")), folder


def _best_score(output: Path) -> float:
    text = (output / "log_file.txt").read_text()
    line = next(line for line in text.splitlines() if line.startswith("The final best eval"))
    return float(line.removeprefix("The final best eval score is ").rstrip("."))


@pytest.mark.slow
def test_hazero_fulltrail_survives_a_crash_and_logs_paddlehubs_layout(
        workdir: Path, local_ray, capsys) -> None:
    popsize, rounds = 3, 2
    status = cli.main(["paddlehub", "finetunee.py", "--param_file=hparam.yaml",
                       f"--popsize={popsize}", "--round", str(rounds), "--output_dir=out",
                       "--tuning_strategy=hazero", "--cuda=['0']",
                       "tag", "hello", "crash_run", "round1/model-0"])
    out = capsys.readouterr().out
    assert status == 0
    output = workdir / "out"
    _check_layout(output, rounds, popsize)
    received = _received(output, rounds, popsize)
    assert all(r["tag"] == "hello" and r["cwd"] == str(workdir) and r["model_path"] is None
               for r in received.values())
    assert received[0, 0]["argv"][:2] == [f"--x={INIT_X}", f"--n={INIT_N}"]  # the first run
    assert not any(a.startswith(("--seed", "--num_epochs")) for r in received.values()
                   for a in r["argv"])
    crash_log = output / "round1" / "log-0.info"
    assert "deliberate crash" in crash_log.read_text()
    assert "WARNING: the program run with hyperparameters x=" in out
    assert f"crashed, see {crash_log}" in out
    assert (output / "log_file.txt").read_text().count("\tcrashed\t") == 1
    assert _best_score(output) > INIT_SCORE
    parents, children = _mlflow_runs(output)
    assert len(parents) == 1 and len(children) == popsize * rounds
    assert Counter(r.data.tags["autoft.status"] for r in children) == {
        "completed": popsize * rounds - 1, "failed": 1}
    assert parents[0].data.params["algorithm"] == "cmaes"


@pytest.mark.slow
def test_pshe2_modelbased_starts_later_rounds_from_earlier_models(
        workdir: Path, local_ray) -> None:
    popsize, rounds = 2, 3
    status = cli.main(["paddlehub", "finetunee.py", "--param_file", "hparam.yaml",
                       "--popsize", str(popsize), "--round", str(rounds), "--output_dir", "out",
                       "--evaluate_choice=modelbased", "--tuning_strategy=pshe2"])
    assert status == 0
    output = workdir / "out"
    _check_layout(output, rounds, popsize)
    for (r, _), received in _received(output, rounds, popsize).items():
        if r == 0:
            assert received["model_path"] is None
        else:
            start = Path(received["model_path"])
            assert start.parent.parent == output and int(start.parent.name[5:]) < r
    assert _best_score(output) > INIT_SCORE
    parents, children = _mlflow_runs(output)
    assert len(parents) == 1 and len(children) == popsize * rounds
    assert parents[0].data.params["algorithm"] == "pso"


@pytest.mark.slow
def test_the_example_finetunes_efficientnet_modelbased(tmp_path: Path, shared_data: Path,
                                                       local_ray) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "paddlehub"
    status = cli.main(["paddlehub", str(example / "finetunee.py"),
                       f"--param_file={example / 'hparam.yaml'}", "--popsize=1", "--round=2",
                       f"--output_dir={tmp_path / 'out'}", "--evaluate_choice=modelbased",
                       "max_train_samples", "16", "max_eval_samples", "16"])
    assert status == 0
    output = tmp_path / "out"
    first, second = (output / f"round{r}" / "log-0.info" for r in range(2))
    assert "AutoFinetuneEval\t" in first.read_text() and "AutoFinetuneEval\t" in second.read_text()
    assert f"starting from {output / 'round0' / 'model-0' / 'model.pth'}\n" in second.read_text()
    assert (output / "best_model" / "model.pth").is_file()
    parents, children = _mlflow_runs(output)
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["autoft.status"] for r in children} == {"completed"}
