"""Does an autoft search beat the study's baseline? Best configuration vs baseline, re-trained.

Per task an ``autoft`` search (TPE + ASHA over ``search_spaces/ulmfit_*.yaml``, the example
config of the task) picks its best trial; that configuration is then re-trained with fresh
seeds, and so is the baseline (constant rate, no strategy: :data:`benchmarks.common.TASKS`).
The gain is the tuned mean minus the baseline mean (``quality.<task>.gain_<metric>``); the
search's own best score is not used, since picking the best of many single-seed trials favours
lucky seeds. Targets: +0.03 MCC on CoLA; on ants/bees and SST-2 a gain larger than the
baseline's seed spread (its standard deviation).

    python -m benchmarks.search_quality --tasks hymenoptera_effnet sst2_minilm --trials 16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_WORKDIR,
    SUMMARY_FILE,
    TASKS,
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


def run_task(task_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Search, then re-train the best configuration and the baseline with ``args.seeds`` seeds."""
    task = TASKS[task_name]
    data = subset(args.train_samples)
    config, trials = tpe_asha_search(task_name, args.trials, 0, task.baseline["num_epochs"],
                                     data=data, workdir=args.workdir)
    scored = [t for t in trials if t.score is not None and t.status == "completed"]
    best = max(scored or [t for t in trials if t.score is not None], key=lambda t: t.score)
    retrain = seeds(args.seeds)
    tuned_hp = {**config.fixed, **best.hparams}
    baseline_hp = {**task.baseline, "num_epochs": config.num_epochs}
    tuned = [fit_cached(task_name, {**tuned_hp, "seed": s}, data=data)["score"] for s in retrain]
    base = [fit_cached(task_name, {**baseline_hp, "seed": s}, data=data)["score"]
            for s in retrain]
    gain = mean_std(tuned)[0] - mean_std(base)[0]
    target = 0.03 if task.metric == "mcc" else mean_std(base)[1]
    return {"metric": task.metric, f"gain_{task.metric}": round(gain, 4),
            "tuned_mean": round(mean_std(tuned)[0], 4), "tuned_std": round(mean_std(tuned)[1], 4),
            "baseline_mean": round(mean_std(base)[0], 4),
            "baseline_std": round(mean_std(base)[1], 4),
            "target_gain": round(target, 4), "target_met": gain > target if task.metric != "mcc"
            else gain >= target,
            "search_best_score": round(best.score, 4), "best_trial": best.name,
            "best_hparams": tuned_hp, "baseline_hparams": baseline_hp,
            "trials": len(trials), "completed_trials": len(scored),
            "trial_epochs": sum(t.epochs for t in trials), "retrain_seeds": retrain,
            "tuned_scores": tuned, "baseline_scores": base,
            "train_samples": args.train_samples}


def report(new: dict[str, dict[str, Any]], args: argparse.Namespace,
           info: dict[str, Any]) -> None:
    """Merge ``new`` into summary.json's ``quality``; write ``results/search_quality.md`` with
    every task recorded there (earlier runs' tasks included, each with its own budget)."""
    update_summary("quality", new)
    results = json.loads(SUMMARY_FILE.read_text())["quality"]
    rows = []
    for name, r in results.items():
        metric = r["metric"]
        rows.append(f"| {name} | {metric} | {fmt(r['baseline_scores'])} | "
                    f"{fmt(r['tuned_scores'])} | {r[f'gain_{metric}']:+.4f} | "
                    f"{'≥' if metric == 'mcc' else '>'} {r['target_gain']:.4f}: "
                    f"{'met' if r['target_met'] else 'missed'} | {r['completed_trials']} of "
                    f"{r['trials']} ({r['trial_epochs']} trial-epochs) | "
                    f"{r['search_best_score']:.4f} |")
    configs = "\n".join(f"- {name}: best trial {r['best_trial']}: `{r['best_hparams']}`"
                        for name, r in results.items())
    body = f"""
## Result

| task | metric | baseline (mean ± std) | tuned (mean ± std) | gain | target | \
trials completed (epochs) | search's own best |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Best configurations:

{configs}
"""
    budget = {"search": f"TPE + ASHA (grace 1, reduction 2), seed 0, {args.trials} trials, "
              "2 at once with 1 torch thread each", "retraining": f"{args.seeds} seeds "
              f"({seeds(args.seeds)}), 2 torch threads, for the tuned and the baseline config",
              "tasks (this run)": list(new), "train subset": args.train_samples or "the task's own"}
    write_report("search_quality", "Search quality: tuned vs baseline", budget, body, info)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS),
                        default=["hymenoptera_effnet", "sst2_minilm", "cola_minilm"])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3, help="re-training seeds per config")
    parser.add_argument("--train-samples", type=int,
                        help="subsample train and eval (smoke runs only)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = machine()
    results: dict[str, dict[str, Any]] = {}
    for task_name in args.tasks:
        results[task_name] = {**run_task(task_name, args), "search_trials": args.trials,
                              "retrain_seeds_n": args.seeds}
        report(results, args, info)


if __name__ == "__main__":
    main()
