"""Which trial failures Ray may retry: a lost node or a killed worker, yes; a failure that
would only happen again, no.

Ray Tune retries every failed trial up to ``search.max_failures`` times and has no per-error
policy. A :class:`~trainables.api.TrialFailed` (NaN loss, a crashed script) or an
:class:`~autoft.core.errors.InputError` (bad data or hyperparameters) fails the same way on
every try, so :class:`NoRetryForLastingFailures` marks such a trial when Ray schedules its
retry (Ray's callbacks hear of a failure only once the retry is decided): the retry then fails
at once with the same error (:func:`fail_if_marked`), before any training, and no further retry
follows it, so the trial ends failed after one short attempt instead of ``max_failures`` (each
a new trial process: 2 s apiece on an idle 2-core machine, tens of seconds on a busy one).
"""

from __future__ import annotations

import re
from typing import Any

from ray.tune import Callback

from autoft.core.trials import error_file_line
from trainables.api import TRIAL_KEY, TrialFailed

#: Errors a retry cannot fix, as they end a trial's error text (``module.Class: message``).
LASTING = re.compile(r"\b(TrialFailed|InputError)\b")
MARK = "lasting_failure"


def lasting(error: str | None) -> bool:
    """Whether ``error`` (an error's last line) is a failure a retry cannot fix.

    >>> lasting("trainables.api.TrialFailed: the loss is NaN")
    True
    >>> lasting("ray.exceptions.ActorDiedError: node lost")
    False
    """
    return error is not None and LASTING.search(error) is not None


class NoRetryForLastingFailures(Callback):
    """Marks a trial whose failure a retry cannot fix, so that its retry fails at once."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = error_file_line(trial.error_file)
        if lasting(error) and TRIAL_KEY in trial.config:
            trial.config[TRIAL_KEY] = {**trial.config[TRIAL_KEY], MARK: error}
            # Ray retries while the failures so far are at most the trial's max_failures.
            trial.max_failures = trial.run_metadata.num_failures


def marked_failure(config_of_trial: dict[str, Any]) -> str | None:
    """The lasting failure this start of a trial retries (the start fails at once), or None."""
    return config_of_trial.get(TRIAL_KEY, {}).get(MARK)


def fail_if_marked(config_of_trial: dict[str, Any]) -> None:
    """Raise the lasting failure a trial already had (on the worker, before training)."""
    error = marked_failure(config_of_trial)
    if error is not None:
        raise TrialFailed(f"not retried: {error}")
