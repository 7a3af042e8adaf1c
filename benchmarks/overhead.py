"""What autoft costs over a plain Optuna loop: the same short trials, two ways, wall clock.

1. ``python -m autoft.cli search CONFIG`` (the ``autoft search`` command) as a subprocess:
   local Ray started inside the command, one trial actor reused by every trial, epoch
   checkpoints, MLflow on SQLite through the background writer, plots and best config at the
   end.
2. ``python -m benchmarks.overhead --optuna-loop CONFIG`` as a subprocess: the same trainable's
   ``prepare`` once and ``fit`` per trial, in-process, sampled by the same Optuna sampler (TPE,
   same seed) over the same space, no Ray, no MLflow, no checkpoints.

Both run the trials one at a time with the same torch threads (``max_concurrent: 1``,
``resources.cpu`` = all threads) and the same sampled points (no warm start, no confirmation
retrains: those are work the loop does not do), so the ratio is the framework's overhead, not
a different use of the cores or more training. The autoft run is cut into phases from its own
records (each trial's ``result.json``): start-up until the first trial starts (imports, data,
Ray, first actor), in-trial time (``fit`` with model load and checkpoint writes), gaps between
trials (actor start, scheduling, searcher) and the end (MLflow flush, plots, Ray shutdown).

    python -m benchmarks.overhead --trials 8 --train-samples 48
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    DEFAULT_WORKDIR,
    REPO,
    RESULTS,
    TASKS,
    MemoryReporter,
    machine,
    task_config,
    update_summary,
    write_report,
)

TASK = "hymenoptera_effnet"


def write_config(workdir: Path, trials: int, train_samples: int, threads: int) -> Path:
    """The search config both runs use (written as YAML: `autoft search` reads a file)."""
    name = f"overhead-{time.strftime('%Y%m%d-%H%M%S')}"
    config = task_config(TASKS[TASK], data={"max_train_samples": train_samples,
                                            "max_eval_samples": train_samples},
                         cpu=threads, fixed={"num_epochs": 1},
                         search={"algorithm": "tpe", "scheduler": "fifo", "num_samples": trials,
                                 "max_concurrent": 1, "seed": 0, "warm_start": "none",
                                 "confirm": None},
                         name=name, workdir=workdir)
    path = workdir / f"{name}.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    return path


def timed(command: list[str], log: Path) -> float:
    """Run ``command`` (output to ``log``); its wall-clock seconds. Raises if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                       check=True)
    return time.perf_counter() - start


def optuna_loop(config_path: Path) -> None:
    """The baseline: prepare once, then ``fit`` per trial under a plain Optuna study."""
    started = time.time()
    import optuna

    from autoft.core.config import load_config
    from autoft.tuning.algorithms import make_sampler
    from autoft.tuning.driver import load_search_space
    from autoft.tuning.space_adapters import suggest
    from autoft.tuning.trial import trial_context, trial_hparams
    from trainables import load_trainable

    config = load_config(config_path)
    space = load_search_space(config)
    trainable = load_trainable(config.trainable)
    prepared = trainable.prepare(config)
    ready = time.time()
    fits: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        sampled = suggest(space, trial)
        hparams = trial_hparams(config, sampled, trial_context(config, trial.number, sampled))
        start = time.time()
        final = trainable.fit(config, prepared, hparams, MemoryReporter())
        fits.append({"hparams": hparams, "start": start, "seconds": time.time() - start})
        return final[config.metric_key]

    study = optuna.create_study(direction="maximize", sampler=make_sampler(
        config.search.algorithm, config.search.seed, space, num_samples=config.search.num_samples))
    study.optimize(objective, n_trials=config.search.num_samples)
    print(json.dumps({"started": started, "ready": ready, "finished": time.time(),
                      "fits": fits, "best": study.best_value}))


def autoft_phases(experiment_dir: Path, started: float, finished: float) -> dict[str, Any]:
    """Start-up, in-trial, between-trial and end phases of an ``autoft search`` run."""
    spans = []
    for result_file in sorted(experiment_dir.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        if rows:
            end = rows[-1]["timestamp"]
            spans.append((end - rows[-1]["time_total_s"], end, rows[-1]["time_total_s"]))
    spans.sort()
    in_trials = sum(span[2] for span in spans)
    first, last = spans[0][0], spans[-1][1]
    return {"startup_until_first_trial_s": round(first - started, 1),
            "in_trials_s": round(in_trials, 1), "in_first_trial_s": round(spans[0][2], 1),
            "between_trials_s": round(last - first - in_trials, 1),
            "after_last_trial_s": round(finished - last, 1), "trials": len(spans)}


def measure_ray_init() -> float:
    """Seconds for an embedded ``ray.init(address="local")`` + ``ray.shutdown()`` alone."""
    code = ("import time,ray;t=time.perf_counter();ray.init(address='local',"
            "include_dashboard=False);ray.shutdown();print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_once(args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    """One pair of runs on a fresh experiment; the loop first in even repeats, else second."""
    workdir = Path(args.workdir)
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config_path = write_config(workdir, args.trials, args.train_samples, args.threads)
    name = config_path.stem
    timings: dict[str, Any] = {}

    def loop_run() -> None:
        log = logs / f"{name}_optuna.log"
        timings["loop_s"] = timed([sys.executable, "-m", "benchmarks.overhead", "--optuna-loop",
                                   str(config_path)], log)
        timings["loop"] = json.loads(log.read_text().strip().splitlines()[-1])

    def search_run() -> None:
        started = time.time()
        timings["search_s"] = timed([sys.executable, "-m", "autoft.cli", "search",
                                     str(config_path)], logs / f"{name}_autoft.log")
        timings["phases"] = autoft_phases(workdir / name, started, time.time())

    for step in (loop_run, search_run) if repeat % 2 == 0 else (search_run, loop_run):
        step()
    loop = timings["loop"]
    return {"search_vs_optuna_loop": round(timings["search_s"] / timings["loop_s"], 3),
            "autoft_search_s": round(timings["search_s"], 1),
            "optuna_loop_s": round(timings["loop_s"], 1),
            "optuna_loop": {"startup_s": round(loop["ready"] - loop["started"], 1),
                            "in_trials_s": round(sum(f["seconds"] for f in loop["fits"]), 1),
                            "in_first_trial_s": round(loop["fits"][0]["seconds"], 1),
                            "after_last_trial_s": round(loop["finished"] - max(
                                f["start"] + f["seconds"] for f in loop["fits"]), 1)},
            "autoft_phases": timings["phases"], "experiment": name,
            "first": "optuna loop" if repeat % 2 == 0 else "autoft search"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``args.repeats`` pairs, alternating which goes first (the machine's load drifts); the
    figure is total autoft time over total loop time, the phases are means over the pairs."""
    pairs = [run_once(args, repeat) for repeat in range(args.repeats)]

    def mean(path: tuple[str, str]) -> float:
        return round(sum(pair[path[0]][path[1]] for pair in pairs) / len(pairs), 1)

    return {
        "search_vs_optuna_loop": round(sum(p["autoft_search_s"] for p in pairs)
                                       / sum(p["optuna_loop_s"] for p in pairs), 3),
        "autoft_search_s": round(sum(p["autoft_search_s"] for p in pairs) / len(pairs), 1),
        "optuna_loop_s": round(sum(p["optuna_loop_s"] for p in pairs) / len(pairs), 1),
        "optuna_loop": {key: mean(("optuna_loop", key)) for key in pairs[0]["optuna_loop"]},
        "autoft_phases": {key: mean(("autoft_phases", key)) for key in pairs[0]["autoft_phases"]},
        "later_trials_ratio": later_trials_ratio(pairs),
        "ray_init_shutdown_s": round(measure_ray_init(), 1),
        "pairs": pairs, "trials": args.trials, "train_samples": args.train_samples,
        "threads": args.threads,
    }


def later_trials_ratio(pairs: list[dict[str, Any]]) -> float | None:
    """In-trial time of the trials after the first, autoft over the loop (None: one trial)."""
    def later(phases: dict[str, float]) -> float:
        return phases["in_trials_s"] - phases["in_first_trial_s"]

    loop = sum(later(p["optuna_loop"]) for p in pairs)
    return round(sum(later(p["autoft_phases"]) for p in pairs) / loop, 3) if loop > 0 else None


def report(result: dict[str, Any], info: dict[str, Any]) -> None:
    phases, loop = result["autoft_phases"], result["optuna_loop"]
    pairs = "\n".join(f"| {p['experiment']} | {p['first']} | {p['autoft_search_s']} s | "
                      f"{p['optuna_loop_s']} s | {p['search_vs_optuna_loop']} |"
                      for p in result["pairs"])
    body = f"""
## Result

| pair (experiment) | ran first | autoft search | Optuna loop | ratio |
|---|---|---|---|---|
{pairs}

Means over the pairs:

| | autoft search (Ray, MLflow) | plain Optuna loop |
|---|---|---|
| wall clock, whole command | {result['autoft_search_s']} s | {result['optuna_loop_s']} s |
| start-up until the first trial | {phases['startup_until_first_trial_s']} s | \
{loop['startup_s']} s (after interpreter start) |
| inside the trials (`fit`, model load incl.) | {phases['in_trials_s']} s | \
{loop['in_trials_s']} s |
| between trials | {phases['between_trials_s']} s | — |
| after the last trial | {phases['after_last_trial_s']} s | {loop['after_last_trial_s']} s |

**overhead.search_vs_optuna_loop = {result['search_vs_optuna_loop']}** (total autoft time over
total loop time; target ≤ 1.15). Trials after the first (a reused worker) take
**{result['later_trials_ratio']}x** their in-process time (`overhead.later_trials_ratio`): the
cost per trial that stays when trials are long, where the fixed start-up and end fade. An
embedded `ray.init(address="local")` + `ray.shutdown()` alone takes \
{result['ray_init_shutdown_s']} s on this machine.
"""
    budget = {"trials": result["trials"], "task": f"{TASK}, {result['train_samples']} train "
              f"and {result['train_samples']} eval images, 1 epoch",
              "search": "TPE seed 0, FIFO (no early stopping), one trial at a time",
              "torch threads per trial": result["threads"], "pairs": len(result["pairs"])}
    write_report("overhead", "autoft search vs a plain Optuna loop", budget,
                 body + breakdown(result), info)
    update_summary("overhead", result)


def breakdown(result: dict[str, Any]) -> str:
    """Where the extra seconds of ``autoft search`` go, phase by phase (means over pairs)."""
    phases, loop = result["autoft_phases"], result["optuna_loop"]
    extra = result["autoft_search_s"] - result["optuna_loop_s"]
    rows = [("start-up (Ray start, Tuner set-up, first actor)",
             phases["startup_until_first_trial_s"] - loop["startup_s"]),
            ("inside the first trial (its new worker imports torch and the trainable)",
             phases["in_first_trial_s"] - loop["in_first_trial_s"]),
            ("inside the other trials (model load, epoch checkpoints)",
             phases["in_trials_s"] - phases["in_first_trial_s"]
             - loop["in_trials_s"] + loop["in_first_trial_s"]),
            ("between trials (actor reset, scheduling, searcher)", phases["between_trials_s"]),
            ("after the last trial (MLflow flush, plots, Ray shutdown)",
             phases["after_last_trial_s"] - loop["after_last_trial_s"])]
    lines = "\n".join(f"| {what} | {seconds:+.1f} s |" for what, seconds in rows)
    return (f"\n## Where the extra {extra:.1f} s go\n\n| phase | autoft − loop |\n|---|---|\n"
            f"{lines}\n\nThe interpreter start and imports of both commands are in the whole-"
            "command figures only (the loop's start-up column starts after them).\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=48,
                        help="training (and evaluation) images per trial")
    parser.add_argument("--repeats", type=int, default=2,
                        help="pairs of runs, alternating which goes first")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--optuna-loop", metavar="CONFIG", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.optuna_loop:
        optuna_loop(Path(args.optuna_loop))
        return
    info = machine()
    result = run(args)
    report(result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
