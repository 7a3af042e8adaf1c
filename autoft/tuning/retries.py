"""Which trial failures Ray may retry: a lost node or a killed worker, yes; a failure that
would only happen again, no.

Ray Tune retries every failed trial up to ``search.max_failures`` times and has no per-error
policy. A :class:`~trainables.api.TrialFailed` (NaN loss, a crashed script) or an
:class:`~autoft.core.errors.InputError` (bad data or hyperparameters) fails the same way on
every try, so :class:`NoRetryForLastingFailures` marks such a trial when Ray schedules its
retry: the retry then fails at once with the same error (:func:`fail_if_marked`), before any
training, and the trial ends failed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ray.tune import Callback

from autoft.core.trials import error_line
from trainables.api import TRIAL_KEY, TrialFailed

#: Errors a retry cannot fix, as they end a trial's error text (``module.Class: message``).
LASTING = re.compile(r"\b(TrialFailed|InputError)\b")
MARK = "lasting_failure"


def lasting_failure(error_text: str | None) -> str | None:
    """The error line when the latest failure in ``error_text`` is one a retry cannot fix.

    >>> lasting_failure("Failure # 1\\ntrainables.api.TrialFailed: the loss is NaN")
    'trainables.api.TrialFailed: the loss is NaN'
    >>> lasting_failure("Failure # 1\\nray.exceptions.ActorDiedError: node lost") is None
    True
    """
    line = error_line(error_text)
    return line if line is not None and LASTING.search(line) else None


class NoRetryForLastingFailures(Callback):
    """Marks a trial whose failure a retry cannot fix, so that its retry fails at once."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error_file = trial.error_file
        if error_file is None or not Path(error_file).is_file():
            return
        error = lasting_failure(Path(error_file).read_text(encoding="utf-8", errors="replace"))
        if error is not None and TRIAL_KEY in trial.config:
            trial.config[TRIAL_KEY] = {**trial.config[TRIAL_KEY], MARK: error}


def fail_if_marked(config_of_trial: dict[str, Any]) -> None:
    """Raise the lasting failure a trial already had (on the worker, before training)."""
    error = config_of_trial.get(TRIAL_KEY, {}).get(MARK)
    if error is not None:
        raise TrialFailed(f"not retried: {error}")
