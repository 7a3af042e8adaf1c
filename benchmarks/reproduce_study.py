"""Reproduce the strategy grid of PaddleHub's ULMFiT study, each strategy against its baseline.

The study (PaddleHub ``tutorial/strategy_exp.md``) fine-tuned with a constant learning rate and
no strategy (the baseline), then changed one strategy at a time: warm-up + linear decay (to 0
and to lr/32), slanted triangular rates (STLR), discriminative fine-tuning (``dis_blocks``) and
gradual unfreezing (``frz_blocks``). Here the same grid runs on

* text: MiniLM on the full CoLA training set, dev MCC (the study: BERT-base on CoLA);
* image: EfficientNet-Lite0 with ImageNet weights on ants/bees, val accuracy, 1 and 3 epochs
  (the study: ResNet50 on "dogcat 1/10", also high similarity and small).

Every (strategy, epochs, seed) is one fine-tune through the trainable's own ``fit``
(:func:`benchmarks.common.fit_cached`), recorded in ``results/runs.jsonl``: rerunning the script
with a larger budget only runs what is missing. A 1-epoch run is a run of its own (the schedule
spans the whole run, so it is not the first epoch of a 3-epoch run).

    python -m benchmarks.reproduce_study --task image --seeds 1 --epochs 1 3
    python -m benchmarks.reproduce_study --task text --seeds 3 --strategies baseline stlr_0.1
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import (
    TASKS,
    fit_cached,
    fmt,
    load_runs,
    mean_std,
    run_key,
    subset,
    update_summary,
    write_report,
)
from benchmarks.common import (
    seeds as first_seeds,
)

#: One strategy = the hyperparameters it changes from the baseline (constant rate, nothing on).
TEXT_STRATEGIES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "warmup_0.1_to_0": {"lr_schedule": "warmup_linear", "warmup_proportion": 0.1},
    "warmup_0.2_to_0": {"lr_schedule": "warmup_linear", "warmup_proportion": 0.2},
    "warmup_0.1_to_lr/32": {"lr_schedule": "warmup_linear", "warmup_proportion": 0.1,
                            "end_lr_ratio": 1 / 32},
    "warmup_0.2_to_lr/32": {"lr_schedule": "warmup_linear", "warmup_proportion": 0.2,
                            "end_lr_ratio": 1 / 32},
    "stlr_0.1": {"lr_schedule": "stlr", "cut_frac": 0.1},
    "stlr_0.2": {"lr_schedule": "stlr", "cut_frac": 0.2},
    "dis_blocks_3": {"dis_blocks": 3},
    "dis_blocks_5": {"dis_blocks": 5},
    "frz_blocks_3": {"frz_blocks": 3},
}

IMAGE_STRATEGIES: dict[str, dict[str, Any]] = {
    "baseline": {},
    **{f"warmup_{w}": {"lr_schedule": "warmup_linear", "warmup_proportion": w}
       for w in (0.01, 0.05, 0.1, 0.2)},
    **{f"stlr_{c}": {"lr_schedule": "stlr", "cut_frac": c} for c in (0.01, 0.05, 0.1, 0.2)},
    "dis_blocks_3": {"dis_blocks": 3},
    "dis_blocks_5": {"dis_blocks": 5},
    "frz_blocks_3": {"frz_blocks": 3},
    "frz_blocks_5": {"frz_blocks": 5},
}

#: The study's own numbers (PaddleHub tutorial/strategy_exp.md, commit 1478fd94): CoLA dev MCC
#: with BERT-base (lr 5e-5, batch 32, 3 epochs, max length 128).
STUDY_TEXT: dict[str, str] = {
    "baseline": "0.5680", "warmup_0.1_to_0": "0.5780", "warmup_0.2_to_0": "0.5786",
    "warmup_0.1_to_lr/32": "0.5887", "warmup_0.2_to_lr/32": "0.5826", "stlr_0.1": "0.5880",
    "stlr_0.2": "0.5827", "dis_blocks_3": "0.5996", "dis_blocks_5": "0.5749",
    "frz_blocks_3": "0.5704",
}
#: Same source: "dogcat 1/10" (high similarity, small) with ResNet50, lr 1e-4, total batch 80,
#: dev / test accuracy; 1 epoch everywhere, plus the 3-epoch gradual-unfreezing table.
STUDY_IMAGE: dict[tuple[str, int], str] = {
    ("baseline", 1): "1.0 / 0.9719", ("warmup_0.01", 1): "0.9958 / 0.9730",
    ("warmup_0.05", 1): "0.9958 / 0.9844", ("warmup_0.1", 1): "0.9958 / 0.9802",
    ("warmup_0.2", 1): "0.9916 / 0.9813", ("stlr_0.01", 1): "0.4481 / 0.5346 (cut = 0 bug)",
    ("stlr_0.05", 1): "1.0 / 0.9844", ("stlr_0.1", 1): "0.9958 / 0.9688",
    ("stlr_0.2", 1): "0.9916 / 0.9916", ("dis_blocks_3", 1): "0.9958 / 0.9802",
    ("dis_blocks_5", 1): "0.9958 / 0.9802", ("frz_blocks_3", 1): "1.0 / 0.9719",
    ("frz_blocks_5", 1): "1.0 / 0.9802", ("baseline", 3): "1.0 / 0.9719",
    ("frz_blocks_3", 3): "1.0 / 0.9719", ("frz_blocks_5", 3): "1.0 / 0.9802",
}

GRIDS = {"text": ("cola_minilm", TEXT_STRATEGIES), "image": ("hymenoptera_effnet",
                                                             IMAGE_STRATEGIES)}


def hparams(task: str, strategy: dict[str, Any], epochs: int, seed: int) -> dict[str, Any]:
    """The baseline of ``task`` with ``strategy`` applied, for ``epochs`` and ``seed``."""
    return {**TASKS[task].baseline, **strategy, "num_epochs": epochs, "seed": seed}


def run_grid(kind: str, strategies: list[str], epochs_list: list[int], seeds: list[int],
             data: dict[str, int] | None) -> None:
    """Every missing fine-tune of the grid, seed-major (all strategies of seed 0 first)."""
    task, grid = GRIDS[kind]
    for seed in seeds:
        for epochs in epochs_list:
            for name in strategies:
                fit_cached(task, hparams(task, grid[name], epochs, seed), data=data)


def scores(kind: str, name: str, epochs: int, seeds: list[int],
           data: dict[str, int] | None) -> list[float]:
    """The recorded final scores of one grid cell over ``seeds`` (those that ran)."""
    task, grid = GRIDS[kind]
    runs = load_runs()
    keys = [run_key(task, hparams(task, grid[name], epochs, seed), data) for seed in seeds]
    return [runs[key]["score"] for key in keys if key in runs]


def table(kind: str, strategies: list[str], epochs: int, seeds: list[int],
          data: dict[str, int] | None) -> tuple[str, dict]:
    """The study-format table of one task and epoch count, and its figures for summary.json."""
    task, _ = GRIDS[kind]
    metric = TASKS[task].metric
    base = scores(kind, "baseline", epochs, seeds, data)
    base_mean = mean_std(base)[0] if base else None
    study = "study CoLA dev MCC (BERT-base)" if kind == "text" else \
        "study dogcat 1/10 dev / test acc (ResNet50)"
    lines = [f"| strategy | {metric} mean ± std (n seeds) | Δ vs baseline | {study} |",
             "|---|---|---|---|"]
    figures = {}
    for name in strategies:
        values = scores(kind, name, epochs, seeds, data)
        delta = (f"{mean_std(values)[0] - base_mean:+.4f}" if values and base_mean is not None
                 and name != "baseline" else "—")
        reference = (STUDY_TEXT.get(name, "—") if kind == "text"
                     else STUDY_IMAGE.get((name, epochs), "—"))
        lines.append(f"| {name} | {fmt(values)} | {delta} | {reference} |")
        if values:
            mean, std = mean_std(values)
            figures[name] = {"mean": round(mean, 4), "std": round(std, 4), "n": len(values)}
    return "\n".join(lines), figures


def report(kinds: list[str], strategies: dict[str, list[str]], epochs: dict[str, list[int]],
           seeds: list[int], data: dict[str, int] | None) -> None:
    """Write ``results/reproduce_study.md`` and the ``study`` key of summary.json."""
    sections, study = [], {}
    for kind in kinds:
        task, _ = GRIDS[kind]
        for n_epochs in epochs[kind]:
            text, figures = table(kind, strategies[kind], n_epochs, seeds, data)
            sections.append(f"## {task}, {n_epochs} epoch(s)\n\n{text}")
            study[f"{task}_{n_epochs}ep"] = figures
    budget = {"tasks": ", ".join(kinds), "seeds": seeds,
              "strategies": {k: strategies[k] for k in kinds},
              "epochs": {k: epochs[k] for k in kinds},
              "baselines": {GRIDS[k][0]: TASKS[GRIDS[k][0]].baseline for k in kinds},
              "torch threads per run": 2, "runs": "one at a time, `fit` in-process",
              "data": data or "full training sets"}
    body = "\n\n".join(sections) + "\n\n" + NOTES
    write_report("reproduce_study", "PaddleHub ULMFiT study, reproduced", budget, body)
    update_summary("study", {**study, "budget": {"seeds": seeds}})


NOTES = """
## Notes

- Study numbers: PaddleHub `tutorial/strategy_exp.md` (commit 1478fd94). The study used
  BERT-base on CoLA (lr 5e-5, max length 128) and ResNet50 on dogcat 1/10 (2,200 images, total
  batch 80, dev and test); here MiniLM (lr 1e-4, max length 64) and EfficientNet-Lite0 (timm's
  `tf_efficientnet_lite0` with the packaged TensorFlow ImageNet weights) on ants/bees
  (245 training images, batch 16, scored on the 153 `val` images). Compare the
  *direction* of each strategy's effect, not the absolute numbers.
- `stlr_0.01` with 1 epoch on ants/bees has T = 16 steps, cut = ⌊16·0.01⌋ = 0: the case where
  PaddleHub divided by zero and reported the untuned model. Here it is a pure linear decay from
  the peak rate (design.md), so the run is fine-tuned like the others.
- `frz_blocks` with 1 epoch trains the head only (epoch 0 unfreezes no body block), as in the
  study.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["text", "image", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument("--strategies", nargs="+", help="subset of strategy names")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3],
                        help="image epoch counts (default 1 3)")
    parser.add_argument("--text-epochs", type=int, nargs="+", default=[3])
    parser.add_argument("--train-samples", type=int,
                        help="subsample train and eval (smoke runs only)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the tables from runs.jsonl, train nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kinds = ["text", "image"] if args.task == "both" else [args.task]
    seeds = first_seeds(args.seeds)
    strategies = {kind: [s for s in GRIDS[kind][1] if not args.strategies
                         or s in args.strategies] for kind in kinds}
    epochs = {"text": args.text_epochs, "image": args.epochs}
    data = subset(args.train_samples)
    if not args.report_only:
        for kind in kinds:
            run_grid(kind, strategies[kind], epochs[kind], seeds, data)
    report(kinds, strategies, epochs, seeds, data)


if __name__ == "__main__":
    main()
