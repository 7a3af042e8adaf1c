"""The script trainable (``trainable: script``): any program that prints its score.

This is PaddleHub's ``finetunee.py`` protocol. One trial runs, in a subprocess::

    python -u SCRIPT --name=value ... --saved_params_dir=DIR [--model_path=P] ARGS...

``--name=value`` for every hyperparameter of the search space (and of ``fixed``, except the
driver's own ``num_epochs`` and ``seed`` unless the space searches them), ``ARGS`` being
``script.args`` verbatim. The program saves its parameters into ``DIR`` and prints its score,
higher is better, as a line ``AutoFinetuneEval<TAB><value>``; the last such line counts and is
reported once, as epoch 0, under ``eval_<metric>``.

Trials are numbered in the order the searcher proposes them (the reporter's
:class:`~trainables.api.TrialContext`); with a population of ``search.max_concurrent`` trials
(PaddleHub's ``popsize``), trial ``i`` is member ``j = i % popsize`` of round ``r = i // popsize``
and writes PaddleHub's layout under the output root:
``round<r>/log-<j>.info`` (everything the program printed, also echoed to the worker's stdout)
and ``round<r>/model-<j>`` (its ``--saved_params_dir``). With ``evaluate_choice: modelbased`` a
run of round ``r > 0`` gets ``--model_path``: the saved parameters of the best-scoring run of the
earlier rounds that had finished when it started (read back from their logs).

The program runs in the folder autoft was started in, as ``hub autofinetune`` ran it, so the
relative paths a PaddleHub user passes keep working. A non-zero exit, a missing score line or a
timeout (``script.timeout_s``) fails the trial with :class:`~trainables.api.TrialFailed` naming
the hyperparameters and the log; the search goes on.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.space_files import load_space
from trainables.api import Reporter, TrialFailed

#: The line a script prints its score on: ``AutoFinetuneEval<TAB><value>``.
SCORE_PREFIX = "AutoFinetuneEval"
_SCORE_LINE = re.compile(rf"^{SCORE_PREFIX}\t\s*(\S+)\s*$")

#: Hyperparameters the driver adds to every trial itself; a script gets them only when searched.
DRIVER_HPARAMS = frozenset({"num_epochs", "seed"})


@dataclass(frozen=True)
class ScriptPlan:
    """What ``prepare`` resolves once on the driver and every trial reuses."""

    script: Path
    args: tuple[str, ...]
    searched: frozenset[str]
    cwd: Path
    root: Path
    popsize: int
    modelbased: bool
    timeout_s: float | None


@dataclass(frozen=True)
class RunPaths:
    """Where one run writes: PaddleHub's ``round<r>/log-<j>.info`` and ``round<r>/model-<j>``."""

    round: int
    member: int
    log: Path
    model: Path


def output_root(config: Config) -> Path:
    """The folder that holds the ``round<r>`` folders: ``script.output_dir`` (``autoft
    paddlehub`` sets it to its ``--output_dir``), else the search's own experiment folder."""
    return config.script.output_dir or config.experiment_dir


def run_paths(root: Path, index: int, popsize: int) -> RunPaths:
    """The files of trial ``index`` in a population of ``popsize``.

    >>> run_paths(Path("out"), 7, 3).log.as_posix()
    'out/round2/log-1.info'
    """
    round_, member = divmod(index, popsize)
    folder = root / f"round{round_}"
    return RunPaths(round_, member, folder / f"log-{member}.info", folder / f"model-{member}")


def parse_score(line: str) -> float | None:
    """The finite score of an ``AutoFinetuneEval<TAB>value`` line, else None.

    >>> parse_score("AutoFinetuneEval\\t0.875\\n"), parse_score("acc 0.875")
    (0.875, None)
    """
    match = _SCORE_LINE.match(line)
    if match is None:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_score(log: Path) -> float | None:
    """The last score a run printed into its log (the one that counts), or None."""
    score = None
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            value = parse_score(line)
            if value is not None:
                score = value
    return score


def best_earlier_model(root: Path, before_round: int) -> Path | None:
    """The saved parameters of the best-scoring run of rounds ``0 .. before_round - 1``.

    Only runs that printed a score and left their ``model-<j>`` folder count; ties go to the
    earliest run.
    """
    best: tuple[float, Path] | None = None
    for round_ in range(before_round):
        for log in sorted((root / f"round{round_}").glob("log-*.info"),
                          key=lambda p: int(p.stem.split("-")[1])):
            model = log.with_name(f"model-{log.stem.split('-')[1]}")
            score = read_score(log) if model.is_dir() else None
            if score is not None and (best is None or score > best[0]):
                best = (score, model)
    return best[1] if best else None


def option_value(value: Any) -> str:
    """A hyperparameter as command-line text: whole numbers plain, floats at full precision.

    >>> option_value(16), option_value(0.1), option_value(True)
    ('16', '0.1', 'True')
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    return repr(float(value))


def script_hparams(hparams: dict[str, Any], searched: frozenset[str]) -> dict[str, Any]:
    """The hyperparameters a script receives: all but the driver's own unless searched."""
    return {name: value for name, value in hparams.items()
            if name in searched or name not in DRIVER_HPARAMS}


def command(plan: ScriptPlan, options: dict[str, Any], paths: RunPaths,
            model_path: Path | None) -> list[str]:
    """The argv of one run (PaddleHub's order: hyperparameters, directories, pass-through)."""
    argv = [sys.executable, "-u", str(plan.script)]
    argv += [f"--{name}={option_value(value)}" for name, value in options.items()]
    argv.append(f"--saved_params_dir={paths.model}")
    if model_path is not None:
        argv.append(f"--model_path={model_path}")
    return argv + list(plan.args)


def prepare(config: Config) -> ScriptPlan:
    """Resolve the script, its pass-through arguments and the space's names once per search."""
    if config.script is None:
        raise InputError(f"{config.source or 'config'}: script: required for trainable 'script'")
    names = load_space(config.space).names if config.space is not None else []
    return ScriptPlan(
        script=config.script.path, args=tuple(config.script.args), searched=frozenset(names),
        cwd=Path.cwd(), root=output_root(config), popsize=config.search.max_concurrent,
        modelbased=config.script.evaluate_choice == "modelbased",
        timeout_s=config.script.timeout_s)


def execute(argv: list[str], cwd: Path, log: Path, timeout_s: float | None) -> int | None:
    """Run ``argv`` in ``cwd``, its output teed into ``log`` and stdout; its exit status, or
    None when it was killed at the timeout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    expired = threading.Event()
    with log.open("w", encoding="utf-8") as sink, subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1) as process:

        def stop() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(timeout_s, stop) if timeout_s else None
        if timer is not None:
            timer.start()
        try:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                sys.stdout.write(line)
            status = process.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if process.poll() is None:
                process.kill()
    return None if expired.is_set() else status


def describe(options: dict[str, Any]) -> str:
    """Hyperparameters as ``name=value, ...`` for messages and logs."""
    return ", ".join(f"{name}={option_value(value)}" for name, value in options.items()) or "(none)"


def fit(config: Config, prepared: ScriptPlan, hparams: dict[str, Any],
        reporter: Reporter) -> dict[str, float]:
    """Run the script once with ``hparams``; report and return its score."""
    plan = prepared
    paths = run_paths(plan.root, reporter.trial.index, plan.popsize)
    options = script_hparams(hparams, plan.searched)
    model_path = best_earlier_model(plan.root, paths.round) if plan.modelbased else None
    status = execute(command(plan, options, paths, model_path), plan.cwd, paths.log,
                     plan.timeout_s)
    score = read_score(paths.log)
    if status is None:
        why = f"no result after {plan.timeout_s:g} s, stopped"
    elif status != 0:
        why = f"exit status {status}"
    elif score is None:
        why = f"it printed no '{SCORE_PREFIX}<TAB>score' line"
    else:
        why = None
    if why is not None:
        raise TrialFailed(f"the program run with hyperparameters {describe(options)} crashed "
                          f"({why}), see {paths.log}")
    metrics = {"epoch": 0, config.metric_key: score}
    learning_rate = hparams.get("learning_rate")
    if isinstance(learning_rate, Real) and not isinstance(learning_rate, bool):
        metrics["lr"] = float(learning_rate)
    reporter.report(metrics)
    return metrics
