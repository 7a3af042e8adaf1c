"""The script trainable (PaddleHub's finetunee.py protocol) without Ray: real subprocesses."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest

from autoft.core.config import Config, config_from_mapping
from autoft.core.errors import InputError
from tests.reporters import ListReporter
from trainables import load_trainable
from trainables.api import TrialFailed
from trainables.script import (
    best_earlier_model,
    command,
    option_value,
    parse_score,
    prepare,
    run_paths,
    script_hparams,
)

# Records what it received, then prints its score: 1 - (x - 0.5)^2, or fails on request.
SCRIPT = textwrap.dedent("""
    import argparse, json, os, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--saved_params_dir", required=True)
    parser.add_argument("--model_path")
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--mode", default="ok")
    args = parser.parse_args()
    os.makedirs(args.saved_params_dir, exist_ok=True)
    with open(os.path.join(args.saved_params_dir, "received.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, f)
    print("fine-tuning ...")
    if args.mode == "crash":
        sys.exit(3)
    if args.mode == "sleep":
        time.sleep(30)
    if args.mode != "silent":
        print("AutoFinetuneEval\\t0.1")
        print(f"AutoFinetuneEval\\t{1 - (args.x - 0.5) ** 2}")
""")


def _config(tmp_path: Path, *args: str, timeout_s: float | None = None) -> Config:
    script = tmp_path / "finetunee.py"
    script.write_text(SCRIPT, encoding="utf-8")
    return config_from_mapping({
        "name": "script-test", "trainable": "script",
        "script": {"path": "finetunee.py", "args": list(args), "timeout_s": timeout_s,
                   "output_dir": "out"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "fixed": {"num_epochs": 1, "learning_rate": 0.01},
        "storage": "out",
    }, tmp_path)


def _received(config: Config, index: int = 0) -> dict:
    paths = run_paths(config.script.output_dir, index, config.search.max_concurrent)
    return json.loads((paths.model / "received.json").read_text())


def test_run_paths_follow_paddlehubs_layout() -> None:
    paths = run_paths(Path("out"), 5, 2)
    assert (paths.round, paths.member) == (2, 1)
    assert paths.log == Path("out/round2/log-1.info")
    assert paths.model == Path("out/round2/model-1")


@pytest.mark.parametrize(("line", "score"), [
    ("AutoFinetuneEval\t0.875\n", 0.875),
    ("AutoFinetuneEval\t-3\r\n", -3.0),
    ("AutoFinetuneEval\t1e-2", 0.01),
    ("AutoFinetuneEval 0.9", None),
    ("AutoFinetuneEval\tnan", None),
    ("AutoFinetuneEval\tgood", None),
    ("acc\t0.9", None),
])
def test_parse_score(line: str, score: float | None) -> None:
    assert parse_score(line) == score


def test_option_values_and_the_driver_hparams() -> None:
    assert [option_value(v) for v in (16, 0.1, 1e-05, True, "stlr")] == [
        "16", "0.1", "1e-05", "True", "stlr"]
    hparams = {"x": 0.2, "num_epochs": 1, "seed": 7, "max_len": 64}
    assert script_hparams(hparams, frozenset({"x"})) == {"x": 0.2, "max_len": 64}
    assert script_hparams(hparams, frozenset({"x", "seed"})) == {"x": 0.2, "seed": 7,
                                                                 "max_len": 64}


def test_best_earlier_model_is_the_best_scored_run_with_saved_parameters(
        tmp_path: Path) -> None:
    def run(round_: int, member: int, score: float | None, saved: bool = True) -> Path:
        paths = run_paths(tmp_path, round_ * 3 + member, 3)
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        paths.log.write_text("step 1\n" + (f"AutoFinetuneEval\t{score}\n" if score else ""))
        if saved:
            paths.model.mkdir()
        return paths.model

    run(0, 0, 0.5)
    best = run(0, 1, 0.7)
    run(0, 2, 0.95, saved=False)  # no parameters to start from
    run(1, 0, None)  # crashed
    later = run(2, 0, 0.99)
    assert best_earlier_model(tmp_path, 0) is None
    assert best_earlier_model(tmp_path, 1) == best
    assert best_earlier_model(tmp_path, 2) == best
    assert best_earlier_model(tmp_path, 3) == later


def test_command_order_is_paddlehubs(tmp_path: Path) -> None:
    config = _config(tmp_path, "--max_seq_len=128")
    plan = prepare(config)
    paths = run_paths(plan.root, 4, 2)
    argv = command(plan, {"x": 0.25}, paths, tmp_path / "out/round1/model-0")
    assert argv[:3] == [sys.executable, "-u", str(tmp_path / "finetunee.py")]
    assert argv[3:] == ["--x=0.25", f"--saved_params_dir={paths.model}",
                        f"--model_path={tmp_path / 'out/round1/model-0'}", "--max_seq_len=128"]


def test_fit_runs_the_script_in_the_launch_folder_and_reports_its_last_score(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launch = tmp_path / "launch"
    launch.mkdir()
    monkeypatch.chdir(launch)
    config = _config(tmp_path, "--mode=ok")
    trainable = load_trainable("script")
    reporter = ListReporter()
    metrics = trainable.fit(config, trainable.prepare(config), {"x": 0.25, "num_epochs": 1,
                                                                "seed": 3}, reporter)
    assert reporter.reports == [metrics]
    assert metrics["epoch"] == 0 and math.isclose(metrics["eval_accuracy"], 1 - 0.25 ** 2)
    received = _received(config)
    assert received["cwd"] == str(launch)
    model_dir = config.script.output_dir / "round0" / "model-0"
    assert received["argv"] == ["--x=0.25", f"--saved_params_dir={model_dir}", "--mode=ok"]
    log = (config.script.output_dir / "round0" / "log-0.info").read_text()
    assert log.startswith("fine-tuning ...\n") and log.endswith(f"{metrics['eval_accuracy']}\n")


def test_fit_reports_the_learning_rate_it_was_given(tmp_path: Path) -> None:
    config = _config(tmp_path)
    reporter = ListReporter()
    load_trainable("script").fit(config, prepare(config), {"x": 0.5, "learning_rate": 0.01},
                                 reporter)
    assert reporter.reports[0]["lr"] == 0.01
    assert _received(config)["argv"][:2] == ["--x=0.5", "--learning_rate=0.01"]


@pytest.mark.parametrize(("mode", "why"), [
    ("crash", "exit status 3"),
    ("silent", "it printed no 'AutoFinetuneEval<TAB>score' line"),
    ("sleep", "no result after 2 s, stopped"),
])
def test_a_failing_run_is_a_failed_trial_that_names_hyperparameters_and_log(
        tmp_path: Path, mode: str, why: str) -> None:
    config = _config(tmp_path, f"--mode={mode}", timeout_s=2)
    reporter = ListReporter()
    with pytest.raises(TrialFailed) as failure:
        load_trainable("script").fit(config, prepare(config), {"x": 0.3}, reporter)
    log = config.script.output_dir / "round0" / "log-0.info"
    assert str(failure.value) == (f"the program run with hyperparameters x=0.3 crashed ({why}), "
                                  f"see {log}")
    assert "fine-tuning ..." in log.read_text()
    assert reporter.reports == []


def test_prepare_needs_the_script_section(tmp_path: Path) -> None:
    config = _config(tmp_path).model_copy(update={"script": None})
    with pytest.raises(InputError, match="script: required"):
        prepare(config)


def test_a_search_config_with_a_paddlehub_script_validates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autoft import cli

    example = Path(__file__).resolve().parents[1] / "examples" / "paddlehub"
    config = tmp_path / "search.yaml"
    config.write_text(textwrap.dedent(f"""
        name: ants-bees-script
        trainable: script
        script: {{path: {example / 'finetunee.py'}, args: ["--max_train_samples=64"]}}
        space: {example / 'hparam.yaml'}
        fixed: {{num_epochs: 1}}
        search: {{algorithm: tpe, scheduler: fifo, num_samples: 8, max_concurrent: 2}}
    """), encoding="utf-8")
    assert cli.main(["validate", str(config)]) == 0
    out = capsys.readouterr().out
    assert "trainable script" in out
    assert "initial point 1: learning_rate=0.0001, batch_size=16" in out
