"""Sampler and scheduler construction, without Ray: each algorithm drives a real Optuna study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

from autoft.core.config import config_from_mapping
from autoft.core.errors import InputError
from autoft.core.space_files import load_space
from autoft.tuning.algorithms import (
    describe_strategy,
    make_sampler,
    make_scheduler,
    pbt_population,
    tpe_startup_trials,
)
from autoft.tuning.space_adapters import suggest

SPACE = load_space({
    "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05,
                 "when": {"lr_schedule": "stlr"}},
    "dis_blocks": {"type": "int", "low": 0, "high": 2},
})


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes", "random", "grid", "gp", "qmc"])
def test_every_sampler_searches_the_space(algorithm: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(algorithm, 0, SPACE))
    study.optimize(lambda trial: float(suggest(SPACE, trial)["dis_blocks"]), n_trials=6)
    assert len(study.trials) == 6
    for trial in study.trials:
        assert ("cut_frac" in trial.params) == (trial.params["lr_schedule"] == "stlr")


@pytest.mark.parametrize(("num_samples", "startup"), [(None, 10), (8, 4), (16, 4), (32, 8),
                                                       (200, 10)])
def test_tpe_starts_with_a_quarter_of_a_small_budget_at_random(num_samples: int | None,
                                                               startup: int) -> None:
    assert tpe_startup_trials(num_samples) == startup


def test_tpe_models_the_space_after_its_startup_trials() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler("tpe", 0, SPACE, num_samples=16)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda trial: float(suggest(SPACE, trial)["dis_blocks"]), n_trials=16)
    guided = [t.params["dis_blocks"] for t in study.trials[4:]]
    assert sum(value == 2 for value in guided) > len(guided) / 3  # random: a third of the time


def config(tmp_path: Path, **search: object):
    return config_from_mapping({"name": "s", "trainable": "tests.toy_trainable:quadratic",
                                "space": {"learning_rate": {"type": "float", "low": 0.1,
                                                            "high": 0.2}},
                                "fixed": {"num_epochs": 4}, "search": search}, tmp_path)


def test_pbt_population_holds_every_parameter(tmp_path: Path) -> None:
    population = pbt_population(config(tmp_path, scheduler="pbt", num_samples=5), SPACE,
                                [{"lr_schedule": "constant", "dis_blocks": 1}])
    assert len(population) == 5
    assert population[0]["lr_schedule"] == "constant" and population[0]["dis_blocks"] == 1
    assert all(set(point) == set(SPACE.names) for point in population)


def test_scheduler_choice_and_pbt_needs_a_mutable_parameter(tmp_path: Path) -> None:
    for name, kind in (("fifo", FIFOScheduler), ("asha", ASHAScheduler),
                       ("hyperband", HyperBandScheduler)):
        assert isinstance(make_scheduler(config(tmp_path, scheduler=name, grace_period=9),
                                         SPACE), kind)
    with pytest.raises(InputError, match="pbt needs one of"):
        make_scheduler(config(tmp_path, scheduler="pbt"),
                       load_space({"dis_blocks": {"type": "int", "low": 0, "high": 2}}))
    assert "BasicVariantGenerator" in describe_strategy(config(tmp_path, scheduler="pbt"), SPACE)
