"""Warm starts: a search's first trials are the baseline and what the study found good.

The baseline (a constant rate, no strategy, at the study's rate and batch size) makes sure the
search holds the untuned fine-tune it is judged against (benchmarks/tasks.py's baseline): on 7
December the baseline at the trainable's default rate (5e-5) was the best trial of the STS-B and
CoNLL-2003 searches, and retrained below the study's baseline at 1e-4 (CoNLL: 0.719 against 0.796
entity F1), which the search never tried. The study's points (benchmarks/results/README.md, "Study
grid") start the sampler where fine-tuning strategies paid off for the kind of task, each whole,
with the rate and batch size it was measured at: on CoLA (MiniLM, lr 1e-4, batch 32, 3 epochs)
warm-up 0.1 with decay to 0 beat the baseline on every seed (+0.037 MCC) and STLR 0.1 gained
+0.018; on ants/bees (EfficientNet-Lite0, lr 1e-4, batch 16, 3 epochs) gradual unfreezing of 3
blocks gained +0.020 (and every strategy lost at 1 epoch). A strategy measured at one rate says
little about it at another: in the 30 November CoLA search the warm-up point took the default rate
(5e-5) and a sampled batch size (64), and retrained at 0.201 MCC against the study's 0.235. They
reach the sampler as Optuna's enqueued trials (``points_to_evaluate``), so it learns from them like
from any other trial.

Where the space searches the backbone (``model``), the study's points train the config's model
and the baseline also trains on each other choice, right after it: the backbone is the largest
lever, and a sampler left to find the others by itself tried EfficientNet-Lite2 once and Lite1
three times in the 16 ants/bees trials of benchmarks/model_choice.py (7 December), 12 going to
Lite0.

Each point keeps only what the space can hold: a parameter the space does not search, or a
value outside its range, is left to the sampler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoft.core.config import Config
from autoft.core.space import SearchSpace
from trainables.backbones import MODEL, model_choices
from trainables.registry import typed_hparams

#: No strategy: the rate stays constant and every layer trains from the start.
BASELINE: dict[str, Any] = {"lr_schedule": "constant", "dis_blocks": 0, "frz_blocks": 0,
                            "l2sp_alpha": 0.0}


#: The settings the study's strategies were measured with, per trainable.
STUDY_SETTINGS: dict[str, dict[str, Any]] = {"text": {"learning_rate": 1e-4, "batch_size": 32},
                                             "image": {"learning_rate": 1e-4, "batch_size": 16}}


def baseline(trainable: str) -> dict[str, Any]:
    """The study's baseline for ``trainable``: no strategy, at the settings of
    :data:`STUDY_SETTINGS`.

    >>> baseline("text")["learning_rate"], baseline("text")["lr_schedule"]
    (0.0001, 'constant')
    """
    return {**BASELINE, **STUDY_SETTINGS[trainable]}


def study_points(trainable: str, num_epochs: int) -> list[tuple[str, dict[str, Any]]]:
    """What the study found better than the baseline for ``trainable``'s kind of task, with
    the settings it was measured at (:data:`STUDY_SETTINGS`), each with its name."""
    if trainable == "text":
        strategies = {"study: warm-up 0.1": {"lr_schedule": "warmup_linear",
                                             "warmup_proportion": 0.1, "end_lr_ratio": 0.0},
                      "study: STLR 0.1": {"lr_schedule": "stlr", "cut_frac": 0.1}}
    elif trainable == "image" and num_epochs >= 3:
        strategies = {"study: gradual unfreezing 3": {"frz_blocks": 3}}
    else:
        return []
    return [(name, {**baseline(trainable), **strategy}) for name, strategy in strategies.items()]


def within(space: SearchSpace, point: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``point`` the space searches and can hold, conditions respected.

    >>> from autoft.core.space_files import load_space
    >>> space = load_space({"lr_schedule": {"type": "categorical", "choices": ["constant"]},
    ...                     "dis_blocks": {"type": "int", "low": 1, "high": 3}})
    >>> within(space, {"lr_schedule": "constant", "dis_blocks": 0, "frz_blocks": 0})
    {'lr_schedule': 'constant'}
    """
    params = {param.name: param for param in space.params}
    held = {name: value for name, value in point.items()
            if name in params and params[name].problem(value) is None}
    return {name: value for name, value in held.items() if params[name].is_active(held)}


def labelled_warm_start(config: Config,
                        space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """The first trials ``search.warm_start`` asks for, each with its name (the console and
    MLflow mark the trials so): ``study`` (``baseline``, the baseline on each other backbone
    the space searches, then the study's points, for the built-in fine-tunes), ``none``, or the
    listed points as given (``warm_start[i]``)."""
    setting = config.search.warm_start
    if isinstance(setting, list):
        return [(f"warm_start[{i}]", dict(point)) for i, point in enumerate(setting)]
    if setting == "none" or not typed_hparams(config):
        return []
    start = baseline(config.trainable)
    other_models = [m for m in model_choices(config, space) if m != str(config.model)]
    points = [("baseline", {**start, MODEL: config.model}),
              *((f"baseline on {model}", {**start, MODEL: model}) for model in other_models),
              *((name, {**point, MODEL: config.model})
                for name, point in study_points(config.trainable, config.num_epochs))]
    labelled: list[tuple[str, dict[str, Any]]] = []
    for name, point in points:
        kept = within(space, point)
        if kept and kept not in (p for _, p in labelled):
            labelled.append((name, kept))
    return labelled


def warm_start_points(config: Config, space: SearchSpace) -> list[dict[str, Any]]:
    """The points of :func:`labelled_warm_start`."""
    return [point for _, point in labelled_warm_start(config, space)]
