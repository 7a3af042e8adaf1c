"""A user function as the trainable (``trainable: package.module:function``): the values autoft
itself reads (``num_epochs``, ``seed``, ``batch_size``) keep their rules, and a function that
declares its hyperparameters as a pydantic model gets them checked up front and at each trial.

Every bad case runs ``autoft validate`` and ``autoft search`` and must exit 2 with one line
naming the config and the key, writing nothing (``test_bad_input.judge``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from autoft import api
from autoft.cli import main as cli_main
from tests.test_bad_input import judge
from tests.toy_trainable import QuadraticParams, typed_quadratic
from trainables.api import TrialContext, TrialFailed
from trainables.registry import declared_model, load_trainable

SPACE = {"learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}}


def write(folder: Path, trainable: str = "tests.toy_trainable:quadratic",
          space: dict[str, Any] | None = None, **fixed: Any) -> Path:
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump({
        "name": "function", "trainable": trainable, "space": space or SPACE, "fixed": fixed,
        "storage": str(folder / "results"), "search": {"num_samples": 2}}))
    return path


@pytest.mark.parametrize(("fixed", "key", "says"), [
    ({"num_epochs": "three"}, "fixed: num_epochs", "valid integer"),
    ({"num_epochs": 0}, "fixed: num_epochs", "greater than or equal to 1"),
    ({"seed": "x"}, "fixed: seed", "valid integer"),
    ({"batch_size": -4}, "fixed: batch_size", "greater than or equal to 1"),
], ids=["num_epochs-three", "num_epochs-0", "seed-x", "batch_size-negative"])
@pytest.mark.parametrize("command", ["validate", "search"])
def test_values_autoft_reads_are_checked_for_a_user_function(
        command: str, fixed: dict[str, Any], key: str, says: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, **fixed)
    problems = judge([command, str(path)], f"{path}: {key}", says, tmp_path / "results",
                     monkeypatch, capsys)
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize(("fixed", "space", "key", "says"), [
    ({"momentum": "high"}, None, "fixed: momentum", "valid number"),
    ({"momentum": 1.5}, None, "fixed: momentum", "less than 1"),
    ({"nesterov": True}, None, "nesterov", "unknown hyperparameter.*QuadraticParams declares"),
    ({}, {**SPACE, "dampening": {"type": "float", "low": 0, "high": 1}}, "dampening",
     "unknown hyperparameter"),
], ids=["wrong-type", "out-of-range", "undeclared-fixed", "undeclared-searched"])
@pytest.mark.parametrize("command", ["validate", "search"])
def test_declared_hyperparameters_are_checked(
        command: str, fixed: dict[str, Any], space: dict[str, Any] | None, key: str, says: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "tests.toy_trainable:typed_quadratic", space, **fixed)
    problems = judge([command, str(path)], key, says, tmp_path / "results", monkeypatch, capsys)
    assert not problems, "; ".join(problems)


def test_validate_names_what_passes_through_unchecked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, num_epochs=2, temperature="warm")
    assert cli_main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "passed to tests.toy_trainable:quadratic as given" in out
    assert out.count("learning_rate, temperature") == 1   # num_epochs is autoft's own

    typed = write(tmp_path, "tests.toy_trainable:typed_quadratic", num_epochs=2)
    assert cli_main(["validate", str(typed)]) == 0
    assert "as given" not in capsys.readouterr().out


class Recorder:
    trial = TrialContext(index=0, seed=0)

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, float], state: Any = None) -> None:
        self.metrics.append(metrics)


def test_a_declared_function_receives_its_model_and_a_bad_value_fails_the_trial() -> None:
    assert declared_model(typed_quadratic) is QuadraticParams
    assert declared_model(lambda hparams, reporter: None) is None
    trainable = load_trainable("tests.toy_trainable:typed_quadratic")
    reporter = Recorder()
    final = trainable.fit(None, None, {"learning_rate": 5e-4, "num_epochs": 2}, reporter)
    assert [m["epoch"] for m in reporter.metrics] == [0, 1]
    assert final["eval_accuracy"] == pytest.approx(1.0)
    with pytest.raises(TrialFailed, match="hyperparameters: momentum: .*less than 1"):
        trainable.fit(None, None, {"learning_rate": 5e-4, "momentum": 2.0}, Recorder())


def test_a_declared_function_trains_through_autoft_train(tmp_path: Path) -> None:
    config = {"name": "typed", "trainable": "tests.toy_trainable:typed_quadratic",
              "fixed": {"learning_rate": 4e-4, "num_epochs": 2, "momentum": 0.5},
              "storage": str(tmp_path / "results")}
    result = api.train(config)
    assert result.metrics["epoch"] == 1
    assert result.metrics["eval_accuracy"] == pytest.approx(1 - (0.4 - 0.5) ** 2)
