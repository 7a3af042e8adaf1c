"""The metrics a trial may be judged by, each with its direction, and the tasks they belong to.

This is the one place that says whether a metric is better higher or lower: the searchers and
schedulers (``mode``), the tie-breaking, confirmation, export, the console and MLflow's parent
run all ask :func:`mode` or :func:`goodness` rather than assuming "higher is better".

Example::

    mode("rmse")                          # "min"
    goodness("rmse", 0.7)                 # -0.7: sorts with the better (lower) score last
    default_metric("regression")          # "pearson"
    scored_epoch([0.5, 0.8, 0.7], "mcc")  # 1: a trial is judged by its best epoch
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Direction = Literal["max", "min"]
#: Which epoch of a trial is its score: its best (``search.select: best``) or its last.
Select = Literal["best", "last"]
TaskName = Literal["classification", "regression", "multi_label", "token_classification"]

#: What each task's trainables report, the default metric (its first) included.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "mcc"),
    "regression": ("pearson", "spearman", "rmse"),
    "multi_label": ("micro_f1", "macro_f1", "map"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall"),
}

#: Every metric name, with its direction (the evaluation loss is reported by every task).
METRICS: dict[str, Direction] = {
    **{name: "max" for names in TASK_METRICS.values() for name in names},
    "rmse": "min",
    "loss": "min",
}


def mode(metric: str) -> Direction:
    """``max`` or ``min``: how Ray and Optuna must compare ``metric`` (with or without its
    ``eval_`` prefix)."""
    return METRICS[metric.removeprefix("eval_")]


def goodness(metric: str, score: float) -> float:
    """``score`` with the sign that makes higher better, whatever ``metric``'s direction."""
    return score if mode(metric) == "max" else -score


def default_metric(task: str) -> str:
    """The metric a search of ``task`` is judged by when the config names none."""
    return TASK_METRICS[task][0]


def scored_epoch(scores: Sequence[float | None], metric: str,
                 select: Select = "best") -> int | None:
    """The 0-based epoch whose score is the trial's: the best finite one by ``metric``'s
    direction (the latest among equals: the one whose checkpoint Ray keeps), or the last finite
    one; None when none is finite.

    >>> scored_epoch([1.2, 0.9, 1.0], "rmse")
    1
    >>> scored_epoch([0.5, 0.8, 0.8], "mcc")
    2
    >>> scored_epoch([0.5, 0.8, 0.7], "mcc", "last")
    2
    >>> scored_epoch([float("nan")], "mcc") is None
    True
    """
    finite = [(epoch, score) for epoch, score in enumerate(scores)
              if score is not None and math.isfinite(score)]
    if not finite:
        return None
    if select == "last":
        return finite[-1][0]
    return max(finite, key=lambda item: (goodness(metric, item[1]), item[0]))[0]
