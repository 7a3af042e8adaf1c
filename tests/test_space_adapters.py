"""The adapters from a search space to Optuna, Ray Tune, Nevergrad and the plots' study.

One table runs every kind of parameter through every adapter and checks that each value it yields
is a value of the space: in range, on the step grid, whole for an int, one of the choices, and
kept by the study the plots rebuild (a ``pso`` search over a stepped float once failed there).
Then the consumers run for real: an Optuna study, Ray's OptunaSearch with a checkpoint, PBT's
explore step, Optuna's GridSampler and Nevergrad's PSO through Ray's NevergradSearch.
"""

from __future__ import annotations

import doctest
import pickle
import random
from pathlib import Path
from typing import Any

import nevergrad as ng
import numpy as np
import optuna
import pytest
from ray.tune.search.sample import Domain

import autoft.tuning.space_adapters
from autoft.core.config import config_from_mapping
from autoft.core.errors import InputError
from autoft.core.space import SearchSpace
from autoft.core.space_files import load_space
from autoft.tuning.algorithms import _particle_swarm
from autoft.tuning.plots import study_from_trials
from autoft.tuning.results import TrialRecord
from autoft.tuning.space_adapters import (
    define_by_run,
    distribution,
    nevergrad_space,
    random_points,
    suggest,
    tune_mutations,
)
from tests.test_space import ULMFIT, _expected_names

optuna.logging.set_verbosity(optuna.logging.WARNING)

SCHEDULE = {"type": "categorical", "choices": ["constant", "stlr"]}

#: Every kind of parameter, each alone in a space (a conditional one after its condition).
KINDS: dict[str, dict[str, Any]] = {
    "float": {"x": {"type": "float", "low": 0.0, "high": 0.3}},
    "float log": {"x": {"type": "float", "low": 1.0e-5, "high": 2.0e-4, "log": True}},
    "float step": {"x": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "step": 1.0e-4}},
    "float step off zero": {"x": {"type": "float", "low": 0.05, "high": 0.25, "step": 0.1}},
    "int": {"x": {"type": "int", "low": 0, "high": 5}},
    "int step": {"x": {"type": "int", "low": 1, "high": 13, "step": 4}},
    "int log": {"x": {"type": "int", "low": 1, "high": 64, "log": True}},
    "categorical str": {"x": {"type": "categorical", "choices": ["constant", "stlr"]}},
    "categorical int": {"x": {"type": "categorical", "choices": [8, 16, 32]}},
    "categorical float": {"x": {"type": "categorical", "choices": [0.1, 0.5, 2.6]}},
    "categorical bool": {"x": {"type": "categorical", "choices": [True, False]}},
    "categorical mixed": {"x": {"type": "categorical", "choices": [None, "none", 0, 2.5]}},
    "conditional": {"schedule": SCHEDULE,
                    "x": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05,
                          "when": {"schedule": "stlr"}}},
}
DRAWS = 24


def _optuna_points(space: SearchSpace) -> list[dict[str, Any]]:
    """A real study: TPE after four random trials, asking through the define-by-run function."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4))
    function, rng = define_by_run(space), random.Random(0)
    study.optimize(lambda trial: function(trial) or rng.random(), n_trials=DRAWS)
    return [trial.params for trial in study.trials]


def _tune_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Draws from each ``hyperparam_mutations`` entry, as PBT resamples them."""
    columns = {}
    for name, entry in tune_mutations(space).items():
        if isinstance(entry, Domain):
            columns[name] = entry.sample(None, size=DRAWS, random_state=0)
        else:
            columns[name] = random.Random(0).choices(entry, k=DRAWS)
    return [{name: column[i] for name, column in columns.items()} for i in range(DRAWS)]


def _nevergrad_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Seeded samples of the parametrization, then what PSO asks for as its swarm moves."""
    parametrization = nevergrad_space(space)
    parametrization.random_state = np.random.RandomState(0)
    points = [parametrization.sample().value for _ in range(DRAWS // 2)]
    optimizer = ng.optimizers.PSO(parametrization=parametrization.copy(), budget=DRAWS // 2)
    for index in range(DRAWS // 2):
        candidate = optimizer.ask()
        points.append(candidate.value)
        optimizer.tell(candidate, float(index % 5))
    return points


ADAPTERS = {"optuna define-by-run": _optuna_points, "tune mutations": _tune_points,
            "nevergrad": _nevergrad_points}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_adapter_yields_only_values_of_the_space(kind: str, adapter: str) -> None:
    space = load_space(KINDS[kind])
    params = {param.name: param for param in space.params}
    points = ADAPTERS[adapter](space)
    assert len(points) == DRAWS
    for point in points:
        for name, value in point.items():
            assert params[name].problem(value) is None, (name, value)
            dist = distribution(params[name])
            assert _contains(dist, value), (name, value, dist)
        if adapter == "optuna define-by-run":  # the only adapter that honours `when`
            space.check_point(point, adapter)
            assert all(param.is_active(point) == (param.name in point) for param in space.params)
    # the plots rebuild a study from the trials and keep every value
    records = [TrialRecord(trial_id=f"t{i}", name=f"t{i}", hparams=point, status="completed",
                           epochs=1, score=float(i)) for i, point in enumerate(points)]
    study = study_from_trials(records, space, "eval_accuracy")
    assert [trial.params for trial in study.trials] == points
    if params["x"].type != "categorical":  # every adapter reaches more than one value
        assert len({point.get("x") for point in points} - {None}) > 1


def _probes(param: Any) -> list[Any]:
    if param.type == "categorical":
        return [*param.choices, "other", 99, 1.5]
    values = [param.low, param.high, (param.low + param.high) / 2]
    if param.step is not None:
        values += [param.grid_value(1), param.low + param.step / 2, param.grid_value(2)]
    values += [param.low - 1, param.high + 1]
    return [round(value) if param.type == "int" and float(value).is_integer() else value
            for value in values]


def _contains(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return dist._contains(dist.to_internal_repr(value))
    except ValueError:  # e.g. a negative value for a log scale
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_optuna_distributions_hold_exactly_the_values_of_the_space(kind: str) -> None:
    for param in load_space(KINDS[kind]).params:
        dist = distribution(param)
        for value in _probes(param):
            contained = _contains(dist, value)
            assert contained == (param.problem(value) is None), (param.name, value, dist)


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(autoft.tuning.space_adapters)
    assert result.attempted >= 3 and result.failed == 0


def _pso_config(tmp_path: Path, space: dict, points: list[dict]) -> Any:
    return config_from_mapping({
        "name": "pso", "trainable": "tests.toy_trainable:quadratic", "space": space,
        "fixed": {"num_epochs": 1},
        "search": {"algorithm": "pso", "scheduler": "fifo", "num_samples": 12,
                   "max_concurrent": 2, "points_to_evaluate": points}}, tmp_path)


def test_pso_suggests_grid_values_that_the_plots_accept(tmp_path: Path) -> None:
    raw = {"learning_rate": KINDS["float step"]["x"], "blocks": KINDS["int step"]["x"]}
    space = load_space(raw)
    near = {"learning_rate": 3.0e-4 + 1e-15, "blocks": 5}  # on the grid within Optuna's tolerance
    space.check_point(near, "points_to_evaluate[0]")
    searcher = _particle_swarm(_pso_config(tmp_path, raw, [near]), space, "eval_accuracy", [near])
    points = []
    for index in range(12):
        points.append(searcher.suggest(f"t{index}"))
        searcher.on_trial_complete(f"t{index}", {"eval_accuracy": -abs(points[-1]["blocks"] - 9)})
    assert points[0] == {"learning_rate": 3.0e-4, "blocks": 5}
    for point in points:
        space.check_point(point, "pso")
    records = [TrialRecord(trial_id=f"t{i}", name=f"t{i}", hparams=point, status="completed",
                           epochs=1, score=float(i)) for i, point in enumerate(points)]
    assert len(study_from_trials(records, space, "eval_accuracy").trials) == 12


def test_pso_refuses_conditional_parameters(tmp_path: Path) -> None:
    raw = KINDS["conditional"]
    with pytest.raises(InputError, match="pso cannot search conditional parameters"):
        _particle_swarm(_pso_config(tmp_path, raw, []), load_space(raw), "eval_accuracy", [])


def test_plots_leave_out_values_that_are_not_in_the_space() -> None:
    space = load_space(KINDS["float step"])
    records = [TrialRecord(trial_id="t0", name="t0", hparams={"x": 4.75e-4, "num_epochs": 3},
                           status="completed", epochs=1, score=0.5)]
    assert study_from_trials(records, space, "eval_accuracy").trials[0].params == {}


def test_real_optuna_study_suggests_conditional_params_only_when_active() -> None:
    space = load_space(ULMFIT)
    returned: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        point = suggest(space, trial)
        returned.append(point)
        return point["learning_rate"] * point.get("cut_frac", 0.5)

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    study.optimize(objective, n_trials=25)
    assert len(study.trials) == 25
    for trial, point in zip(study.trials, returned, strict=True):
        assert trial.params == point
        assert set(trial.params) == _expected_names(trial.params)
        space.check_point(trial.params, "trial")
    assert {point["lr_schedule"] for point in returned} == {"constant", "warmup_linear", "stlr"}


def test_ray_optuna_search_accepts_define_by_run_and_survives_checkpoint(tmp_path: Path) -> None:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(ULMFIT)
    first = {"lr_schedule": "stlr", "cut_frac": 0.1, "dis_blocks": 3, "batch_size": 16,
             "learning_rate": 5e-5}
    space.check_point(first, "points_to_evaluate[0]")
    searcher = OptunaSearch(space=define_by_run(space), metric="eval_mcc", mode="max", seed=0,
                            points_to_evaluate=[first])
    suggested = {}
    for index in range(8):
        trial_id = f"t{index}"
        suggested[trial_id] = searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, {"eval_mcc": 0.1 * index})
    assert suggested["t0"] == first
    for point in suggested.values():
        assert set(point) == _expected_names(point)
        space.check_point(point, "suggested")

    checkpoint = tmp_path / "searcher.pkl"
    searcher.save(str(checkpoint))
    restored = OptunaSearch(space=define_by_run(space), metric="eval_mcc", mode="max")
    restored.restore(str(checkpoint))
    point = restored.suggest("t8")
    space.check_point(point, "restored")
    assert len(restored._ot_study.trials) == 9


def test_paddlehub_init_values_are_the_first_ray_trial() -> None:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space({"param_list": [
        {"name": "learning_rate", "init_value": 0.001, "type": "float",
         "greater_than": 0.00001, "lower_than": 0.01},
        {"name": "batch_size", "init_value": 16, "type": "int", "greater_than": 8,
         "lower_than": 64}]})
    searcher = OptunaSearch(space=define_by_run(space), metric="score", mode="max",
                            points_to_evaluate=list(space.initial_points))
    assert searcher.suggest("t0") == {"learning_rate": 0.001, "batch_size": 16}
    searcher.on_trial_complete("t0", {"score": 1.0})
    space.check_point(searcher.suggest("t1"), "second trial")


def test_define_by_run_returns_none_and_pickles() -> None:
    space = load_space(ULMFIT)
    function = define_by_run(space)
    trial = optuna.create_study().ask()
    assert function(trial) is None
    assert set(trial.params) == _expected_names(trial.params)
    assert pickle.loads(pickle.dumps(function)).space == space


def test_mutations_for_pbt_stay_in_range_after_clip() -> None:
    from ray.tune.schedulers.pbt import _explore
    from ray.tune.search import sample

    space = load_space({**ULMFIT, "weight_decay": {"type": "float", "low": 0.0, "high": 0.1,
                                                   "step": 0.01}})
    mutations = tune_mutations(space)
    assert mutations["lr_schedule"] == ["constant", "warmup_linear", "stlr"]
    assert mutations["batch_size"] == [8, 16, 32]
    assert mutations["dis_blocks"] == [0, 1, 2, 3, 4, 5]
    assert isinstance(mutations["learning_rate"], sample.Float)
    assert isinstance(mutations["learning_rate"].sampler, sample.LogUniform)
    assert isinstance(mutations["weight_decay"].sampler, sample.Quantized)
    assert (mutations["learning_rate"].lower, mutations["learning_rate"].upper) == (1e-5, 2e-4)
    assert list(tune_mutations(space, ["learning_rate"])) == ["learning_rate"]

    random.seed(0)
    # PBT fills in the conditional parameters that a trial's first config lacks
    config = {**random_points(space, 1, seed=0)[0], "cut_frac": 0.2, "warmup_proportion": 0.0,
              "num_epochs": 3}
    for _ in range(300):
        config, _ = _explore(config, mutations, 0.25, (0.8, 1.2), space.clip)
        assert config["num_epochs"] == 3
        for param in space.params:
            assert param.problem(config[param.name]) is None, (param.name, config[param.name])


def test_mutations_reject_unknown_names() -> None:
    with pytest.raises(InputError, match=r"^space: cannot mutate lr: not a parameter"):
        tune_mutations(load_space(ULMFIT), ["lr", "batch_size"])


def test_grid_runs_every_combination_with_optuna_grid_sampler() -> None:
    space = load_space({
        "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
        "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1,
                     "when": {"lr_schedule": "stlr"}},
        "dis_blocks": {"type": "int", "low": 0, "high": 4, "step": 2},
    })
    grid = space.grid()
    assert grid == {"lr_schedule": ["constant", "stlr"], "cut_frac": [0.0, 0.1, 0.2],
                    "dis_blocks": [0, 2, 4]}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    study.optimize(lambda trial: float(suggest(space, trial)["dis_blocks"]))
    assert len(study.trials) == 2 * 3 * 3
    seen = {tuple(sorted(trial.params.items())) for trial in study.trials}
    assert len({point for point in seen if dict(point)["lr_schedule"] == "stlr"}) == 9
    for trial in study.trials:
        space.check_point(trial.params, "grid trial")
