"""Early stopping that does not decide ties by luck.

Before a text model leaves the majority class every trial scores MCC 0, and on a small eval set
accuracy takes few values: Ray's ASHA and HyperBand then compare equal scores, and ASHA stops a
trial only when it is strictly below the rung's cutoff, so tied trials all go on (CoLA: 14 of
16 trials tied at MCC 0 after epoch 1, none stopped) or are cut in arrival order. These
schedulers rank by the metric and, among equal metrics, by the lower evaluation loss, which
still moves while the metric is flat (in the metric's direction: for a metric that is better
lower, such as RMSE, the loss is added).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from autoft.tuning.hyperband import HyperBand

#: The secondary signal the trainables report each epoch.
SECONDARY = "eval_loss"
#: How much loss counts against the metric: it orders equal metrics and never unequal ones, the
#: smallest step of a metric (1 / eval examples) being far above TIE_WEIGHT times a loss.
TIE_WEIGHT = 1e-7


def ranked(result: Mapping[str, Any], metric: str, mode: str = "max") -> dict[str, Any]:
    """``result`` with ``metric`` made worse by ``TIE_WEIGHT`` times its evaluation loss: lower
    under mode ``max``, higher under ``min``.

    >>> ranked({"eval_mcc": 0.0, "eval_loss": 0.5}, "eval_mcc")["eval_mcc"]
    -5e-08
    >>> ranked({"eval_rmse": 1.0, "eval_loss": 0.5}, "eval_rmse", "min")["eval_rmse"]
    1.00000005
    >>> ranked({"eval_mcc": 0.0}, "eval_mcc")["eval_mcc"]
    0.0
    """
    loss = result.get(SECONDARY)
    if metric not in result or not isinstance(loss, int | float) or not math.isfinite(loss):
        return dict(result)
    worse = TIE_WEIGHT * loss
    return {**result, metric: result[metric] - worse if mode == "max" else result[metric] + worse}


class TieBreaking:
    """Mixed into a Ray scheduler: it sees every result ranked by :func:`ranked`, in the mode
    the Tuner gave the scheduler."""

    _metric: str
    _mode: str

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return super().on_trial_result(tune_controller, trial,  # type: ignore[misc]
                                       ranked(result, self._metric, self._mode))

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial,  # type: ignore[misc]
                                  ranked(result, self._metric, self._mode))


class TieBreakingASHA(TieBreaking, ASHAScheduler):
    """Ray's ASHA, ties broken by the evaluation loss."""


class TieBreakingHyperBand(TieBreaking, HyperBand):
    """HyperBand (:class:`autoft.tuning.hyperband.HyperBand`), ties broken by the evaluation
    loss."""
