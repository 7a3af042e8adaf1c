"""``autoft paddlehub``: PaddleHub's ``hub autofinetune``, on Ray Tune, Optuna and MLflow.

The same command line, files and output layout as PaddleHub Auto Fine-tune::

    autoft paddlehub finetunee.py --param_file=hparam.yaml --cuda=['0','1'] --popsize=5 \\
        --round=10 --output_dir=OUT --evaluate_choice=fulltrail --tuning_strategy=hazero \\
        max_seq_len 128

becomes one ``autoft search`` of ``popsize × round`` runs of the script (the ``script`` trainable,
:mod:`trainables.script`), at most ``popsize`` at once, on the same Ray Tune driver and MLflow
tracking (one parent run, one child run per script run, the script's score as ``eval_accuracy``):

* ``hazero`` (PaddleHub's covariance-adapting evolution strategy) is Optuna's CMA-ES sampler
  started at the ``init_value``s; ``pshe2`` (particle swarm) is Nevergrad's PSO through Ray Tune's
  NevergradSearch. Either way the ``init_value``s are the first run.
* ``fulltrail`` trains every run from scratch; ``modelbased`` starts every run after round 0 from
  the best parameters saved so far (``--model_path``).
* ``--cuda`` names the GPUs the runs may use, one GPU per run: the embedded Ray is started with
  ``CUDA_VISIBLE_DEVICES`` set to them, each run asks Ray for one GPU, and Ray gives every run's
  process its own ``CUDA_VISIBLE_DEVICES``. Without CUDA the runs share the CPUs (a warning says
  so).
* Trailing ``name value`` pairs reach every run as ``--name=value``.

``OUT`` (default ``output_<YYYYmmddHHMMSS>`` in the current folder, as PaddleHub chose) receives
PaddleHub's files: ``log_file.txt`` (every round's hyperparameters and scores, the best of each
round and the best so far), ``round<i>/log-<j>.info`` and ``round<i>/model-<j>`` per run,
``best_model`` (a copy of the best run's parameters) and ``visualization`` (TensorBoard event
files with PaddleHub's tags: ``tensorboard --logdir OUT/visualization``); and autoft's:
``mlflow.db`` (``autoft ui --tracking-uri sqlite:///OUT/mlflow.db``) and ``autofinetune/`` (the
Ray Tune experiment with ``trials.csv``, ``best_config.yaml`` and the search's plots).
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from autoft.core.config import Config, config_from_mapping, read_yaml
from autoft.core.environ import scoped_environ
from autoft.core.errors import InputError
from autoft.core.space import SearchSpace
from autoft.core.space_files import load_space
from autoft.core.trials import best_of
from autoft.tuning.driver import SearchResult, run_search
from autoft.tuning.results import TrialRecord
from trainables.script import describe, option_value, run_paths

#: PaddleHub's tuning strategies as autoft search algorithms.
STRATEGIES = {"hazero": "cmaes", "pshe2": "pso"}
STRATEGY_TEXT = {"hazero": "CMA-ES (Optuna) from the init_values",
                 "pshe2": "particle swarm (Nevergrad PSO)"}
EVALUATE_CHOICES = ("fulltrail", "modelbased")
#: The Ray Tune experiment (``OUT/autofinetune``) and MLflow experiment name.
SEARCH_NAME = "autofinetune"


@dataclass(frozen=True)
class Run:
    """One run of the script as the search left it."""

    round: int
    member: int
    hparams: dict[str, Any]
    score: float | None
    failed: bool
    log: Path
    model: Path


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are :class:`InputError` (one line, exit 2 through the CLI)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"paddlehub: {message}")


def parse_cuda(text: str) -> list[str]:
    """GPU ids as PaddleHub's ``--cuda`` took them: ``['0','1']``, ``[0,1]``, ``0,1`` or ``0``.

    >>> parse_cuda("['1','2']"), parse_cuda("[1,2]"), parse_cuda("3")
    (['1', '2'], ['1', '2'], ['3'])
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text.strip().strip("[]").split(",")
    items = value if isinstance(value, list | tuple) else [value]
    ids = [str(item).strip().strip("'\"") for item in items]
    if not ids or not all(gpu.isdigit() for gpu in ids):
        raise argparse.ArgumentTypeError(f"expected GPU ids such as ['0','1'] or 0,1, got {text!r}")
    return ids


def build_parser() -> argparse.ArgumentParser:
    """PaddleHub's ``hub autofinetune`` options, with its defaults."""
    parser = _Parser(prog="autoft paddlehub SCRIPT",
                     description="PaddleHub Auto Fine-tune on Ray Tune, Optuna and MLflow: "
                                 "search the hyperparameters of SCRIPT (a finetunee.py).")
    parser.add_argument("--param_file", required=True, help="hparam.yaml with param_list")
    parser.add_argument("--popsize", type=int, default=5, help="runs per round (default 5)")
    parser.add_argument("--round", type=int, default=10, help="rounds (default 10)")
    parser.add_argument("--output_dir", help="default: output_<timestamp> here")
    parser.add_argument("--evaluate_choice", type=str.lower, default="fulltrail",
                        choices=EVALUATE_CHOICES)
    parser.add_argument("--tuning_strategy", type=str.lower, default="hazero",
                        choices=sorted(STRATEGIES))
    parser.add_argument("--cuda", type=parse_cuda, default=["0"],
                        help="GPUs the runs may use, one per run (default ['0'])")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="name value pairs passed to every run as --name=value")
    return parser


def pass_through(tokens: list[str]) -> list[str]:
    """Trailing ``name value`` pairs as the ``--name=value`` options every run receives.

    >>> pass_through(["max_seq_len", "128"])
    ['--max_seq_len=128']
    """
    if len(tokens) % 2:
        raise InputError("paddlehub: the words after the flags must be name value pairs, got an "
                         f"odd number of them: {' '.join(tokens)}")
    return [f"--{name.lstrip('-')}={value}" for name, value in zip(tokens[::2], tokens[1::2],
                                                                   strict=True)]


def load_param_file(path: Path) -> SearchSpace:
    """A PaddleHub ``hparam.yaml`` (top-level ``param_list``) as a search space."""
    raw = read_yaml(path, "param file")
    if not isinstance(raw, dict) or "param_list" not in raw:
        raise InputError(f"{path}: no param_list: a PaddleHub hparam.yaml lists its "
                         "hyperparameters under param_list (name, init_value, type, "
                         "greater_than, lower_than)")
    return load_space(raw, str(path))


def default_output_dir() -> Path:
    """PaddleHub's default: ``output_<YYYYmmddHHMMSS>`` in the current folder."""
    return Path(f"output_{time.strftime('%Y%m%d%H%M%S')}")


def build_config(args: argparse.Namespace, output_dir: Path, gpu: bool) -> Config:
    """The ``autoft search`` config of a PaddleHub command line."""
    mapping = {
        "name": SEARCH_NAME,
        "trainable": "script",
        "script": {"path": args.script, "args": args.options,
                   "evaluate_choice": args.evaluate_choice, "output_dir": str(output_dir)},
        "space": args.param_file,
        "fixed": {"num_epochs": 1},
        "search": {"algorithm": STRATEGIES[args.tuning_strategy], "scheduler": "fifo",
                   "num_samples": args.popsize * args.round, "max_concurrent": args.popsize,
                   "popsize": max(args.popsize, 2), "max_failures": 0},
        "resources": {"cpu": 1, "gpu": 1 if gpu else 0},
        "storage": str(output_dir),
    }
    return config_from_mapping(mapping, Path.cwd(), "autoft paddlehub")


@contextmanager
def visible_gpus(cuda: list[str]) -> Iterator[bool]:
    """Show only the ``--cuda`` GPUs to the Ray started inside; yield whether CUDA works.

    ``CUDA_VISIBLE_DEVICES`` is restored afterwards. Without CUDA (no GPU, or none of those ids)
    one warning says the runs use the CPU.
    """
    import torch

    with scoped_environ({"CUDA_VISIBLE_DEVICES": ",".join(cuda)}):
        usable = torch.cuda.is_available()
        if not usable:
            print(f"autoft paddlehub: warning: no usable GPU among --cuda {','.join(cuda)} "
                  "(torch.cuda.is_available() is False); the runs use the CPU",
                  file=sys.stderr)
        yield usable


def collect_runs(trials: list[TrialRecord], root: Path, popsize: int) -> list[Run]:
    """The search's trial records as PaddleHub runs, in round and member order."""
    runs = []
    for trial in trials:
        if trial.context is None:
            raise InputError(f"{root}: trial {trial.name} has no autoft trial context: "
                             "not a search that autoft paddlehub started")
        paths = run_paths(root, trial.context.index, popsize)
        runs.append(Run(paths.round, paths.member, dict(trial.hparams), trial.score,
                        trial.status == "failed", paths.log, paths.model))
    return sorted(runs, key=lambda run: (run.round, run.member))


def best_run(runs: list[Run]) -> Run | None:
    """The highest-scoring run (the earliest among equals), or None when none scored."""
    return best_of(runs, score=lambda run: run.score)


def _rounds(runs: list[Run]) -> list[list[Run]]:
    count = max((run.round for run in runs), default=-1) + 1
    return [[run for run in runs if run.round == r] for r in range(count)]


def _score_text(run: Run) -> str:
    if run.score is not None:
        return option_value(run.score)
    return "crashed" if run.failed else "no score"


def final_best_lines(names: list[str], best: Run | None, best_model: Path | None) -> list[str]:
    """PaddleHub's closing summary, as it opens ``log_file.txt`` and ends the console."""
    lines = ["The final best hyperparameters:"]
    if best is None:
        return [*lines, "(none: no run printed a score)"]
    lines += [f"{name}\t:\t{option_value(best.hparams.get(name))}" for name in names]
    lines.append(f"The final best eval score is {option_value(best.score)}.")
    if best_model is not None:
        lines.append(f"The final best model parameters are saved as {best_model} .")
    return lines


def log_file_text(names: list[str], runs: list[Run], best_model: Path | None) -> str:
    """``log_file.txt``: the final best, then every round's runs, round best and best so far."""
    lines = final_best_lines(names, best_run(runs), best_model)
    so_far: Run | None = None
    for index, members in enumerate(_rounds(runs)):
        lines += ["", f"Round {index}:", "\t".join([*names, "eval_value", "saved_params_dir"])]
        for run in members:
            values = [option_value(run.hparams.get(name)) for name in names]
            where = str(run.model) if not run.failed else f"{run.model} (crashed, see {run.log})"
            lines.append("\t".join([*values, _score_text(run), where]))
        local = best_run(members)
        so_far = best_run([run for run in (so_far, local) if run is not None])
        if local is None:
            lines.append(f"No run of round {index} printed a score.")
        else:
            lines.append(f"The local best eval value in round {index} is "
                         f"{option_value(local.score)}; the best so far is "
                         f"{option_value(so_far.score)} ({describe(so_far.hparams)}).")
    return "\n".join(lines) + "\n"


def write_visualization(folder: Path, names: list[str], runs: list[Run], popsize: int) -> None:
    """TensorBoard event files with PaddleHub's tags, step = round.

    ``folder`` holds ``hyperparameter_tuning/<name>`` and ``hyperparameter_tuning/best_eval_value``
    (the best so far after each round); ``folder/pop_<j>`` holds
    ``population_transformation/<name>`` and ``population_transformation/eval_value`` of member
    ``j`` in each round.
    """
    members = [SummaryWriter(logdir=str(folder / f"pop_{j}")) for j in range(popsize)]
    overall = SummaryWriter(logdir=str(folder))
    so_far: Run | None = None
    for index, round_runs in enumerate(_rounds(runs)):
        for run in round_runs:
            writer = members[run.member]
            for name in names:
                writer.add_scalar(f"population_transformation/{name}",
                                  float(run.hparams[name]), index)
            if run.score is not None:
                writer.add_scalar("population_transformation/eval_value", run.score, index)
        so_far = best_run([run for run in (so_far, best_run(round_runs)) if run is not None])
        if so_far is not None:
            for name in names:
                overall.add_scalar(f"hyperparameter_tuning/{name}",
                                   float(so_far.hparams[name]), index)
            overall.add_scalar("hyperparameter_tuning/best_eval_value", so_far.score, index)
    for writer in [overall, *members]:
        writer.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The script (first, as PaddleHub took it), then the flags, then ``name value`` pairs.

    The script is taken apart from the flags because argparse would otherwise hand everything
    after it to the trailing pairs.
    """
    parser = build_parser()
    if not argv or argv[0].startswith("-"):
        parser.parse_args(argv)  # prints --help; else a missing flag is named first
        raise InputError("paddlehub: the first argument must be the script to fine-tune, "
                         "e.g. autoft paddlehub finetunee.py --param_file hparam.yaml")
    args = parser.parse_args(argv[1:])
    args.script = argv[0]
    args.options = pass_through(args.options)
    for flag in ("popsize", "round"):
        if getattr(args, flag) < 1:
            raise InputError(f"paddlehub: --{flag} must be at least 1, got {getattr(args, flag)}")
    if not Path(args.script).is_file():
        raise InputError(f"paddlehub: {args.script}: no such script")
    return args


def main(argv: list[str]) -> int:
    """``autoft paddlehub SCRIPT --param_file F [...]``; the exit status of the command."""
    args = parse_args(argv)
    space = load_param_file(Path(args.param_file))
    output_dir = Path(args.output_dir or default_output_dir()).resolve()
    with visible_gpus(args.cuda) as gpu:
        config = build_config(args, output_dir, gpu)
        print(f"autoft paddlehub: {args.round} round(s) of {args.popsize} run(s) of "
              f"{args.script}, {STRATEGY_TEXT[args.tuning_strategy]}, {args.evaluate_choice}, "
              f"{'one GPU per run' if gpu else 'on the CPU'}; output in {output_dir}")
        outcome = run_search(config)
    return report(outcome, space.names, output_dir, args.popsize)


def report(outcome: SearchResult, names: list[str], output_dir: Path, popsize: int) -> int:
    """Write PaddleHub's summary files, print the result; 0 when some run scored, else 1."""
    runs = collect_runs(outcome.trials, output_dir, popsize)
    for run in runs:
        if run.failed:
            print(f"WARNING: the program run with hyperparameters {describe(run.hparams)} "
                  f"crashed, see {run.log}")
    best = best_run(runs)
    best_model = None
    if best is not None and best.model.is_dir():
        best_model = output_dir / "best_model"
        shutil.copytree(best.model, best_model, dirs_exist_ok=True)
    log_file = output_dir / "log_file.txt"
    log_file.write_text(log_file_text(names, runs, best_model), encoding="utf-8")
    write_visualization(output_dir / "visualization", names, runs, popsize)
    for members in _rounds(runs):
        local = best_run(members)
        if local is not None:
            print(f"The local best eval value in round {local.round} is "
                  f"{option_value(local.score)} ({describe(local.hparams)}).")
    print(f"The related information about the hyperparameters searched is in {log_file} .")
    print(f"MLflow: parent run {outcome.parent_run_id} in {outcome.tracking_uri} "
          f"(autoft ui --tracking-uri {outcome.tracking_uri})")
    if best is None:
        print("autoft paddlehub: no run printed a score", file=sys.stderr)
        return 1
    print("\n".join(final_best_lines(names, best, best_model)))
    return 0
