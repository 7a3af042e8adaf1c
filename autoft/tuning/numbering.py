"""Trial identity as data: the driver numbers trials as they are proposed and gives each its
:class:`~trainables.api.TrialContext` (index and seed) inside its config.

Nothing reads a trial's index back from its name. :class:`NumberedSearcher` wraps any Ray Tune
``Searcher`` (Optuna, Nevergrad); Ray saves its counter as it saves ``ConcurrencyLimiter``'s,
so a resumed search goes on numbering where it stopped. PBT has no searcher: its population is
numbered up front (:func:`numbered_points`), and :class:`NumberedPBT` keeps a trial's own
context when it exploits another trial's config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.search import Searcher

from trainables.api import TRIAL_KEY, TrialContext

ContextOf = Callable[[int, Mapping[str, Any]], TrialContext]


def numbered(point: Mapping[str, Any], index: int, context_of: ContextOf) -> dict[str, Any]:
    """``point`` with the context of trial ``index`` under :data:`TRIAL_KEY`."""
    return {**point, TRIAL_KEY: context_of(index, point).as_config()}


def with_trial_slot(param_space: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Tuner ``param_space`` with room for the context of numbered points: Ray's variant
    generator assigns a point's values only to keys the space has."""
    if param_space is None:
        return None
    return {**param_space, TRIAL_KEY: {"index": -1, "seed": -1}}


def numbered_points(points: list[dict[str, Any]], context_of: ContextOf) -> list[dict[str, Any]]:
    """A population whose members are trials 0, 1, ... in order."""
    return [numbered(point, index, context_of) for index, point in enumerate(points)]


class NumberedSearcher(Searcher):
    """A searcher whose every suggestion carries the next trial's context.

    Args:
        searcher: the searcher that proposes the hyperparameters (it never sees the context).
        context_of: the context of trial ``index`` with the proposed hyperparameters; picklable,
            since Ray stores the searcher with the experiment.
    """

    def __init__(self, searcher: Searcher, context_of: ContextOf) -> None:
        self.searcher = searcher
        self.context_of = context_of
        self.count = 0
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is None or suggestion == Searcher.FINISHED:
            return suggestion
        self.count += 1
        return numbered(suggestion, self.count - 1, self.context_of)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def on_pause(self, trial_id: str) -> None:
        self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.searcher.on_unpause(trial_id)

    def get_state(self) -> dict:
        """The counter: Ray saves a wrapper's state beside the wrapped searcher's own."""
        return {"count": self.count}

    def set_state(self, state: dict) -> None:
        self.count = state["count"]


class NumberedPBT(PopulationBasedTraining):
    """PBT whose exploiting trial keeps its own index and seed (it copies only the other's
    hyperparameters). ``_get_new_config`` is the hook Ray's own PB2 overrides for the same
    purpose: deciding a trial's config on exploit."""

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        new_config, operations = super()._get_new_config(trial, trial_to_clone)
        if TRIAL_KEY in trial.config:
            new_config[TRIAL_KEY] = trial.config[TRIAL_KEY]
        return new_config, operations
