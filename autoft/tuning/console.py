"""What a search prints while it runs: one line per trial event, for a person to read.

Ray's own progress tables (a boxed config, a status table per report) stay quiet unless
``--verbose``; this callback says, per trial, when it started (with its hyperparameters), each
epoch's score, and how it ended: completed, pruned (stopped early by the scheduler) or failed
(with the error's last line), with its best epoch where that was not its last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TextIO

from ray.tune import Callback

from autoft.core.metrics import goodness
from autoft.core.trials import trial_status
from autoft.tracking.callback import result_epoch, trial_error
from autoft.tuning.retries import marked_failure
from trainables.api import split_trial_config


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_hparams(hparams: Mapping[str, Any]) -> str:
    """``name=value`` pairs, floats to 4 significant digits.

    >>> describe_hparams({"learning_rate": 0.000123456, "lr_schedule": "stlr"})
    'learning_rate=0.0001235 lr_schedule=stlr'
    """
    return " ".join(f"{name}={_value(value)}" for name, value in hparams.items())


class ConsoleCallback(Callback):
    """Prints trial events as single lines on ``stream`` (standard output by default).

    Args:
        metric: the search metric as reported (``eval_<metric>``).
        num_epochs: epochs of a full trial: one that ends with fewer was pruned.
        first_points: what each of the search's first trials is, by trial index (``warm
            start: baseline``, ...): said when it starts.
    """

    def __init__(self, metric: str, num_epochs: int, stream: TextIO | None = None,
                 first_points: Mapping[int, str] | None = None) -> None:
        self.metric = metric
        self.num_epochs = num_epochs
        self.stream = stream
        self.first_points = dict(first_points or {})
        #: Each trial's best epoch so far and its score.
        self.best: dict[str, tuple[int, float]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}  # Ray pickles callbacks with the experiment

    def _best(self) -> dict[str, tuple[int, float]]:
        return self.__dict__.setdefault("best", {})  # absent from a callback pickled before it

    def _say(self, trial: Any, text: str) -> None:
        print(f"{trial} {text}", file=self.stream, flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # The retry of a lasting failure is not a start: it fails at once, with the error said next.
        if marked_failure(trial.config) is not None:
            return
        sampled, context = split_trial_config(trial.config)
        seed = "" if context is None else f" seed={context.seed}"
        first = getattr(self, "first_points", {}).get(context.index if context else -1)
        self._say(trial, f"started{f' ({first})' if first else ''}: "
                         f"{describe_hparams(sampled)}{seed}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        shown = {key: result[key] for key in (self.metric, "train_loss") if key in result}
        epoch = result_epoch(result)
        score = result.get(self.metric)
        best = self._best().get(trial.trial_id)
        if isinstance(score, int | float) and math.isfinite(score) and (
                best is None or goodness(self.metric, score) >= goodness(self.metric, best[1])):
            self._best()[trial.trial_id] = (epoch, float(score))
        self._say(trial, f"epoch {epoch}: {describe_hparams(shown)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        status = trial_status(failed=False, ended=True, epochs=epochs,
                              num_epochs=int(trial.config.get("num_epochs", self.num_epochs)))
        score = (trial.last_result or {}).get(self.metric)
        ended = f"after {epochs} epoch(s)" if status == "pruned" else ""
        best = self._best().get(trial.trial_id)
        peak = (f" (best {_value(best[1])} at epoch {best[0]})"
                if best is not None and best[0] != epochs - 1 else "")
        self._say(trial, f"{status}{' ' + ended if ended else ''}: "
                         f"{self.metric}={_value(score)}{peak}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(trial, f"failed: {trial_error(trial)}")
