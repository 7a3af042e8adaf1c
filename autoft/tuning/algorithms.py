"""The searcher and scheduler named by a config's ``search`` section.

``algorithm`` picks an Optuna sampler, driven by Ray Tune's ``OptunaSearch`` over the space's
define-by-run function (so conditional parameters work), or ``pso``: Nevergrad's particle swarm
through Ray Tune's ``NevergradSearch`` (PaddleHub's ``pshe2``); ``scheduler`` picks a Ray Tune trial
scheduler over epochs. PBT cannot run beside a search algorithm (Ray refuses the pair), so its
initial population is sampled from the same space up front and run by Ray's own
``BasicVariantGenerator``.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from ray.tune.schedulers import (
    FIFOScheduler,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.metrics import mode
from autoft.core.space import SearchSpace
from autoft.tuning.numbering import NumberedPBT, NumberedSearcher, numbered_points
from autoft.tuning.space_adapters import (
    define_by_run,
    nevergrad_space,
    random_points,
    tune_mutations,
)
from autoft.tuning.tie_break import TieBreakingASHA, TieBreakingHyperBand
from autoft.tuning.trial import trial_context
from autoft.tuning.warm_start import labelled_warm_start

if TYPE_CHECKING:  # imported where used: only the pso search needs Nevergrad (0.8 s of start-up)
    from ray.tune.search.nevergrad import NevergradSearch

#: Hyperparameters PBT perturbs: the learning rate and the schedule's shape (the rest changes
#: what a checkpoint means, e.g. the blocks of the optimizer's groups).
PBT_MUTABLE = ("learning_rate", "cut_frac", "warmup_proportion", "weight_decay", "l2sp_alpha")


def tpe_startup_trials(num_samples: int | None) -> int:
    """Random trials before TPE starts modelling: Optuna's 10, or a quarter of a smaller budget
    (at least 4), so that most of a 16-trial search is guided rather than random."""
    return 10 if num_samples is None else min(10, max(4, num_samples // 4))


def make_sampler(algorithm: str, seed: int, space: SearchSpace, popsize: int | None = None,
                 num_samples: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``algorithm`` (tpe, cmaes, random, grid, gp, qmc), seeded.

    TPE's random start-up is sized to the budget of ``num_samples`` trials
    (:func:`tpe_startup_trials`). CMA-ES starts at the space's first initial point when it has
    one (PaddleHub's ``init_value``s) with ``popsize`` candidates per generation, as
    PaddleHub's ``hazero`` did.
    """
    if algorithm == "tpe":
        with warnings.catch_warnings():
            # multivariate and group are "experimental" in Optuna since 2.x; they are what
            # handles the space's conditional parameters.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True,
                                              n_startup_trials=tpe_startup_trials(num_samples))
    if algorithm == "cmaes":
        x0 = dict(space.initial_points[0]) if space.initial_points else None
        with warnings.catch_warnings():
            # x0 is deprecated for Optuna 6 with no replacement yet; it is hazero's start point.
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.CmaEsSampler(x0=x0, seed=seed, popsize=popsize,
                                                warn_independent_sampling=False)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if algorithm == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise InputError(f"search.algorithm: unknown algorithm {algorithm!r}")


def labelled_initial_points(config: Config,
                            space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """The first trials, each with what it is: the space's own (PaddleHub ``init_value``), the
    warm start (:mod:`autoft.tuning.warm_start`, ``warm start: baseline``, ...), then
    ``points_to_evaluate[i]``. Trial ``i`` of a search is the ``i``-th of them."""
    warm = labelled_warm_start(config, space)
    for name, point in warm if isinstance(config.search.warm_start, list) else []:
        space.check_point(point, f"search.{name}")
    for i, point in enumerate(config.search.points_to_evaluate):
        space.check_point(point, f"search.points_to_evaluate[{i}]")
    return ([("init_value", dict(p)) for p in space.initial_points]
            + [(f"warm start: {name}", point) for name, point in warm]
            + [(f"points_to_evaluate[{i}]", dict(p))
               for i, p in enumerate(config.search.points_to_evaluate)])


def initial_points(config: Config, space: SearchSpace) -> list[dict[str, Any]]:
    """The points of :func:`labelled_initial_points`."""
    return [point for _, point in labelled_initial_points(config, space)]


def make_search_alg(config: Config, space: SearchSpace,
                    metric: str) -> SearchAlgorithm | Searcher:
    """The searcher, at most ``max_concurrent`` trials at once, each trial numbered
    (:mod:`autoft.tuning.numbering`); for PBT a sampled, numbered population."""
    points = initial_points(config, space)
    context_of = functools.partial(trial_context, config)
    if config.search.scheduler == "pbt":
        population = numbered_points(pbt_population(config, space, points), context_of)
        return BasicVariantGenerator(points_to_evaluate=population,
                                     max_concurrent=config.search.max_concurrent)
    return NumberedSearcher(ConcurrencyLimiter(_searcher(config, space, metric, points),
                                               max_concurrent=config.search.max_concurrent),
                            context_of)


def _searcher(config: Config, space: SearchSpace, metric: str,
              points: list[dict[str, Any]]) -> Searcher:
    if config.search.algorithm == "pso":
        return _particle_swarm(config, space, metric, points)
    return OptunaSearch(
        space=define_by_run(space),
        metric=metric,
        mode=mode(metric),
        points_to_evaluate=points or None,
        sampler=make_sampler(config.search.algorithm, config.search.seed, space,
                             config.search.popsize, config.search.num_samples),
    )


def pbt_population(config: Config, space: SearchSpace,
                   points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PBT's initial population: the given points, then random ones, ``num_samples`` in all.

    Every point holds every parameter, conditional ones too (the trainable ignores a ``cut_frac``
    without STLR): PBT perturbs and copies whole configs, so each key must always be there.
    """
    given = [dict(p) for p in points[: config.search.num_samples]]
    drawn = random_points(space, config.search.num_samples, config.search.seed)
    return [{**every, **point} for point, every in zip(given, drawn, strict=False)] + drawn[
        len(given):]


def pbt_param_space(config: Config, space: SearchSpace) -> dict[str, Any] | None:
    """The Tuner's ``param_space`` under PBT (Ray looks up every point's keys there), else None."""
    return tune_mutations(space) if config.search.scheduler == "pbt" else None


def _particle_swarm(config: Config, space: SearchSpace, metric: str,
                    points: list[dict[str, Any]]) -> NevergradSearch:
    """Nevergrad's PSO over the space (no conditional parameters), seeded.

    The first points are snapped onto the step grids: Nevergrad places a point on a stepped
    parameter's grid by exact equality, and ``check_point`` lets a value within Optuna's
    tolerance of the grid through.
    """
    import nevergrad as ng
    from ray.tune.search.nevergrad import NevergradSearch

    if any(p.when for p in space.params):
        raise InputError("search.algorithm: pso cannot search conditional parameters (`when`)")
    parametrization = nevergrad_space(space)
    parametrization.random_state = np.random.RandomState(config.search.seed)
    return NevergradSearch(
        optimizer=ng.optimizers.PSO, space=parametrization, metric=metric, mode=mode(metric),
        points_to_evaluate=[space.clip(point) for point in points] or None,
        optimizer_kwargs={"budget": config.search.num_samples,
                          "num_workers": config.search.max_concurrent},
    )


def make_scheduler(config: Config, space: SearchSpace) -> TrialScheduler:
    """The trial scheduler over epochs (``training_iteration`` counts reported epochs).

    Metric and mode come from the Tuner; Ray refuses them twice. ASHA and HyperBand order
    trials of equal score by their evaluation loss (:mod:`autoft.tuning.tie_break`).
    """
    settings = config.search
    max_t = config.num_epochs
    if settings.scheduler == "fifo":
        return FIFOScheduler()
    if settings.scheduler == "asha":
        return TieBreakingASHA(time_attr="training_iteration",
                               max_t=max_t, grace_period=min(settings.grace_period, max_t),
                               reduction_factor=settings.reduction_factor)
    if settings.scheduler == "hyperband":
        return TieBreakingHyperBand(time_attr="training_iteration",
                                    max_t=max_t, reduction_factor=settings.reduction_factor)
    mutable = [name for name in PBT_MUTABLE if name in space.names]
    if not mutable:
        raise InputError(f"search.scheduler: pbt needs one of {', '.join(PBT_MUTABLE)} "
                         "in the space to perturb")
    return NumberedPBT(time_attr="training_iteration",
                       perturbation_interval=1,
                       hyperparam_mutations=tune_mutations(space, mutable),
                       custom_explore_fn=space.clip)


def describe_strategy(config: Config, space: SearchSpace) -> str:
    """For ``autoft validate``: how trials are chosen and stopped, the first trials, and how
    the best is confirmed."""
    settings = config.search
    if settings.scheduler == "pbt":
        chosen = (f"PBT over {settings.num_samples} trials; the initial population is sampled "
                  "from the space up front and run by Ray's BasicVariantGenerator (Ray refuses a "
                  "search algorithm with PBT), every parameter in every trial (conditions are "
                  f"not applied); PBT perturbs {', '.join(PBT_MUTABLE)} where searched")
    else:
        chosen = (f"Optuna {settings.algorithm} via OptunaSearch, {settings.scheduler} "
                  f"scheduler, {settings.num_samples} trials, at most {settings.max_concurrent} "
                  "at once")
    first = initial_points(config, space)
    lines = [chosen, f"first trials: {len(first)} given or warm-start point(s)"
             + "".join(f"\n  {point}" for point in first)]
    confirm = settings.confirmation
    at_most = (" (fewer if that costs more than 25% of the search's trial-epochs)"
               if settings.confirm == "auto" else "")
    lines.append("confirm: off" if confirm is None else
                 f"confirm: the best {confirm.top_k}{at_most} trained again with "
                 f"{confirm.seeds} new seed(s) each; the best mean over seeds is exported")
    return "\n".join(lines)
