"""How many trial-epochs TPE + ASHA needs to match a random search without early stopping.

On ants/bees (EfficientNet-Lite0, 3 epochs per full trial, ``search_spaces/ulmfit_image.yaml``)
two ``autoft`` searches run per seed: the reference, random sampling with FIFO (every trial runs
its 3 epochs; no warm start, no confirmation), and TPE + ASHA as a user gets it (the default
warm start and confirmation; its confirmation epochs are reported, not counted: they retrain
trials already scored). Every epoch any trial reports counts as one trial-epoch, in the
order the epochs finished (the trials' ``result.json`` timestamps). The figure is the number of
trial-epochs TPE + ASHA spent until its best score so far first reached the reference's best
score, divided by the reference's whole budget (trials x 3 epochs): the median over seeds is
``efficiency.trial_epochs_vs_random`` (target <= 0.5). "Best score" is the best ``eval_accuracy``
any epoch reported, for both searches alike.

    python -m benchmarks.search_efficiency --reference-trials 32 --trials 32 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from autoft.tuning.confirm import load_retrains  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS,
    data_arguments,
    epoch_events,
    machine,
    search,
    subset,
    tpe_asha_search,
    update_summary,
    write_report,
)

TASK = "hymenoptera_effnet"
#: The random reference samples with seed + this: TPE's first (random start-up) trials would
#: otherwise be the reference's first trials, and the comparison would start from a tie.
REFERENCE_SEED_OFFSET = 1000


def best_so_far(experiment_dir: Path, metric_key: str) -> list[float]:
    """Best score after each trial-epoch (index i: after i + 1 epochs)."""
    curve, best = [], float("-inf")
    for _, _, score in epoch_events(experiment_dir, metric_key):
        best = max(best, score)
        curve.append(best)
    return curve


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """Trial-epochs until ``curve`` first reaches ``target``; None if it never does."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target - 1e-12), None)


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The reference and the TPE + ASHA search of one seed, and how they compare."""
    fixed = {"num_epochs": args.epochs}
    data = subset(args.train_samples)
    suffix = f"-sub{args.train_samples}" if args.train_samples else ""
    ref_seed = seed + REFERENCE_SEED_OFFSET
    ref_config, _ = search(TASK, f"{TASK}-random-fifo-n{args.reference_trials}-e{args.epochs}"
                           f"-s{ref_seed}{suffix}",
                           {"seed": ref_seed, "algorithm": "random", "scheduler": "fifo",
                            "num_samples": args.reference_trials, "warm_start": "none",
                            "confirm": None}, data=data,
                           fixed=fixed, workdir=args.workdir)
    tpe_config, _ = tpe_asha_search(TASK, args.trials, seed, args.epochs, data=data,
                                    workdir=args.workdir)
    reference = best_so_far(ref_config.experiment_dir, ref_config.metric_key)
    tuned = best_so_far(tpe_config.experiment_dir, tpe_config.metric_key)
    target = reference[-1]
    needed = epochs_to_reach(tuned, target)
    budget = args.reference_trials * args.epochs
    return {"seed": seed, "reference_seed": ref_seed, "reference_best": target,
            "reference_epochs": len(reference),
            "reference_epochs_to_own_best": epochs_to_reach(reference, target),
            "tpe_asha_best": tuned[-1], "tpe_asha_epochs": len(tuned),
            "tpe_asha_confirm_epochs": sum(len(r.epochs)
                                           for r in load_retrains(tpe_config.experiment_dir)),
            "tpe_asha_epochs_to_reference_best": needed,
            "tpe_asha_epochs_to_own_best": epochs_to_reach(tuned, tuned[-1]),
            "reference_epochs_to_tpe_asha_best": epochs_to_reach(reference, tuned[-1]),
            "ratio": None if needed is None else round(needed / budget, 3),
            "curves": {"random_fifo": reference, "tpe_asha": tuned}}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far accuracy against trial-epochs, both searches, every seed."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        for key, style, seed in (("random_fifo", "--", result["reference_seed"]),
                                 ("tpe_asha", "-", result["seed"])):
            curve = result["curves"][key]
            axes.step(range(1, len(curve) + 1), curve, style, where="post",
                      label=f"{key.replace('_', ' + ').upper()} seed {seed}")
    axes.set_xlabel("trial-epochs (epochs reported by all trials so far)")
    axes.set_ylabel("best eval accuracy so far")
    axes.set_title("ants/bees, EfficientNet-Lite0: TPE + ASHA vs random search")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report(results: list[dict[str, Any]], args: argparse.Namespace,
           info: dict[str, Any]) -> dict[str, Any]:
    budget_epochs = args.reference_trials * args.epochs
    ratios = [r["ratio"] for r in results]
    reached = [r for r in ratios if r is not None]
    median = (statistics.median([r if r is not None else float("inf") for r in ratios])
              if ratios else None)
    rows = "\n".join(
        f"| {r['seed']} | {r['reference_best']:.4f} | {r['reference_epochs']} "
        f"({r['reference_epochs_to_own_best']} to its best) | {r['tpe_asha_best']:.4f} | "
        f"{r['tpe_asha_epochs']} (+{r['tpe_asha_confirm_epochs']} confirming) | "
        f"{r['tpe_asha_epochs_to_reference_best'] or 'not reached'} | "
        f"{r['ratio'] if r['ratio'] is not None else '—'} | {r['tpe_asha_epochs_to_own_best']} "
        f"/ {r['reference_epochs_to_tpe_asha_best'] or 'not reached'} |" for r in results)
    plot(results, RESULTS / "search_efficiency.png")
    figure = None if median is None or median == float("inf") else round(median, 3)
    body = f"""
## Result

| seed | random best | random trial-epochs | TPE+ASHA best | TPE+ASHA trial-epochs | \
TPE+ASHA epochs to random's best | ratio (÷ {budget_epochs}) | epochs to TPE+ASHA's best: \
TPE+ASHA / random |
|---|---|---|---|---|---|---|---|
{rows}

**efficiency.trial_epochs_vs_random = {figure if figure is not None else 'not reached'}**
(median over {len(results)} seed(s); target ≤ 0.5; {len(reached)} of {len(results)} seed(s)
reached the reference's best).

![best so far](search_efficiency.png)
"""
    budget = {"reference": f"random sampler, FIFO, {args.reference_trials} trials x {args.epochs} "
              "epochs, no warm start, no confirmation",
              "tuned": f"TPE + ASHA (grace 1, reduction 2, max = epochs per trial), "
              f"{args.trials} trials, default warm start and confirmation",
              "seeds": f"TPE + ASHA {list(range(args.seeds))}, random "
              f"{[s + REFERENCE_SEED_OFFSET for s in range(args.seeds)]}",
              "trials at once": "2, 1 torch thread each"}
    write_report("search_efficiency", "Search efficiency: TPE + ASHA vs random search", budget,
                 body, info)
    summary = {"trial_epochs_vs_random": figure, "per_seed": [
        {k: v for k, v in r.items() if k != "curves"} for r in results],
        "budget": {"reference_trials": args.reference_trials, "trials": args.trials,
                   "seeds": args.seeds, "epochs_per_trial": args.epochs,
                   "train_samples": args.train_samples}}
    update_summary("efficiency", summary)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-trials", type=int, default=32)
    parser.add_argument("--trials", type=int, default=32, help="TPE + ASHA trials")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of a full trial")
    data_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = machine()
    results = [one_seed(seed, args) for seed in range(args.seeds)]
    print(report(results, args, info))


if __name__ == "__main__":
    main()
