"""The contract between the search driver (or ``autoft train``) and a trainable.

A trainable is a module (or object) with two functions:

``prepare(config) -> prepared``
    Runs once per search, on the driver: reads, checks and pre-processes the dataset (tokenised
    text, image file lists). The result must be picklable: the driver puts it into Ray's object
    store once and every trial reads it from there.

``fit(config, prepared, hparams, reporter) -> dict[str, float]``
    Runs one fine-tune with the trial's hyperparameters (``fixed`` merged with the sampled ones),
    reports once per epoch through ``reporter`` and returns the final metrics.

The same ``fit`` runs under Ray Tune (a :class:`Reporter` that calls ``tune.report`` with a
checkpoint) and under ``autoft train`` (a reporter that logs to MLflow and the console).
"""

from __future__ import annotations

from typing import Any, Protocol

from autoft.config import Config


class Reporter(Protocol):
    """Where a trainable sends its per-epoch metrics and checkpoint state."""

    def restore(self) -> dict[str, Any] | None:
        """The state saved with the last reported epoch, to resume from, or None."""

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        """Report one epoch: ``train_loss``, ``eval_<metric>``, ``lr``, ``epoch``, and the
        state (``torch.save``-able) to resume after this epoch."""


class Trainable(Protocol):
    """What :func:`trainables.load_trainable` returns."""

    def prepare(self, config: Config) -> Any: ...

    def fit(self, config: Config, prepared: Any, hparams: dict[str, Any],
            reporter: Reporter) -> dict[str, float]: ...


class TrialFailed(RuntimeError):
    """A trial that cannot go on (NaN loss, a crashed script): reported as failed, with reason."""
