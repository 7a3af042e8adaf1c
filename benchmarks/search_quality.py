"""Does an autoft search beat the study's baseline? Best configuration vs baseline, re-trained.

Per task an ``autoft`` search (TPE + ASHA over ``search_spaces/ulmfit_*.yaml``, the example
config of the task, with the default warm start and confirmation) chooses its best
configuration; that configuration is then re-trained with fresh seeds, and so is the baseline
(constant rate, no strategy: :data:`benchmarks.common.TASKS`). The gain is the tuned mean minus
the baseline mean (``quality.<task>.gain_<metric>``); the search's own best score is not used,
since picking the best of many single-seed trials favours lucky seeds. Targets: on every task
a gain larger than the baseline's seed spread (its standard deviation; +0.03 MCC on CoLA),
and a confirmation that costs at most 25% of the search's trial-epochs.

Then the config ``autoft suggest`` writes for the task's data and model is searched at the same
budget (trials and epochs per trial) and retrained the same way: ``suggest_gain`` is its mean
minus the generic search's (target >= 0).

    python -m benchmarks.search_quality --tasks hymenoptera_effnet sst2_minilm --trials 16 --seeds 6
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from autoft import api
from autoft.core.config import Config, config_from_mapping
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
    run_or_resume,
    seeds,
    subset,
    task_config,
    tpe_asha_search,
    update_summary,
    write_report,
)


def suggested_search(task_name: str, args: argparse.Namespace
                     ) -> tuple[api.Suggested, Config, list[Any]]:
    """The search of the config ``autoft suggest`` writes for the task's data and model, at the
    generic search's budget: as many trials and the task's epochs per trial."""
    task = TASKS[task_name]
    example = task_config(task, data=subset(args.train_samples))
    data = example.data
    written = api.suggest(data.train.parent, example.model or "",
                          pretrained_file=example.pretrained_file,
                          max_train_samples=data.max_train_samples,
                          output=args.workdir / f"{task_name}-suggested.yaml")
    raw = yaml.safe_load(written.text)
    raw["name"] = f"{task_name}-suggested-n{args.trials}-e{task.baseline['num_epochs']}-s0"
    raw["fixed"]["num_epochs"] = task.baseline["num_epochs"]
    raw["search"]["num_samples"] = args.trials
    if data.max_eval_samples:
        raw["data"]["max_eval_samples"] = data.max_eval_samples
    raw["storage"] = str(args.workdir)
    config = config_from_mapping(raw, args.workdir, str(written.path))
    print(f"[{task_name}] suggested: {written.suggestion.quadrant} "
          f"({written.suggestion.why})", flush=True)
    return (written, *run_or_resume(config))


def retrained(task_name: str, config: Config, trials: list[Any],
              args: argparse.Namespace) -> tuple[Any, list[Any], dict[str, Any], list[float]]:
    """The configuration the search chose, its confirmations, its hyperparameters and its
    scores retrained with ``args.seeds`` new seeds."""
    best, confirmations = chosen(config, trials)
    if best is None:
        raise SystemExit(f"{task_name}: the search {config.name} has no scored trial")
    hparams = exported_hparams(config, best)
    scores = [fit_cached(task_name, {**hparams, "seed": s}, data=subset(args.train_samples))
              ["score"] for s in seeds(args.seeds)]
    return best, confirmations, hparams, scores


def run_task(task_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Search (warm start and confirmation as configured by default), then re-train the
    configuration the search chose and the baseline with ``args.seeds`` new seeds."""
    task = TASKS[task_name]
    data = subset(args.train_samples)
    config, trials = tpe_asha_search(task_name, args.trials, 0, task.baseline["num_epochs"],
                                     data=data, workdir=args.workdir)
    best, confirmations, tuned_hp, tuned = retrained(task_name, config, trials, args)
    retrain = seeds(args.seeds)
    baseline_hp = {**task.baseline, "num_epochs": config.num_epochs}
    base = [fit_cached(task_name, {**baseline_hp, "seed": s}, data=data)["score"]
            for s in retrain]
    gain = mean_std(tuned)[0] - mean_std(base)[0]
    target = max(0.03, mean_std(base)[1]) if task.metric == "mcc" else mean_std(base)[1]
    scored = [t for t in trials if t.score is not None and t.status == "completed"]
    trial_epochs = sum(t.epochs for t in trials)
    confirm_epochs = sum(len(r.epochs) for r in load_retrains(config.experiment_dir))
    return {"metric": task.metric, f"gain_{task.metric}": round(gain, 4),
            "tuned_mean": round(mean_std(tuned)[0], 4), "tuned_std": round(mean_std(tuned)[1], 4),
            "baseline_mean": round(mean_std(base)[0], 4),
            "baseline_std": round(mean_std(base)[1], 4),
            "target_gain": round(target, 4), "target_met": gain > target if task.metric != "mcc"
            else gain >= target,
            "search_best_score": round(best.score, 4), "best_trial": best.name,
            "confirmed": [{"trial": c.trial.name, "mean": round(c.mean, 4),
                           "std": round(c.std, 4), "scores": c.scores} for c in confirmations],
            "best_hparams": tuned_hp, "baseline_hparams": baseline_hp,
            "warm_start": config.search.warm_start,
            "trials": len(trials), "completed_trials": len(scored),
            "trial_epochs": trial_epochs, "confirm_epochs": confirm_epochs,
            "confirm_cost": round(confirm_epochs / trial_epochs, 3),
            "retrain_seeds": retrain, "tuned_scores": tuned, "baseline_scores": base,
            "train_samples": args.train_samples,
            **(suggested_result(task_name, args, tuned) if args.suggest else {})}


def suggested_result(task_name: str, args: argparse.Namespace,
                     tuned: list[float]) -> dict[str, Any]:
    """The suggested config's search, retrained like the generic one: ``suggest_gain`` is its
    mean minus the generic search's (target >= 0)."""
    written, config, trials = suggested_search(task_name, args)
    best, _, hparams, scores = retrained(task_name, config, trials, args)
    return {"suggest_gain": round(mean_std(scores)[0] - mean_std(tuned)[0], 4),
            "suggest_mean": round(mean_std(scores)[0], 4),
            "suggest_std": round(mean_std(scores)[1], 4), "suggest_scores": scores,
            "suggest_hparams": hparams, "suggest_best_trial": best.name,
            "suggest_trial_epochs": sum(t.epochs for t in trials),
            "suggest_quadrant": str(written.suggestion.quadrant),
            "suggest_profile": written.profile.as_dict()}


def confirmation(result: dict[str, Any]) -> str:
    """The confirmed top trials as ``trial_0003 0.85 ± 0.01`` and the extra trial-epochs."""
    confirmed = result.get("confirmed")
    if not confirmed:
        return "off"
    means = ", ".join(f"{c['trial']} {c['mean']:.4f} ± {c['std']:.4f}" for c in confirmed)
    return f"{means} (+{result['confirm_epochs']}, {result['confirm_cost']:.0%})"


def suggested(result: dict[str, Any]) -> str:
    """The suggested config's retrained scores and its gain over the generic search."""
    if "suggest_gain" not in result:
        return "not run"
    return (f"({result['suggest_quadrant']}) {fmt(result['suggest_scores'])}, "
            f"{result['suggest_gain']:+.4f}")


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
                    f"{r['search_best_score']:.4f} | {confirmation(r)} | {suggested(r)} |")
    configs = "\n".join(f"- {name}: best trial {r['best_trial']}: `{r['best_hparams']}`"
                        for name, r in results.items())
    body = f"""
## Result

| task | metric | baseline (mean ± std) | tuned (mean ± std) | gain | target | \
trials completed (epochs) | search's own best | confirmation (extra epochs) | \
suggested config (quadrant): mean, gain over the generic search |
|---|---|---|---|---|---|---|---|---|---|
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
    parser.add_argument("--seeds", type=int, default=6,
                        help="re-training seeds per config (3 misjudged the baseline's spread: "
                        "results/README.md)")
    data_arguments(parser)
    parser.add_argument("--no-suggest", dest="suggest", action="store_false",
                        help="skip the search of the config autoft suggest writes")
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
