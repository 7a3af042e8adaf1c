"""Beyond single-label classification: regression, multi-label and token classification.

For STS-B (regression, Pearson), GoEmotions (multi-label, micro-F1) and CoNLL-2003 (named
entities, seqeval's entity F1), all with MiniLM on 2 CPU cores: the study's untuned baseline
(constant rate, no strategy: :data:`benchmarks.common.TASKS`) and the configuration a TPE + ASHA
search exports (the example config of the task, its warm start and confirmation), each
retrained on ``--seeds`` seeds and scored on the full dev split. Training uses the example's
subset of the training split (``max_train_samples``: the CPU's budget).

Targets: STS-B Pearson >= 0.80, GoEmotions micro-F1 >= 0.40, CoNLL-2003 entity F1 >= 0.70, and
on each the tuned mean >= the baseline mean (the gain is reported against the baseline's seed
std).

    python -m benchmarks.tasks --tasks stsb_minilm goemotions_minilm conll2003_minilm --trials 8
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from autoft.tuning.confirm import chosen, load_retrains
from benchmarks.common import (
    SUMMARY_FILE,
    TASKS,
    data_arguments,
    exported_hparams,
    fit_cached,
    fmt,
    machine,
    mean_std,
    seeds,
    subset,
    tpe_asha_search,
    update_summary,
    write_report,
)

#: The level each task must reach (tuned mean), by the task's metric.
TARGETS = {"stsb_minilm": 0.80, "goemotions_minilm": 0.40, "conll2003_minilm": 0.70}


def run_task(task_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The task's search, then its exported best and the baseline retrained on the seeds."""
    task = TASKS[task_name]
    data = subset(args.train_samples)
    config, trials = tpe_asha_search(task_name, args.trials, 0, task.baseline["num_epochs"],
                                     data=data, workdir=args.workdir)
    best, confirmations = chosen(config, trials)
    if best is None:
        raise SystemExit(f"{task_name}: the search {config.name} has no scored trial")
    tuned_hp = exported_hparams(config, best)
    retrain = seeds(args.seeds)
    tuned = [fit_cached(task_name, {**tuned_hp, "seed": s}, data=data) for s in retrain]
    baseline_hp = {**task.baseline, "num_epochs": config.num_epochs}
    base = [fit_cached(task_name, {**baseline_hp, "seed": s}, data=data) for s in retrain]
    tuned_mean, tuned_std = mean_std(r["score"] for r in tuned)
    base_mean, base_std = mean_std(r["score"] for r in base)
    trial_epochs = sum(t.epochs for t in trials)
    return {
        "metric": task.metric, "target": TARGETS[task_name],
        "tuned_mean": round(tuned_mean, 4), "tuned_std": round(tuned_std, 4),
        "baseline_mean": round(base_mean, 4), "baseline_std": round(base_std, 4),
        "gain": round(tuned_mean - base_mean, 4),
        "gain_in_baseline_stds": round((tuned_mean - base_mean) / base_std, 2) if base_std
        else None,
        "target_met": tuned_mean >= TARGETS[task_name] and tuned_mean >= base_mean,
        "tuned_scores": [r["score"] for r in tuned], "baseline_scores": [r["score"] for r in base],
        "other_metrics": {"tuned": _final_means(tuned), "baseline": _final_means(base)},
        "fit_seconds": round(mean_std(r["seconds"] for r in tuned)[0]),
        "search_best_score": round(best.score, 4), "best_trial": best.name,
        "best_hparams": tuned_hp, "baseline_hparams": baseline_hp,
        "confirmed": [c.trial.name for c in confirmations],
        "trials": len(trials), "trial_epochs": trial_epochs,
        "confirm_epochs": sum(len(r.epochs) for r in load_retrains(config.experiment_dir)),
        "train_samples": config.data.max_train_samples if config.data else None,
        "retrain_seeds": retrain,
    }


def _final_means(records: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of every ``eval_*`` metric of the last epoch over the seeds."""
    finals = [r["epochs"][-1] for r in records]
    keys = sorted(k for k in finals[0] if k.startswith("eval_"))
    return {k: round(mean_std(f[k] for f in finals)[0], 4) for k in keys}


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace,
           info: dict[str, Any]) -> None:
    """Merge ``results`` into ``summary.json``'s ``tasks``; write ``results/tasks.md`` with
    every task recorded there (earlier runs' tasks included)."""
    update_summary("tasks", results)
    results = json.loads(SUMMARY_FILE.read_text())["tasks"]
    rows = []
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['metric']} | {r['train_samples']} | {fmt(r['baseline_scores'])} | "
            f"{fmt(r['tuned_scores'])} | {r['gain']:+.4f} ({r['gain_in_baseline_stds']} "
            f"baseline stds) | ≥ {r['target']}: {'met' if r['target_met'] else 'missed'} | "
            f"{r['trials']} trials, {r['trial_epochs']} trial-epochs + {r['confirm_epochs']} "
            f"confirming | {r['fit_seconds']} s |")
    others = "\n".join(f"- {name}: tuned {r['other_metrics']['tuned']}; baseline "
                       f"{r['other_metrics']['baseline']}" for name, r in results.items())
    configs = "\n".join(f"- {name}: best trial {r['best_trial']} ({r['search_best_score']}): "
                        f"`{r['best_hparams']}`" for name, r in results.items())
    body = f"""
## Result

| task | metric | training examples | baseline (mean ± std) | tuned (mean ± std) | gain | \
target | search | one retrain |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Every metric of the last epoch (means over the seeds):

{others}

Exported configurations:

{configs}
"""
    budget = {"search": f"TPE + ASHA (grace 1, reduction 2), seed 0, {args.trials} trials, "
              "2 at once with 1 torch thread each, the examples' warm start and confirmation",
              "retraining": f"{args.seeds} seeds ({seeds(args.seeds)}), 2 torch threads, the "
              "full dev split", "tasks recorded": list(results)}
    write_report("tasks", "Tasks beyond single-label classification", budget, body, info)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    data_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = machine()
    results: dict[str, dict[str, Any]] = {}
    for task_name in args.tasks:
        results[task_name] = run_task(task_name, args)
        report(results, args, info)


if __name__ == "__main__":
    main()
