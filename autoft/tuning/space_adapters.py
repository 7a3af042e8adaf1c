"""A search space in the terms of each library that searches it, all conversions in one place.

* Optuna: :func:`distribution` per parameter; :func:`suggest` and :func:`define_by_run` (what
  Ray's ``OptunaSearch`` takes), which ask only for the parameters whose ``when`` holds;
  :func:`study_trial` for the in-memory study that the plots draw.
* Ray Tune: :func:`tune_mutations`, PBT's ``hyperparam_mutations``.
* Nevergrad: :func:`nevergrad_space`, the parametrization of the ``pso`` search.

Each adapter yields only values of the space: inside ``[low, high]``, on the ``step`` grid, whole
for an int, one of the choices. A value off the grid is not harmless: Optuna refuses it when the
plots rebuild the study at the end of a search. tests/test_space_adapters.py runs every kind of
parameter through every adapter to hold them to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from ray import tune
from ray.tune.search.sample import Domain

from autoft.core.errors import InputError
from autoft.core.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace

if TYPE_CHECKING:  # imported where used: only the pso search needs it (0.8 s of start-up)
    import nevergrad as ng

log = logging.getLogger(__name__)


# --- Optuna -----------------------------------------------------------------------------------


def distribution(param: Param) -> BaseDistribution:
    """The Optuna distribution of a parameter: the same values, the same scale.

    >>> distribution(IntParam(name="blocks", low=0, high=4, step=2))
    IntDistribution(high=4, log=False, low=0, step=2)
    """
    if isinstance(param, CategoricalParam):
        return CategoricalDistribution(param.choices)
    if isinstance(param, IntParam):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def suggest(space: SearchSpace, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Ask ``trial`` for every active parameter, in order; returns the point.

    Works with an ``optuna.Trial`` and with the wrapper that Ray's ``OptunaSearch`` passes to a
    define-by-run function (only ``suggest_*`` methods are called)::

        study.optimize(lambda trial: objective(suggest(space, trial)), n_trials=10)
    """
    point: dict[str, Any] = {}
    for param in space.params:
        if param.is_active(point):
            point[param.name] = _ask(trial, param.name, distribution(param))
    return point


def _ask(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def random_points(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` points of every parameter, conditional ones too, drawn by Optuna's random
    sampler with ``seed`` (PBT's population: PBT copies whole points, so every key is there).

    >>> from autoft.core.space_files import load_space
    >>> space = load_space({"lr_schedule": {"type": "categorical",
    ...                                     "choices": ["constant", "stlr"]},
    ...                     "cut_frac": {"type": "float", "low": 0.0, "high": 0.2,
    ...                                  "when": {"lr_schedule": "stlr"}}})
    >>> [sorted(point) for point in random_points(space, 2, seed=0)]
    [['cut_frac', 'lr_schedule'], ['cut_frac', 'lr_schedule']]
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    every = {param.name: distribution(param) for param in space.params}
    return [study.ask(every).params for _ in range(count)]


@dataclass(frozen=True)
class DefineByRun:
    """The space as ``OptunaSearch(space=...)`` takes a define-by-run function.

    Ray records the values of the ``suggest_*`` calls and requires the function to return None
    (or a dict of constants); it pickles the function with the searcher's state on every
    checkpoint, so this is a small picklable object, not a closure.
    """

    space: SearchSpace

    def __call__(self, trial: optuna.trial.BaseTrial) -> None:
        suggest(self.space, trial)


def define_by_run(space: SearchSpace) -> DefineByRun:
    """``OptunaSearch(space=define_by_run(space), metric="eval_mcc", mode="max")``."""
    return DefineByRun(space)


def study_trial(space: SearchSpace, hparams: Mapping[str, Any],
                value: float) -> optuna.trial.FrozenTrial:
    """A finished trial for an in-memory study: its searched parameters and its score.

    Hyperparameters that are not parameters of the space (fixed ones, the trial's context) are
    left out, and so is a value that is not a value of the space (a trial of an older search, a
    hand-edited point): Optuna would refuse the whole trial, and a plot must not fail a search.
    """
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    for param in space.params:
        if param.name not in hparams:
            continue
        problem = param.problem(hparams[param.name])
        if problem:
            log.info("left out of the plots: %s: %s", param.name, problem)
            continue
        params[param.name] = hparams[param.name]
        distributions[param.name] = distribution(param)
    return optuna.trial.create_trial(params=params, distributions=distributions, value=value)


# --- Ray Tune (PBT) ---------------------------------------------------------------------------


def tune_mutations(space: SearchSpace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Ray PBT ``hyperparam_mutations`` for ``names`` (default: every parameter).

    Conditional parameters are allowed: PBT fills in a value where a trial lacks one and the
    trainable ignores it while inactive. PBT multiplies floats by its perturbation factors,
    which can leave the range: pass ``space.clip`` as ``custom_explore_fn``::

        PopulationBasedTraining(hyperparam_mutations=tune_mutations(space, ["learning_rate"]),
                                custom_explore_fn=space.clip)
    """
    params = {param.name: param for param in space.params}
    chosen = space.names if names is None else list(names)
    unknown = [name for name in chosen if name not in params]
    if unknown:
        raise InputError(f"{space.source}: cannot mutate {', '.join(map(str, unknown))}: "
                         f"not a parameter of the space ({', '.join(space.names)})")
    return {name: tune_mutation(params[name]) for name in chosen}


def tune_mutation(param: Param) -> list[Any] | Domain:
    """One ``hyperparam_mutations`` entry.

    Categoricals and ints are lists, which PBT perturbs by moving to a neighbouring value (ints
    would otherwise be multiplied by 0.8 or 1.2 and rounded back, so 0, 1 and 2 never move);
    floats are Tune domains, which PBT resamples or multiplies. Tune's ``quniform`` draws
    multiples of ``q``, so a stepped float whose ``low`` is not one is a list of its grid too.

    >>> tune_mutation(FloatParam(name="x", low=0.05, high=0.25, step=0.1))
    [0.05, 0.15, 0.25]
    """
    if not isinstance(param, FloatParam):
        return param.values()
    if param.step is None:
        return (tune.loguniform if param.log else tune.uniform)(param.low, param.high)
    if Decimal(str(param.low)) % Decimal(str(param.step)) == 0:
        return tune.quniform(param.low, param.high, param.step)
    return param.values()  # type: ignore[return-value]


# --- Nevergrad --------------------------------------------------------------------------------


def nevergrad_space(space: SearchSpace) -> ng.p.Dict:
    """Every parameter as a Nevergrad parametrization (``when`` is not expressed: a conditional
    parameter is always there; the ``pso`` search refuses such spaces)."""
    import nevergrad as ng

    return ng.p.Dict(**{param.name: nevergrad_param(param) for param in space.params})


def nevergrad_param(param: Param) -> ng.p.Parameter:
    """One parameter for Nevergrad.

    Nevergrad casts to an integer last, after any rescaling, so ``low + k·step`` cannot be a cast
    scalar: a stepped parameter is a ``TransitionChoice`` over its grid (ordered, one scalar to
    the optimizer; fine for grids of a few thousand values, slow beyond). An int without step is
    a scalar cast to int; floats are scalars, on a log scale with ``log``.

    >>> nevergrad_param(FloatParam(name="lr", low=1e-4, high=3e-4, step=1e-4)).choices.value
    (0.0001, 0.0002, 0.0003)
    """
    import nevergrad as ng

    if isinstance(param, CategoricalParam):
        return ng.p.Choice(list(param.choices))
    if param.step is not None and not (isinstance(param, IntParam) and param.step == 1):
        return ng.p.TransitionChoice(param.values())
    bounds = {"lower": param.low, "upper": param.high}
    scalar = ng.p.Log(**bounds) if param.log else ng.p.Scalar(**bounds)
    return scalar.set_integer_casting() if isinstance(param, IntParam) else scalar
