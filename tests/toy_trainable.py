"""A user trainable (``trainable: "tests.toy_trainable:quadratic"``) for fast driver tests.

Its score rises with the epochs toward 1 - (learning_rate·1e3 - 0.5)², so searchers and
schedulers have something to find, in milliseconds instead of a fine-tune's seconds.
"""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainables.api import Reporter, TrialFailed


def quadratic(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """Report ``num_epochs`` epochs of a score that peaks at learning_rate = 5e-4."""
    saved = reporter.restore()
    first = 0 if saved is None else saved["epoch"] + 1
    target = 1 - (hparams["learning_rate"] * 1e3 - 0.5) ** 2
    metrics: dict[str, float] = {}
    for epoch in range(first, int(hparams.get("num_epochs", 3))):
        progress = (epoch + 1) / hparams["num_epochs"]
        metrics = {"epoch": epoch, "train_loss": 1 - progress * target,
                   "eval_accuracy": progress * target, "lr": hparams["learning_rate"]}
        reporter.report(metrics, {"epoch": epoch})
    return metrics


def peaks_at(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """Report 3 epochs of a score that peaks at epoch ``peak``: 1 - 0.2·|epoch - peak| -
    0.05·peak (peak 0: 1.0, 0.8, 0.6; peak 2: 0.5, 0.7, 0.9)."""
    peak = int(hparams["peak"])
    metrics: dict[str, float] = {}
    for epoch in range(int(hparams.get("num_epochs", 3))):
        metrics = {"epoch": epoch, "eval_accuracy": 1 - 0.2 * abs(epoch - peak) - 0.05 * peak}
        reporter.report(metrics, {"epoch": epoch})
    return metrics


def slow_quadratic(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """:func:`quadratic` at ``seconds_per_epoch`` (default 1 s) an epoch: time to interrupt."""
    seconds = float(hparams.get("seconds_per_epoch", 1.0))

    class Slow:
        trial = reporter.trial

        def restore(self) -> dict[str, Any] | None:
            return reporter.restore()

        def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
            time.sleep(seconds)
            reporter.report(metrics, state)

    return quadratic(hparams, Slow())


def always_fails(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """Fails as a NaN loss does, every time; appends a line to ``calls_file`` per call."""
    with open(hparams["calls_file"], "a", encoding="utf-8") as calls:
        calls.write(f"{reporter.trial.index}\n")
    raise TrialFailed("the training loss is NaN at epoch 0")


def noisy_quadratic(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """:func:`quadratic` plus a seed's luck (up to ±0.1), as a real fine-tune's seed spread."""
    luck = 0.1 * math.sin(12.9898 * (hparams["seed"] + 1))

    class Lucky:
        trial = reporter.trial

        def restore(self) -> dict[str, Any] | None:
            return reporter.restore()

        def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
            reporter.report({**metrics, "eval_accuracy": metrics["eval_accuracy"] + luck}, state)

    final = quadratic(hparams, Lucky())
    return {**final, "eval_accuracy": final["eval_accuracy"] + luck}


def out_of_memory_in_trial_one(hparams: dict[str, Any], reporter: Reporter) -> dict[str, float]:
    """:func:`quadratic`, except that trial 1 runs out of GPU memory in its first epoch, as a
    packed trial whose neighbours took the memory would."""
    if reporter.trial.index == 1:
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return quadratic(hparams, reporter)


class QuadraticParams(BaseModel):
    """The hyperparameters :func:`typed_quadratic` declares (unknown names refused)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(gt=0)
    num_epochs: int = Field(default=3, ge=1)
    seed: int = 0
    momentum: float = Field(default=0.9, ge=0, lt=1)


def typed_quadratic(hparams: QuadraticParams, reporter: Reporter) -> dict[str, float]:
    """:func:`quadratic` with declared hyperparameters: it receives them validated, as a
    :class:`QuadraticParams` (a plain mapping would have no attributes)."""
    assert isinstance(hparams, QuadraticParams), type(hparams)
    return quadratic(hparams.model_dump(), reporter)
