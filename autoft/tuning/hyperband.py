"""Ray's HyperBand without its hang: no bracket left waiting for a trial that has left.

Ray's HyperBand pauses a trial at a milestone until the other trials of its bracket get there,
and decides the bracket when the last of them reports. When that last one leaves instead (a
function trainable that returns right after its last report, a failure), Ray decides nothing
once the bracket has halved or finished, and its paused trials wait forever: the search hangs.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler


class HyperBand(HyperBandScheduler):
    """Ray's HyperBand; a bracket whose remaining trials all wait at the milestone is decided
    when a trial leaves it."""

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_remove(tune_controller, trial)
        bracket, _ = self._trial_info[trial]
        waiting = bracket.current_trials()
        if waiting and bracket.cur_iter_done() and all(
                (t.status == Trial.PAUSED or t.is_saving) and t not in bracket.trials_to_unpause
                for t in waiting):
            self._process_bracket(tune_controller, bracket)
