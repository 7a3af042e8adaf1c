"""``autoft suggest``: a search config for a dataset's quadrant, each choice explained.

The PaddleHub study sorts fine-tuning tasks on two axes, the dataset's size and its similarity
to the pretraining data, and the right strategy differs by quadrant. :func:`quadrant` places a
measured dataset (:class:`trainables.profile.probe.Profile`); :func:`suggest` narrows the
generic ULMFiT space (``search_spaces/ulmfit_*.yaml``) to what pays off there, picks the
warm-start points, the epochs, ``max_length`` and the metric, and :func:`render` writes it all
as a YAML config whose comments say why. The thresholds:

* **small** below :data:`SMALL_EXAMPLES` training examples (ants/bees: 245; SST-2's 1000-sentence
  subset), **large** from there (CoLA: 8551);
* **similar** when the frozen pretrained features recover at least :data:`SIMILAR` of what
  random features miss in the linear probe (ants/bees with ImageNet weights: 0.88).

What each quadrant gets follows the study and this project's benchmarks
(benchmarks/results/README.md): gradual unfreezing helped small, similar image data (+0.02 on
ants/bees at 3 epochs); warm-up with decay to 0 beat the baseline on every CoLA seed (+0.037
MCC); every strategy lost at 1 epoch, so epochs stay at 3.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoft.core.space_files import load_space
from autoft.tuning.warm_start import baseline, within
from trainables.profile.probe import Profile

#: Training examples from which a dataset counts as large.
SMALL_EXAMPLES = 5000
#: Probe similarity from which a dataset counts as similar to the pretraining.
SIMILAR = 0.5
#: Minority over majority class count below which the metric is MCC (two classes) or macro F1.
IMBALANCED = 0.5
#: Epochs per full trial: every strategy lost to the baseline at 1 epoch in the study.
EPOCHS = 3
#: Characters per comment line of the written config.
WIDTH = 99
#: ``max_length`` is the 99th percentile of the token lengths rounded up to a multiple of this.
LENGTH_STEP = 16


@dataclass(frozen=True)
class Quadrant:
    """Where a dataset sits on the study's two axes."""

    small: bool
    similar: bool

    def __str__(self) -> str:
        return (f"{'small' if self.small else 'large'}, "
                f"{'similar' if self.similar else 'dissimilar'}")


def quadrant(profile: Profile) -> Quadrant:
    """The quadrant of a measured dataset."""
    return Quadrant(small=profile.train_examples < SMALL_EXAMPLES,
                    similar=profile.probe.similarity >= SIMILAR)


@dataclass(frozen=True)
class Choice:
    """One value of the config and why it was chosen."""

    value: Any
    why: str


@dataclass(frozen=True)
class Suggestion:
    """The suggested search: space, fixed values, metric and warm-start points, each explained."""

    quadrant: Quadrant
    why: str
    metric: Choice
    space: dict[str, Choice]
    fixed: dict[str, Choice]
    warm_start: list[dict[str, Any]]
    warm_start_why: list[str] = field(default_factory=list)


#: Per trainable: the learning-rate range of the generic space and the batch sizes.
LEARNING_RATES = {"text": (1.0e-5, 2.0e-4), "image": (3.0e-5, 1.0e-3)}
BATCH_SIZES = {"text": [16, 32, 64], "image": [8, 16, 32]}
#: Batch sizes for small datasets: more optimizer steps from few examples.
SMALL_BATCHES = [8, 16]


def _float(low: float, high: float, *, log: bool = False, when: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "float", "low": float(f"{low:.2g}"),
                            "high": float(f"{high:.2g}")}
    if log:
        spec["log"] = True
    if when:
        spec["when"] = when
    return spec


def _int(low: int, high: int) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high}


def _choices(values: list[Any]) -> dict[str, Any]:
    return {"type": "categorical", "choices": values}


CUT_FRAC = Choice(_float(0.05, 0.2, when={"lr_schedule": "stlr"}),
                  "STLR: a short rise over 5-20% of the steps, then a long decay")


def _warmup(why: str) -> Choice:
    """Warm-up for 5-20% of the steps when the schedule is ``warmup_linear``."""
    return Choice(_float(0.05, 0.2, when={"lr_schedule": "warmup_linear"}), why)


def _space(trainable: str, where: Quadrant) -> dict[str, Choice]:
    """The generic ULMFiT space narrowed to what pays off in the quadrant."""
    low, high = LEARNING_RATES[trainable]
    batches = BATCH_SIZES[trainable]
    if where.similar and where.small:
        why = ("the pretrained features already separate the classes and there are few examples "
               "to learn from: keep the lower layers close to the pretraining")
        return {
            "lr_schedule": Choice(_choices(["constant", "stlr"]), f"{why}; STLR (ULMFiT's "
                                  "slanted triangular rate) or the baseline's constant rate"),
            "cut_frac": CUT_FRAC,
            "dis_blocks": Choice(_int(0, 3), "lower blocks at smaller rates (2.6x per block)"),
            "frz_blocks": Choice(_int(2, 5), "gradual unfreezing: +0.02 on ants/bees at 3 "
                                 "epochs in the study; the bottom blocks may stay frozen"),
            "batch_size": Choice(_choices(SMALL_BATCHES), "small batches: more steps from few "
                                 "examples"),
            "learning_rate": Choice(_float(low, high / 2, log=True),
                                    "the lower half of the generic range: the features need "
                                    "little change"),
        }
    if where.similar:
        return {
            "lr_schedule": Choice(_choices(["constant", "warmup_linear", "stlr"]),
                                  "enough data to train every layer without forgetting; the "
                                  "schedule matters more than freezing"),
            "warmup_proportion": _warmup("a short warm-up protects the pretrained weights from "
                                         "the first, noisy updates"),
            "cut_frac": CUT_FRAC,
            "dis_blocks": Choice(_int(0, 3), "lower blocks at smaller rates (2.6x per block)"),
            "frz_blocks": Choice(_int(0, 2), "little unfreezing: the data can move every layer"),
            "batch_size": Choice(_choices(batches), "the generic choices"),
            "learning_rate": Choice(_float(low, high, log=True), "the generic range"),
        }
    if where.small:
        return {
            "lr_schedule": Choice(_choices(["constant", "warmup_linear", "stlr"]),
                                  "the features must change but the examples are few: "
                                  "schedules that start gently"),
            "warmup_proportion": _warmup("a short warm-up before the decay"),
            "cut_frac": CUT_FRAC,
            "dis_blocks": Choice(_int(0, 4), "discriminative rates: the top blocks, furthest "
                                 "from the pretraining's task, may change most"),
            "frz_blocks": Choice(_int(0, 2), "little unfreezing: frozen layers cannot adapt"),
            "batch_size": Choice(_choices(SMALL_BATCHES), "small batches: more steps from few "
                                 "examples"),
            "learning_rate": Choice(_float(low * 3, high * 1.5, log=True),
                                    "the upper part of the generic range: the features must "
                                    "move away from the pretraining"),
        }
    return {
        "lr_schedule": Choice(_choices(["constant", "warmup_linear", "stlr"]),
                              "the features must change and the data can change them: "
                              "warm-up 0.1 with decay to 0 beat the baseline on every CoLA "
                              "seed (+0.037 MCC)"),
        "warmup_proportion": _warmup("around the study's 0.1"),
        "cut_frac": CUT_FRAC,
        "dis_blocks": Choice(_int(0, 2), "at most mildly smaller rates below: every layer "
                             "needs to move"),
        "batch_size": Choice(_choices(batches[:2]), "smaller batches: more updates per epoch"),
        "learning_rate": Choice(_float(low * 3, high * 1.5, log=True),
                                "the upper part of the generic range: the features must move "
                                "away from the pretraining"),
    }


def _fixed(profile: Profile, where: Quadrant) -> dict[str, Choice]:
    fixed = {"num_epochs": Choice(EPOCHS, "every strategy lost to the baseline at 1 epoch in "
                                  "the study; 3 gives ASHA rungs at 1 and 2")}
    if not where.similar and not where.small:
        fixed["frz_blocks"] = Choice(0, "no gradual unfreezing: frozen layers cannot move "
                                     "towards a task unlike the pretraining")
    if profile.trainable == "text":
        p99 = profile.lengths["p99"]
        length = min(profile.model_limit, -(-p99 // LENGTH_STEP) * LENGTH_STEP)
        fixed["max_length"] = Choice(length, f"99% of the training examples have at most "
                                     f"{p99} tokens (longest {profile.lengths['max']}, model "
                                     f"limit {profile.model_limit}): a batch is padded to its "
                                     "own longest example, so a higher limit costs time only "
                                     "in the few batches of the longest; the longest 1% are cut")
    return fixed


#: The metric of each task beyond classification, and why.
TASK_METRIC = {
    "regression": Choice("pearson", "the correlation of predicted and true scores (STS-B's "
                         "metric); eval_spearman and eval_rmse are reported beside it"),
    "multi_label": Choice("micro_f1", "micro-F1 weighs every label decision alike, so the "
                          "frequent labels count as often as they occur; eval_macro_f1 and "
                          "eval_map are reported beside it"),
    "token_classification": Choice("entity_f1", "entity-level F1 (seqeval): an entity counts "
                                   "when its type and span are both right"),
}
#: Multi-label: the threshold's range, and why it is searched.
THRESHOLD = Choice(_float(0.1, 0.6), "the probability from which a label is predicted: with "
                   "few labels per example, 0.5 predicts too few after a short fine-tune")


def _metric(profile: Profile) -> Choice:
    if profile.task in TASK_METRIC:
        return TASK_METRIC[profile.task]
    share = profile.minority_share
    if share >= IMBALANCED:
        return Choice("accuracy", f"classes balanced (smallest/largest {share:.2f})")
    if len(profile.classes) == 2:
        return Choice("mcc", f"imbalanced (smallest/largest {share:.2f}): accuracy would reward "
                      "predicting the majority class")
    return Choice("f1", f"imbalanced (smallest/largest {share:.2f}): macro F1 weighs every "
                  "class alike")


def _points(trainable: str, where: Quadrant, space: dict[str, Any], fixed: dict[str, Any]
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """The baseline, then the quadrant's best-known strategy, each kept within the space."""
    loaded = load_space(space)
    untuned = baseline(trainable)
    if where.similar and where.small:
        known = {"lr_schedule": "constant", "frz_blocks": 3}
        why = "gradual unfreezing of 3 blocks (the study's best on ants/bees)"
    elif where.similar:
        known = {"lr_schedule": "stlr", "cut_frac": 0.1}
        why = "STLR with cut_frac 0.1 (the study's second best on CoLA)"
    else:
        known = {"lr_schedule": "warmup_linear", "warmup_proportion": 0.1}
        why = "warm-up 0.1 with decay to 0 (the study's best on CoLA)"
    points, reasons = [], []
    for point, reason in ((untuned, "the baseline: constant rate, no strategy"),
                          ({**untuned, **known}, why)):
        kept = within(loaded, {k: v for k, v in point.items() if k not in fixed})
        if kept and kept not in points:
            points.append(kept)
            reasons.append(reason)
    return points, reasons


def suggest(profile: Profile) -> Suggestion:
    """The search config's choices for a measured dataset."""
    where = quadrant(profile)
    space = _space(profile.trainable, where)
    if profile.task == "multi_label":
        space["threshold"] = THRESHOLD
    fixed = _fixed(profile, where)
    points, reasons = _points(profile.trainable, where, {k: c.value for k, c in space.items()},
                              {k: c.value for k, c in fixed.items()})
    size = (f"{profile.train_examples} training examples "
            f"({'<' if where.small else '>='} {SMALL_EXAMPLES})")
    similarity = (f"probe similarity {profile.probe.similarity:.2f} "
                  f"({'>=' if where.similar else '<'} {SIMILAR})")
    return Suggestion(quadrant=where, why=f"{size}; {similarity}", metric=_metric(profile),
                      space=space, fixed=fixed, warm_start=points, warm_start_why=reasons)


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (a scalar without the document end marker)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.removesuffix("\n...\n").strip()


def _path(value: str, base: Path) -> str:
    """A path ``value`` relative to the config's folder; a package path (``pkg:``) or a name
    that is no path (a timm model) stays as written."""
    if value.startswith("pkg:") or not Path(value).exists():
        return value
    path, base = Path(value).resolve(), base.resolve()
    shared = Path(os.path.commonpath([path, base]))
    return str(path) if shared == Path(shared.anchor) else os.path.relpath(path, base)


def _comment(text: str, indent: str = "") -> list[str]:
    """``text`` as comment lines of at most :data:`WIDTH` characters."""
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}#   ") or [f"{indent}#"]


#: What the similarity probe's score is, by task (:data:`trainables.profile.probe.PROBE_SCORES`).
PROBE_SCORE_NAMES = {"classification": "balanced accuracy", "regression": "R²",
                     "multi_label": "micro-F1", "token_classification": "balanced accuracy"}


def _labels(profile: Profile) -> list[str]:
    """The header's lines on the labels, as fits the task."""
    summary = ", ".join(f"{k} {v:g}" for k, v in profile.label_summary.items())
    counts = ", ".join(f"{c} {n}" for c, n in zip(profile.classes, profile.class_counts,
                                                   strict=True))
    if profile.task == "regression":
        return [f"  scores             {summary}"]
    what = {"multi_label": "labels", "token_classification": "tags"}.get(profile.task,
                                                                          "classes")
    lines = [f"  {what:<18} {len(profile.classes)}: {counts} "
             f"(smallest/largest {profile.minority_share:.2f})"]
    return lines + ([f"  {'of the labels':<18} {summary}"] if summary else [])


def render(profile: Profile, suggestion: Suggestion, *, name: str, model: str,
           data: dict[str, Any], base: Path, pretrained_file: str | None = None) -> str:
    """The suggested search config as YAML, relative paths against ``base`` (the folder the
    config is written to), every choice with its reason in a comment."""
    unit = "tokens" if profile.trainable == "text" else "pixels (shorter side)"
    lengths = ", ".join(f"{k} {v}" for k, v in profile.lengths.items())
    probe = profile.probe
    header = "\n".join(line for text in [
        f"Written by autoft suggest for {profile.trainable} data and model {model}.",
        "",
        "Measured:",
        f"  training examples  {profile.train_examples}; evaluation {profile.eval_examples} "
        f"({profile.eval_source})",
        f"  task               {profile.task}: {profile.task_why or 'given'}",
        *_labels(profile),
        f"  {unit:<18} {lengths} (model: {profile.model_limit})",
        f"  similarity probe   a linear model on frozen features ({probe.train_examples} "
        f"{'words' if profile.task == 'token_classification' else 'train'}, "
        f"{probe.eval_examples} eval), {PROBE_SCORE_NAMES[profile.task]}:",
        f"                     pretrained {probe.pretrained:.3f}, random init {probe.random:.3f}"
        f" -> similarity {probe.similarity:.2f}",
        f"Quadrant: {suggestion.quadrant}: {suggestion.why}.",
    ] for line in (_comment(text) if text.strip() and not text.startswith(" ")
                   else [f"# {text}".rstrip()]))
    data_out = {k: (_path(v, base) if k in ("train", "eval") else v) for k, v in data.items()
                if v is not None}
    lines = [header, f"name: {name}", f"trainable: {profile.trainable}",
             f"task: {profile.task}", f"model: {_flow(_path(model, base))}"]
    if pretrained_file is not None:
        lines.append(f"pretrained_file: {_flow(_path(pretrained_file, base))}")
    lines.append("data:")
    lines += [f"  {key}: {_flow(value)}" for key, value in data_out.items()]
    lines += [*_comment(suggestion.metric.why), f"metric: {suggestion.metric.value}"]
    lines.append("space:")
    for key, choice in suggestion.space.items():
        lines += [*_comment(choice.why, "  "), f"  {key}: {_flow(choice.value)}"]
    lines.append("fixed:")
    for key, choice in suggestion.fixed.items():
        lines += [*_comment(choice.why, "  "), f"  {key}: {_flow(choice.value)}"]
    lines += ["search:", "  algorithm: tpe", "  scheduler: asha", "  num_samples: 16",
              "  max_concurrent: 2", "  seed: 0",
              "  # The first trials: the sampler learns from them like from any other trial.",
              "  warm_start:"]
    for point, why in zip(suggestion.warm_start, suggestion.warm_start_why, strict=True):
        lines += [*_comment(why, "    "), f"    - {_flow(point)}"]
    lines += ["  # Retrain the best trials with new seeds; export the best mean.",
              "  confirm: auto", "resources: {cpu: 1, gpu: 0}", "storage: ./autoft_results"]
    return "\n".join(lines) + "\n"
