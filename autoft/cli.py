"""The ``autoft`` command line (design.md "CLI").

Exit status: 0 success; 2 bad input (one line on stderr saying what and where, no traceback);
1 the search itself failed.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from autoft.core.config import load_config
from autoft.core.errors import InputError
from autoft.core.quiet import quiet
from autoft.tuning.embedded_ray import start_in_background
from autoft.tuning.experiment import resumable_config

if TYPE_CHECKING:
    from autoft import api
    from autoft.tuning.results import TrialRecord

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--num-samples``, ``--address``, ``--tracking-uri`` and ``--register`` as
    :func:`autoft.api.as_config` takes them."""
    return {"num_samples": getattr(args, "num_samples", None),
            "address": getattr(args, "address", None),
            "tracking_uri": getattr(args, "tracking_uri", None),
            "register": getattr(args, "register", None)}


def _api() -> Any:
    """:mod:`autoft.api`, imported when a command needs it: torch, Ray Tune and MLflow take
    seconds to import, which a bad config's one-line refusal and the embedded Ray's start
    (begun before, :func:`cmd_search`) need not wait for."""
    from autoft import api

    return api


def _print_validation(name: str, checked: api.Validation) -> None:
    config = checked.config
    print(f"{name}: OK")
    task = f"task {config.task}, " if config.task else ""
    if checked.space is None:
        print(f"train config: `autoft train` runs one {config.trainable} fine-tune of "
              f"{config.model or config.trainable}, {task}metric {config.metric_key} "
              f"({config.metric_mode}imised)")
    else:
        print(f"search {config.name!r}: trainable {config.trainable}, {task}metric "
              f"{config.metric_key} ({config.metric_mode}imised)")
    if checked.task_reason:
        print(f"task {config.task} (inferred: {checked.task_reason}; set `task:` to choose)")
    if checked.space is not None:
        print(checked.strategy)
        print(checked.space.describe())
    if config.fixed:
        print("fixed: " + ", ".join(f"{k}={v}" for k, v in config.fixed.items()))
    if checked.gpus is not None:
        print(checked.gpus)
    resources = config.resources
    if resources.workers > 1:
        gpu = ("a GPU where the cluster has them" if resources.gpu == "auto"
               else f"{resources.gpu:g} GPU")
        print(f"each trial on {resources.workers} data-parallel workers, each with "
              f"{resources.cpu:g} CPU and {gpu}; batch_size is the global batch, split between "
              "them")
    if checked.unchecked:
        print(f"passed to {config.trainable} as given (it declares no type for them): "
              + ", ".join(checked.unchecked))


def cmd_validate(args: argparse.Namespace) -> int:
    _print_validation(args.config, _api().validate(args.config, **_overrides(args)))
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    if args.dry_run:
        _print_validation(args.config, _api().validate(args.config, prepare_data=True,
                                                       **_overrides(args)))
        print("dry run: data prepared, nothing started")
        return EXIT_OK
    config = load_config(args.config)  # read once, here: its cluster decides the early start
    if (args.address or config.ray.address) is None:
        start_in_background()  # while autoft.api imports
    return _summarise(_api().search(config, verbose=args.verbose, **_overrides(args)))


def cmd_resume(args: argparse.Namespace) -> int:
    if resumable_config(args.experiment_dir).ray.address is None:
        start_in_background()  # while autoft.api imports
    return _summarise(_api().resume(args.experiment_dir, verbose=args.verbose))


def cmd_sync(args: argparse.Namespace) -> int:
    synced = _api().sync(args.experiment_dir, args.timeout)
    print(f"sent {synced.sent} tracking operation(s); {synced.unsent} still unsent")
    return EXIT_OK if synced.unsent == 0 else EXIT_FAILED


#: Trials in the table at the end of a search.
TOP_TRIALS = 5


def best_trials_table(trials: list[TrialRecord], metric: str, top: int = TOP_TRIALS) -> str:
    """The ``top`` best trials by score (``metric``'s direction), one row each: status, epochs,
    score, seed and the hyperparameters; then how many trials ended how."""
    from autoft.core.metrics import goodness
    from autoft.tuning.results import trials_frame

    ranked = sorted((t for t in trials if t.score is not None),
                    key=lambda t: -goodness(metric, t.score))[:top]
    counts = Counter(t.status for t in trials)
    ended = ", ".join(f"{counts[s]} {s}" for s in ("completed", "pruned", "failed", "running")
                      if counts[s])
    heading = f"best {len(ranked)} of {len(trials)} trials ({ended})"
    if not ranked:  # every trial failed before its first epoch: no table to show
        return heading
    frame = trials_frame(ranked, "score").drop(columns=["trial_id", "error"])
    frame.columns = [name.removeprefix("param_") for name in frame.columns]
    table = frame.to_string(index=False, max_colwidth=16, float_format="{:.4g}".format)
    return f"{heading}:\n{table}"


def _summarise(outcome: api.SearchResult) -> int:
    if outcome.already_finished:
        print(f"{outcome.experiment_dir}: the search had finished; nothing to resume")
    print()
    print(best_trials_table(outcome.trials, outcome.metric))
    for trial in (t for t in outcome.trials if t.status == "failed"):
        print(f"{trial.name} failed: {trial.error}")
    if outcome.unsent:
        print(f"autoft: warning: {outcome.unsent} tracking operation(s) are still unsent (the "
              "MLflow store did not take them); send them with `autoft sync "
              f"{outcome.experiment_dir}`", file=sys.stderr)
    if outcome.best is None:
        print("no trial reported a score", file=sys.stderr)
        return EXIT_FAILED
    best = outcome.best
    if outcome.confirmed:
        print("\nthe top trials again with other seeds (mean ± std over all their seeds):")
        for c in outcome.confirmed:
            print(f"  {c.trial.name}: {c.mean:.4f} ± {c.std:.4f} over {len(c.scores)} seeds "
                  f"(its own trial {c.trial.score:.4f})")
        print(f"chosen: {outcome.selection}")
    print(f"\nbest trial {best.name}: score {best.score:.4f} at epoch {best.scored_epoch} "
          f"of the {best.epochs} it ran")
    print(f"MLflow parent run: {outcome.parent_run_id} ({outcome.tracking_uri})")
    print(f"best config: {outcome.best_config_path}  (retrain: autoft train "
          f"{outcome.best_config_path})")
    if outcome.runs_url is not None:
        from autoft.tracking.store import LOCAL_UI

        local = outcome.runs_url.startswith(LOCAL_UI)
        how = f" (after `autoft ui --tracking-uri {outcome.tracking_uri}`)" if local else ""
        print(f"the trials in MLflow: {outcome.runs_url}{how}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    if args.model:
        print(_api().export_model(args.experiment_dir, args.output))
    else:
        print(_api().export(args.experiment_dir, args.format, args.output))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    api = _api()
    config = api.as_config(args.config, **_overrides(args))
    result = api.train(config)
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    print(f"model: {result.model_dir}\nMLflow run: {result.run_id} ({config.tracking_uri})")
    if result.model_uri is not None:
        print(f"MLflow model: {result.model_uri}")
    if result.registered is not None:
        print(f"registered: {result.registered}")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    done = _api().predict(args.model, args.data, args.output)
    print(f"{done.count} prediction(s): {done.output}")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from autoft.tracking import ui
    from autoft.tracking.store import check_store

    uri = args.tracking_uri
    if uri is None:
        default = Path("autoft_results") / "mlflow.db"
        if not default.is_file():
            raise InputError(f"no tracking store at {default}: pass --tracking-uri")
        uri = f"sqlite:///{default.resolve()}"
    check_store(uri, "--tracking-uri")
    return ui.serve(uri, args.host, args.port)


def _column(value: str) -> int | str:
    """A column by index (``0``) or by header name."""
    return int(value) if value.isdigit() else value


def cmd_suggest(args: argparse.Namespace) -> int:
    done = _api().suggest(args.data, args.model, trainable=args.trainable,
                       pretrained_file=args.pretrained_file, eval_data=args.eval,
                       fmt=args.format, text_column=args.text_column,
                       label_column=args.label_column, text_pair_column=args.text_pair_column,
                       max_train_samples=args.max_train_samples, name=args.name,
                       output=args.output)
    if done.path is None:
        print(done.text, end="")
        return EXIT_OK
    probe = done.profile.probe
    print(f"{done.profile.train_examples} training examples, {len(done.profile.classes)} "
          f"classes; probe: pretrained {probe.pretrained:.3f}, random {probe.random:.3f} "
          f"(similarity {probe.similarity:.2f})")
    print(f"quadrant: {done.suggestion.quadrant}; metric {done.suggestion.metric.value}")
    print(f"search config: {done.path}  (run: autoft search {done.path})")
    return EXIT_OK


def cmd_paddlehub(args: argparse.Namespace) -> int:
    from autoft.compat import paddlehub

    return paddlehub.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoft", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def config_command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("config", help="search config (YAML)")
        sub.add_argument("--num-samples", type=int, help="override search.num_samples")
        sub.add_argument("--address", help="Ray address: auto, HOST:PORT or ray://HOST:10001")
        sub.add_argument("--tracking-uri", help="MLflow tracking URI")
        sub.set_defaults(func=func)
        return sub

    search = config_command("search", cmd_search, "run a search")
    search.add_argument("--dry-run", action="store_true",
                        help="check config, space and data; start nothing")
    config_command("validate", cmd_validate, "check a config and its space, print the space")
    train = config_command("train", cmd_train, "one fine-tune with the fixed hyperparameters")
    train.add_argument("--register", metavar="NAME",
                       help="register the model in the MLflow Model Registry as NAME")

    predict = commands.add_parser("predict", help="run a trained model folder on new data")
    predict.add_argument("model", help="model folder written by autoft train")
    predict.add_argument("data", help="file or folder in the format the model was trained on")
    predict.add_argument("-o", "--output", help="predictions file, .csv or .jsonl (default: "
                         "predictions.csv)")
    predict.set_defaults(func=cmd_predict)

    resume = commands.add_parser("resume", help="continue an interrupted search")
    resume.add_argument("experiment_dir")
    resume.set_defaults(func=cmd_resume)

    sync = commands.add_parser("sync", help="send what a search's tracking spool still holds")
    sync.add_argument("experiment_dir")
    sync.add_argument("--timeout", type=float, default=120.0,
                      help="seconds to wait for the tracking store (default 120)")
    sync.set_defaults(func=cmd_sync)

    export = commands.add_parser("export", help="write the best trial as a train config")
    export.add_argument("experiment_dir")
    export.add_argument("--format", choices=["yaml", "json"], default="yaml")
    export.add_argument("--model", action="store_true",
                        help="write the model the search kept (search.keep_best_model) instead "
                        "(default folder: EXPERIMENT_DIR-model)")
    export.add_argument("-o", "--output", help="output file (default: in the experiment folder)")
    export.set_defaults(func=cmd_export)

    suggest = commands.add_parser(
        "suggest", help="measure a dataset and write a search config for its quadrant")
    suggest.add_argument("data", help="dataset folder (train + dev/val split) or training split")
    suggest.add_argument("--model", required=True,
                         help="text: Hugging Face model folder (or pkg:PACKAGE/path); "
                         "image: timm model name")
    suggest.add_argument("--pretrained-file", help="image: the model's pretrained weights")
    suggest.add_argument("--trainable", choices=["text", "image"],
                         help="check that DATA is of this kind (inferred from DATA)")
    suggest.add_argument("-o", "--output", help="config file to write (default: stdout)")
    suggest.add_argument("--eval", help="evaluation split (default: found beside train)")
    suggest.add_argument("--format", choices=["csv", "tsv", "jsonl", "imagefolder", "hf_disk"])
    for column in ("text-column", "label-column", "text-pair-column"):
        suggest.add_argument(f"--{column}", type=_column,
                             help="index or header name (inferred when not given)"
                             if column != "text-pair-column" else "index or header name")
    suggest.add_argument("--max-train-samples", type=int,
                         help="search on a seeded subsample of this many training examples")
    suggest.add_argument("--name", help="experiment name (default: DATA's name + -suggested)")
    suggest.set_defaults(func=cmd_suggest)

    ui = commands.add_parser("ui", help="serve the MLflow UI for the tracking store")
    ui.add_argument("--tracking-uri")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)

    paddlehub = commands.add_parser("paddlehub", add_help=False,
                                    help="PaddleHub Auto Fine-tune: SCRIPT --param_file F ...")
    paddlehub.add_argument("rest", nargs=argparse.REMAINDER)
    paddlehub.set_defaults(func=cmd_paddlehub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``autoft`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if command is not None and argv[command] == "paddlehub":
        # PaddleHub's own flags (--help included) belong to its parser, not to argparse here.
        at = command + 1
        args = build_parser().parse_args(argv[:at])
        args.rest = argv[at:]
    else:
        args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    quiet(args.verbose)  # a warning is one line; the libraries' load reports only with -v
    if not args.verbose:  # the libraries' routine notices (a study created, tables created)
        for name in ("mlflow", "optuna"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"autoft: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stopped:
        where = getattr(stopped, "experiment_dir", None)  # api.SearchInterrupted's folder
        print("\ninterrupted" if where is None else
              "\ninterrupted: the search's MLflow parent run is marked KILLED and no best "
              f"config was written; `autoft resume {where}` continues it", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The ``autoft`` console script: :func:`main`, then the interpreter's Python-level exit
    (threads still writing are waited for, ``atexit`` handlers run, logs and streams flushed),
    then the process ends without the native teardown of Ray's core worker, gRPC and torch
    that would follow: 2.6 s after a search on 2 cores (benchmarks/results/overhead.md), for
    nobody. An exception out of ``main`` (a bug) takes the normal way out, traceback and all.
    """
    status = main()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
