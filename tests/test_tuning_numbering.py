"""Trial identity as data: the driver's numbering of trials, without a Ray cluster."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import optuna
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from autoft.core.config import Config
from autoft.tuning.numbering import NumberedPBT, NumberedSearcher, numbered_points
from autoft.tuning.trial import trial_context, trial_hparams, trial_name
from trainables.api import TRIAL_KEY, TrialContext, split_trial_config


def config(**fixed: object) -> Config:
    return Config(name="n", trainable="tests.toy_trainable:quadratic", fixed=fixed,
                  search={"seed": 10})


def optuna_searcher(seed: int = 0) -> ConcurrencyLimiter:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    searcher = OptunaSearch(space=space, metric="score", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=seed))
    return ConcurrencyLimiter(searcher, max_concurrent=8)


def test_each_suggestion_carries_the_next_index_and_its_seed() -> None:
    searcher = NumberedSearcher(optuna_searcher(), functools.partial(trial_context, config()))
    contexts = [split_trial_config(searcher.suggest(f"t{i}"))[1] for i in range(3)]
    assert contexts == [TrialContext(index=i, seed=10 + i) for i in range(3)]


def test_a_restored_searcher_goes_on_numbering() -> None:
    context_of = functools.partial(trial_context, config())
    first = NumberedSearcher(optuna_searcher(), context_of)
    for i in range(2):
        first.suggest(f"t{i}")
    restored = NumberedSearcher(optuna_searcher(), context_of)
    restored.set_state(first.get_state())
    assert split_trial_config(restored.suggest("t2"))[1] == TrialContext(index=2, seed=12)


def test_a_fixed_seed_wins_over_the_index() -> None:
    assert trial_context(config(seed=7), 3, {}) == TrialContext(index=3, seed=7)
    assert trial_hparams(config(seed=7), {"x": 1}, TrialContext(3, 7)) == {"seed": 7, "x": 1}


def test_names_come_from_the_context_not_from_ray() -> None:
    numbered = numbered_points([{"x": 0.5}], functools.partial(trial_context, config()))[0]
    assert trial_name(SimpleNamespace(config=numbered, trial_id="abc_00001")) == "trial_0000"
    assert trial_name(SimpleNamespace(config={"x": 1}, trial_id="abc_00001")) == "trial_abc_00001"


def test_pbt_exploit_copies_hyperparameters_but_not_identity() -> None:
    pbt = NumberedPBT(time_attr="training_iteration", perturbation_interval=1,
                      hyperparam_mutations={"x": [0.1, 0.2, 0.3]}, metric="score", mode="max")
    mine = SimpleNamespace(config={"x": 0.1, TRIAL_KEY: {"index": 1, "seed": 11}})
    best = SimpleNamespace(config={"x": 0.3, TRIAL_KEY: {"index": 0, "seed": 10}})
    new_config, _ = pbt._get_new_config(mine, best)
    assert new_config[TRIAL_KEY] == {"index": 1, "seed": 11}
    assert new_config["x"] in (0.1, 0.2, 0.3)
