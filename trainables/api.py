"""The contract between the search driver (or ``autoft train``) and a trainable.

A trainable is a module (or object) with two functions:

``prepare(config) -> prepared``
    Runs once per search, on the driver: reads, checks and pre-processes the dataset (tokenised
    text, image file lists). The result must be picklable: the driver puts it into Ray's object
    store once and every trial reads it from there.

``fit(config, prepared, hparams, reporter) -> dict[str, float]``
    Runs one fine-tune with the trial's hyperparameters (``fixed`` merged with the sampled ones),
    reports once per epoch through ``reporter`` and returns the final metrics.

The built-in trainables also save a trained model (``save_model``) in its library's own format
and run a saved one on new data (``predict(config, model_dir, path) ->`` :class:`Predictions`).

The same ``fit`` runs under Ray Tune (a :class:`Reporter` that calls ``tune.report`` with a
checkpoint) and under ``autoft train`` (a reporter that logs to MLflow and the console).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from autoft.core.config import Config

#: The key of a trial's Ray config that holds its :class:`TrialContext`, beside the sampled
#: hyperparameters.
TRIAL_KEY = "autoft_trial"


@dataclass(frozen=True)
class TrialContext:
    """Who a trial is: its 0-based index in the search and the seed it trains with.

    The driver numbers trials as the searcher proposes them and puts the context into each
    trial's config under :data:`TRIAL_KEY`; nothing reads it back from a trial's name.
    """

    index: int
    seed: int

    def as_config(self) -> dict[str, int]:
        """The context as it travels in a trial's config."""
        return {"index": self.index, "seed": self.seed}


def split_trial_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], TrialContext | None]:
    """A trial's Ray config as its sampled hyperparameters and its context (None if it has none).

    >>> split_trial_config({"learning_rate": 0.1, TRIAL_KEY: {"index": 3, "seed": 7}})
    ({'learning_rate': 0.1}, TrialContext(index=3, seed=7))
    """
    sampled = {key: value for key, value in config.items() if key != TRIAL_KEY}
    context = config.get(TRIAL_KEY)
    return sampled, None if context is None else TrialContext(int(context["index"]),
                                                              int(context["seed"]))


class Reporter(Protocol):
    """Where a trainable sends its per-epoch metrics and checkpoint state."""

    #: The trial being run (``autoft train``: index 0 and the config's seed).
    trial: TrialContext

    def restore(self) -> dict[str, Any] | None:
        """The state saved with the last reported epoch, to resume from, or None."""

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        """Report one epoch: ``train_loss``, ``eval_<metric>``, ``lr``, ``epoch``, and the
        state (``torch.save``-able) to resume after this epoch."""


@dataclass(frozen=True)
class Predictions:
    """A saved model's predictions on a dataset (``autoft predict``): ``rows``, computed as they
    are read, has one mapping per example in the file's order (its input, then the task's
    outputs: ``label`` and ``probabilities``, ``value``, ``labels``, or ``tags``); ``total``
    counts them up front, for a progress bar."""

    total: int
    rows: Iterator[dict[str, Any]]


class Trainable(Protocol):
    """What :func:`trainables.load_trainable` returns."""

    def prepare(self, config: Config) -> Any: ...

    def fit(self, config: Config, prepared: Any, hparams: dict[str, Any],
            reporter: Reporter) -> dict[str, float]: ...


class TrialFailed(RuntimeError):
    """A trial that cannot go on (NaN loss, a crashed script): reported as failed, with reason."""
