"""The harness the benchmark scripts share: tasks, one cached fine-tune, machine, summary.json.

* :data:`TASKS` — the three benchmark tasks (CoLA and SST-2 with MiniLM, ants/bees with
  EfficientNet-Lite0), each a search config built from ``examples/*.yaml`` and the baseline
  hyperparameters the study compares against (constant rate, no strategy).
* :func:`fit_cached` — one fine-tune of a task with fixed hyperparameters and seed, through the
  trainable's own ``fit`` and an in-memory reporter; each result is appended to
  ``results/runs.jsonl`` and found there again by every script (the baseline of
  ``reproduce_study.py`` is the baseline of ``search_quality.py``), so an interrupted benchmark
  picks up where it stopped.
* :func:`machine` — the machine description every results file starts with.
* :func:`update_summary` — read-modify-write of one key of ``results/summary.json`` under a
  file lock (other benchmarks own other keys).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402  (after HF_HUB_OFFLINE)

from autoft.core.config import Config, config_from_mapping, read_yaml  # noqa: E402
from benchmarks.locks import locked  # noqa: E402
from trainables import TrialContext, load_trainable  # noqa: E402
from trainables.backbones import split_model, with_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Where results go; ``AUTOFT_BENCHMARK_RESULTS`` moves them (the smoke test writes elsewhere).
RESULTS = Path(os.environ.get("AUTOFT_BENCHMARK_RESULTS", REPO / "benchmarks" / "results"))
RUNS_FILE = RESULTS / "runs.jsonl"
SUMMARY_FILE = RESULTS / "summary.json"
SHARED_DATA = REPO.parent / "shared" / "data"
#: Where searches write their Ray and MLflow files (outside the repository).
DEFAULT_WORKDIR = Path(os.environ.get("AUTOFT_BENCHMARK_WORKDIR", REPO.parent / "bench_work"))


@dataclass(frozen=True)
class Task:
    """A benchmark task: its example config, metric and the study's baseline."""

    name: str
    example: str
    metric: str
    baseline: dict[str, Any]
    data_overrides: dict[str, Any] = field(default_factory=dict)
    #: Bumped when the trainable's fine-tune or the search of this task changes, so that
    #: ``runs.jsonl`` records and searches of the older code are not taken for the current one
    #: (0: never changed).
    revision: int = 0


TASKS: dict[str, Task] = {
    "cola_minilm": Task("cola_minilm", "cola_minilm.yaml", "mcc",
                        {"learning_rate": 1e-4, "batch_size": 32, "num_epochs": 3,
                         "max_length": 64}),
    "sst2_minilm": Task("sst2_minilm", "sst2_minilm.yaml", "accuracy",
                        {"learning_rate": 5e-5, "batch_size": 16, "num_epochs": 2,
                         "max_length": 64}, {"max_train_samples": 1000}),
    "hymenoptera_effnet": Task("hymenoptera_effnet", "hymenoptera_effnet.yaml", "accuracy",
                               {"learning_rate": 1e-4, "batch_size": 16, "num_epochs": 3}),
    # The same data, EfficientNet-Lite0/1/2 searched (benchmarks/model_choice.py). Revision 1:
    # the warm start trains the baseline on each backbone (autoft.tuning.warm_start).
    "hymenoptera_choice": Task("hymenoptera_choice", "hymenoptera_model_choice.yaml",
                               "accuracy", {"learning_rate": 1e-4, "batch_size": 16,
                                            "num_epochs": 3}, revision=1),
    # Beyond single-label classification (benchmarks/tasks.py): the study's text baseline, on
    # the part of the training data (and the epochs) that 2 CPU cores fine-tune in minutes.
    # Revision 1: their heads start at the label prior (trainables.tasks.Task.prior).
    "stsb_minilm": Task("stsb_minilm", "stsb_minilm.yaml", "pearson",
                        {"learning_rate": 1e-4, "batch_size": 32, "num_epochs": 3,
                         "max_length": 128}, revision=1),
    "goemotions_minilm": Task("goemotions_minilm", "goemotions_minilm.yaml", "micro_f1",
                              {"learning_rate": 1e-4, "batch_size": 32, "num_epochs": 2,
                               "max_length": 64}, {"max_train_samples": 4000}, revision=1),
    "conll2003_minilm": Task("conll2003_minilm", "conll2003_minilm.yaml", "entity_f1",
                             {"learning_rate": 1e-4, "batch_size": 32, "num_epochs": 2,
                              "max_length": 128}, revision=1),
}


def task_config(task: Task, *, data: Mapping[str, Any] | None = None, cpu: float = 2,
                search: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
                name: str | None = None, workdir: Path = DEFAULT_WORKDIR) -> Config:
    """The task's example config with benchmark overrides, validated like a user's file."""
    example = REPO / "examples" / task.example
    raw = dict(read_yaml(example))
    raw["data"] = {**raw["data"], **task.data_overrides, **(data or {})}
    raw["search"] = {**raw["search"], **(search or {})}
    raw["fixed"] = dict(fixed if fixed is not None else raw.get("fixed", {}))
    raw["resources"] = {"cpu": cpu, "gpu": 0}
    raw["storage"] = str(workdir)
    if name:
        raw["name"] = name
    return config_from_mapping(raw, example.parent, str(example))


#: Seeds of the fixed-hyperparameter runs start here, away from the trial seeds of a search
#: (search seed + trial index), so a re-trained best trial never repeats the trial it came from.
FIRST_SEED = 100


def data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every search benchmark shares: ``--train-samples`` (smoke runs) and
    ``--workdir`` (where searches write)."""
    parser.add_argument("--train-samples", type=int,
                        help="subsample train and eval (smoke runs only)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)


def exported_hparams(config: Config, best: Any) -> dict[str, Any]:
    """The hyperparameters ``autoft export`` gives a search's best trial (its epoch, its chosen
    model), less the seed, which each retrain sets."""
    from autoft.tuning.export import best_config

    exported = best_config(config, best)
    chosen_model = {"model": best.hparams["model"]} if "model" in best.hparams else {}
    return {**{k: v for k, v in exported["fixed"].items() if k != "seed"}, **chosen_model}


def seeds(n: int) -> list[int]:
    """The ``n`` seeds of every repeated fine-tune (baseline, strategies, tuned config)."""
    return list(range(FIRST_SEED, FIRST_SEED + n))


def subset(samples: int | None) -> dict[str, int] | None:
    """Data overrides that cut train and eval to ``samples`` rows (None: the task's own data)."""
    return {"max_train_samples": samples, "max_eval_samples": samples} if samples else None


class MemoryReporter:
    """A trainables Reporter that keeps every epoch's metrics in memory (no checkpoints)."""

    trial = TrialContext(index=0, seed=0)

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def restore(self) -> dict[str, Any] | None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        self.epochs.append(dict(metrics))


@cache
def _prepared(task_name: str, data_key: str, model: str) -> Any:
    config = with_model(task_config(TASKS[task_name], data=json.loads(data_key)), model)
    return load_trainable(config.trainable).prepare(config)


def run_key(task: str, hparams: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> str:
    """The cache key of one fine-tune: task (with its revision, when not 0), data overrides and
    hyperparameters (seed included)."""
    revision = TASKS[task].revision if task in TASKS else 0
    return json.dumps({"task": task, "data": dict(data or {}), "hparams": dict(hparams),
                       **({"revision": revision} if revision else {})}, sort_keys=True)


def load_runs() -> dict[str, dict[str, Any]]:
    """Every recorded fine-tune of ``runs.jsonl`` by its key (the last record wins)."""
    if not RUNS_FILE.exists():
        return {}
    runs = {}
    for line in RUNS_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            runs[record["key"]] = record
    return runs


def fit_cached(task_name: str, hparams: Mapping[str, Any], *,
               data: Mapping[str, Any] | None = None, cpu: int = 2) -> dict[str, Any]:
    """One fine-tune (``hparams`` include ``seed``, and ``model`` where a backbone was chosen),
    from ``runs.jsonl`` when already done.

    Returns the record: ``score`` (last epoch's ``eval_<metric>``), ``epochs`` (every reported
    epoch) and ``seconds`` (wall clock of ``fit``, model load included).
    """
    key = run_key(task_name, hparams, data)
    done = load_runs().get(key)
    if done is not None:
        return done
    task = TASKS[task_name]
    choice, config, rest = split_model(task_config(task, data=data, cpu=cpu), hparams)
    prepared = _prepared(task_name, json.dumps(dict(data or {}), sort_keys=True), choice)
    reporter = MemoryReporter()
    start = time.perf_counter()
    final = load_trainable(config.trainable).fit(config, prepared, rest, reporter)
    record = {"key": key, "task": task_name, "hparams": dict(hparams), "data": dict(data or {}),
              "score": float(final[f"eval_{task.metric}"]), "epochs": reporter.epochs,
              "seconds": round(time.perf_counter() - start, 1), "torch_threads": cpu,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with locked("runs"), RUNS_FILE.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    print(f"[{task_name}] {json.dumps(dict(hparams), sort_keys=True)} -> "
          f"{record['score']:.4f} in {record['seconds']:.0f}s", flush=True)
    return record


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: Iterable[float]) -> str:
    """``0.8431 ± 0.0123`` (n)."""
    values = list(values)
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f} (n={len(values)})"


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads, load average and versions, at the time of the call."""
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def machine_markdown(info: Mapping[str, Any] | None = None) -> str:
    """The machine description as a markdown bullet list."""
    info = info or machine()
    return "\n".join(f"- {key}: {value}" for key, value in info.items())


def update_summary(key: str, value: Mapping[str, Any]) -> None:
    """Merge ``value`` into ``summary.json[key]``, keeping every other key as it is."""
    with locked("summary"):
        summary = json.loads(SUMMARY_FILE.read_text()) if SUMMARY_FILE.exists() else {}
        summary[key] = {**summary.get(key, {}), **value}
        SUMMARY_FILE.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def write_report(name: str, title: str, budget: Mapping[str, Any], body: str,
                 info: Mapping[str, Any] | None = None) -> Path:
    """``results/<name>.md``: title, machine, the exact budget that produced it, the body."""
    path = RESULTS / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    budget_lines = "\n".join(f"- {k}: {v}" for k, v in budget.items())
    path.write_text(f"# {title}\n\n## Machine\n\n{machine_markdown(info)}\n\n"
                    f"## Budget of these numbers\n\n{budget_lines}\n\n{body.strip()}\n",
                    encoding="utf-8")
    return path


def revision_suffix(task_name: str) -> str:
    """What a search name of ``task_name`` ends with: ``-r<revision>``, or nothing at 0."""
    revision = TASKS[task_name].revision
    return f"-r{revision}" if revision else ""


def tpe_asha_search(task_name: str, trials: int, seed: int, epochs: int, *,
                    data: Mapping[str, Any] | None = None,
                    workdir: Path = DEFAULT_WORKDIR) -> tuple[Config, list[Any]]:
    """The example's TPE + ASHA search of a task with ``epochs`` per full trial, under one name
    for every script: the search of ``search_quality.py`` on ants/bees is the seed-0 search of
    ``search_efficiency.py``."""
    fixed = {**read_yaml(REPO / "examples" / TASKS[task_name].example).get("fixed", {}),
             "num_epochs": epochs}
    suffix = (f"-sub{data['max_train_samples']}" if data else "") + revision_suffix(task_name)
    return search(task_name, f"{task_name}-tpe-asha-n{trials}-e{epochs}-s{seed}{suffix}",
                  {"algorithm": "tpe", "scheduler": "asha", "num_samples": trials, "seed": seed},
                  data=data, fixed=fixed, workdir=workdir)


def search(task_name: str, name: str, settings: Mapping[str, Any], *,
           data: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None,
           workdir: Path = DEFAULT_WORKDIR) -> tuple[Config, list[Any]]:
    """An ``autoft`` search (``run_search``: local Ray, MLflow on SQLite) of a task, or the
    finished one of the same ``name`` under ``workdir``, continued if it was interrupted.

    Trials take 1 CPU each, 2 at a time (the examples' ``max_concurrent``).
    Returns the config and its :class:`~autoft.tuning.results.TrialRecord` list.
    """
    return run_or_resume(task_config(TASKS[task_name], data=data, cpu=1, search=settings,
                                     fixed=fixed, name=name, workdir=workdir))


def run_or_resume(config: Config) -> tuple[Config, list[Any]]:
    """``config``'s search, or its finished one under its storage, continued if interrupted."""
    from autoft.tuning.driver import run_search
    from autoft.tuning.experiment import EXPERIMENT_CONFIG
    from autoft.tuning.results import load_trials

    started = (config.experiment_dir / EXPERIMENT_CONFIG).exists()
    if started:
        trials = load_trials(config.experiment_dir, config.metric_key, config.num_epochs,
                             config.search.select)
        if len(trials) >= config.search.num_samples and all(
                t.status != "running" for t in trials):
            return config, trials
    outcome = run_search(config, resume=started)
    return config, outcome.trials


def epoch_events(experiment_dir: Path, metric_key: str) -> list[tuple[float, str, float]]:
    """Every epoch any trial reported, in the order they finished: (time, trial, score)."""
    events = []
    for result_file in experiment_dir.glob("trial_*/result.json"):
        for line in result_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if metric_key in row:
                    events.append((float(row["timestamp"]), result_file.parent.name,
                                   float(row[metric_key])))
    return sorted(events)
