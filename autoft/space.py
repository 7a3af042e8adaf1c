"""Search spaces: which hyperparameters a search varies, over which values, and when.

Two file formats load into one model, :class:`SearchSpace`:

* autoft's own YAML (design.md "Search space files"), a mapping of parameter names::

      lr_schedule:   {type: categorical, choices: [constant, warmup_linear, stlr]}
      cut_frac:      {type: float, low: 0.0, high: 0.2, when: {lr_schedule: stlr}}
      learning_rate: {type: float, low: 1.0e-5, high: 2.0e-4, log: true}

  ``when`` makes a parameter conditional: it exists only in points where every named parameter
  (defined *above* it, so conditions can never form a cycle) has one of the listed values.

* PaddleHub's ``hparam.yaml`` (recognised by its top-level ``param_list``): int and float
  parameters bounded by ``greater_than`` and ``lower_than``, whose ``init_value``s become the first
  point to evaluate (:attr:`SearchSpace.initial_points`).

The one model then serves every consumer: Optuna's define-by-run API (:meth:`SearchSpace.suggest`,
also through Ray's ``OptunaSearch``), PBT's initial population (:meth:`SearchSpace.sample`) and
``hyperparam_mutations`` (:meth:`SearchSpace.mutations`), Optuna's ``GridSampler``
(:meth:`SearchSpace.grid`), warm-start checks (:meth:`SearchSpace.check_point`) and the table that
``autoft validate`` prints (:meth:`SearchSpace.describe`). Every problem in a space is an
:class:`~autoft.errors.InputError` of one line naming the source, the parameter and the problem.

Example::

    space = load_space("search_spaces/ulmfit_text.yaml")
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: score(space.suggest(trial)), n_trials=20)
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from autoft.config import read_yaml
from autoft.errors import InputError

if TYPE_CHECKING:
    import optuna
    from ray.tune.search.sample import Domain

ParamType = Literal["float", "int", "categorical"]
Choice = None | bool | int | float | str

_NUMERIC_KEYS = frozenset({"type", "low", "high", "step", "log", "when"})
_CATEGORICAL_KEYS = frozenset({"type", "choices", "when"})
_PADDLEHUB_KEYS = frozenset({"name", "init_value", "type", "lower_than", "greater_than"})
_GRID_TOLERANCE = 1e-8  # Optuna's own tolerance for "on the step grid"


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind: ``True`` does not match the choice ``1``."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _text(value: Any) -> str:
    """A value as a table cell: numbers compactly (``1e-05``), everything else as written."""
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type and the values it can take.

    ``low`` and ``high`` are inclusive bounds of float and int parameters, ``step`` an optional
    spacing of their values, ``log`` samples on a log scale; ``choices`` are a categorical's
    values. ``when`` maps parameters to their allowed values; the parameter is *active* (sampled,
    passed to the trainable) only in points where all of them hold.

    >>> p = Param("cut_frac", "float", low=0.0, high=0.2, when={"lr_schedule": ("stlr",)})
    >>> p.is_active({"lr_schedule": "stlr"}), p.is_active({"lr_schedule": "constant"})
    (True, False)
    >>> p.problem(0.5)
    '0.5 is outside [0, 0.2]'
    """

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()
    when: dict[str, tuple[Choice, ...]] = field(default_factory=dict)

    def is_active(self, point: Mapping[str, Any]) -> bool:
        """Whether every condition of ``when`` holds in ``point`` (always, without ``when``).

        >>> Param("x", "int", low=0, high=3, when={"a": (1, 2), "b": ("y",)}).is_active(
        ...     {"a": 2, "b": "y"})
        True
        """
        return all(key in point and any(_same(point[key], option) for option in allowed)
                   for key, allowed in self.when.items())

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a value of this parameter, or None when it is.

        >>> Param("batch_size", "categorical", choices=(16, 32)).problem(24)
        '24 is not one of the choices [16, 32]'
        """
        if self.type == "categorical":
            if any(_same(value, choice) for choice in self.choices):
                return None
            return f"{value!r} is not one of the choices {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return f"{value!r} is not a number"
        if self.type == "int" and not isinstance(value, Integral):
            return f"{value!r} is not a whole number"
        if not self.low <= value <= self.high:
            return f"{value!r} is outside [{_text(self.low)}, {_text(self.high)}]"
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) >= _GRID_TOLERANCE:
                return f"{value!r} is not {_text(self.low)} plus a multiple of {_text(self.step)}"
        return None

    def condition(self) -> str:
        """``when`` as text, e.g. ``lr_schedule = stlr``; empty for an unconditional parameter."""
        return " and ".join(
            f"{key} = {_text(allowed[0])}" if len(allowed) == 1
            else f"{key} in {{{', '.join(_text(value) for value in allowed)}}}"
            for key, allowed in self.when.items())

    def range_text(self) -> str:
        """The values as text: ``{a, b}``, ``[0, 5]`` or ``[0, 0.2] step 0.05``."""
        if self.type == "categorical":
            return "{" + ", ".join(_text(choice) for choice in self.choices) + "}"
        text = f"[{_text(self.low)}, {_text(self.high)}]"
        return text if self.step is None else f"{text} step {_text(self.step)}"

    def values(self) -> list[Any] | None:
        """Every value, in order, when there are finitely many; None for a float without step."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            return None
        return [self._grid_value(k) for k in range(self._grid_steps() + 1)]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask ``trial`` for this parameter's value (Optuna define-by-run)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1,
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def sample(self, rng: random.Random) -> Any:
        """One random value, distributed as Optuna's random sampler would draw it."""
        if self.type == "categorical":
            return rng.choice(self.choices)
        if self.type == "int" and not self.log:
            return rng.randrange(self.low, self.high + 1, self.step or 1)
        if self.step is not None:
            return self._grid_value(rng.randint(0, self._grid_steps()))
        if self.type == "int":
            value = math.exp(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
            return self.clip(value)
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.clip(rng.uniform(self.low, self.high))

    def clip(self, value: float) -> float | int:
        """A numeric value pulled into ``[low, high]``, onto the step grid, whole for an int."""
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            value = self._grid_value(round((value - self.low) / self.step))
        return int(round(value)) if self.type == "int" else value

    def mutation(self) -> list[Any] | Domain:
        """This parameter as a Ray PBT ``hyperparam_mutations`` entry.

        Categoricals and ints are lists, which PBT perturbs by moving to a neighbouring value
        (ints would otherwise be multiplied by 0.8 or 1.2 and rounded back, so 0, 1 and 2 never
        move); floats are Tune domains, which PBT resamples or multiplies.
        """
        from ray import tune

        if self.type != "float":
            return self.values()
        if self.step is not None:
            return tune.quniform(self.low, self.high, self.step)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def _grid_steps(self) -> int:
        return int((Decimal(str(self.high)) - Decimal(str(self.low))) / Decimal(str(self.step)))

    def _grid_value(self, k: int) -> float | int:
        value = Decimal(str(self.low)) + k * Decimal(str(self.step))
        return int(value) if self.type == "int" else float(value)


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a search, in file order (a condition names only earlier parameters).

    ``initial_points`` are points to evaluate first (PaddleHub's ``init_value``s; empty for
    autoft files); ``source`` names where the space came from in error messages.

    >>> space = load_space({"lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
    ...                     "cut_frac": {"type": "float", "low": 0.0, "high": 0.2,
    ...                                  "when": {"lr_schedule": "stlr"}}})
    >>> space.names
    ['lr_schedule', 'cut_frac']
    >>> space.sample(random.Random(1))
    {'lr_schedule': 'constant'}
    """

    params: tuple[Param, ...]
    initial_points: tuple[dict[str, Any], ...] = ()
    source: str = "space"

    @property
    def names(self) -> list[str]:
        """The parameter names, in order."""
        return [param.name for param in self.params]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every active parameter from ``trial``, in order; returns the point.

        Works with an ``optuna.Trial`` and with the wrapper that Ray's ``OptunaSearch`` passes
        to a define-by-run function (only ``suggest_*`` methods are called)::

            study.optimize(lambda trial: objective(space.suggest(trial)), n_trials=10)
        """
        point: dict[str, Any] = {}
        for param in self.params:
            if param.is_active(point):
                point[param.name] = param.suggest(trial)
        return point

    def define_by_run(self) -> Callable[[optuna.trial.BaseTrial], None]:
        """The space as ``OptunaSearch(space=...)`` takes a define-by-run function.

        Ray records the values of the ``suggest_*`` calls and requires the function to return
        None (or a dict of constants); it pickles the function with the searcher's state on
        every checkpoint, so this is a bound method, not a closure::

            OptunaSearch(space=space.define_by_run(), metric="eval_mcc", mode="max")
        """
        return self._define_by_run

    def _define_by_run(self, trial: optuna.trial.BaseTrial) -> None:
        self.suggest(trial)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """An independent random point in which exactly the active parameters appear.

        For PBT's initial population (Ray refuses a search algorithm beside PBT)::

            rng = random.Random(seed)
            population = [space.sample(rng) for _ in range(num_samples)]
        """
        point: dict[str, Any] = {}
        for param in self.params:
            if param.is_active(point):
                point[param.name] = param.sample(rng)
        return point

    def check_point(self, point: Mapping[str, Any], where: str) -> None:
        """Raise :class:`InputError` unless ``point`` is a (partial) point of this space.

        ``where`` starts the message (e.g. ``"cfg.yaml: search.points_to_evaluate[0]"``).
        Each named parameter must exist and hold one of its values, and a conditional parameter
        may only be given together with values of the parameters it depends on that make it
        active. Parameters left out are sampled by the search algorithm.
        """
        if not isinstance(point, Mapping):
            raise InputError(f"{where}: expected a mapping of hyperparameter values, "
                             f"got {type(point).__name__}")
        params = {param.name: param for param in self.params}
        for name, value in point.items():
            param = params.get(name)
            if param is None:
                raise InputError(f"{where}: {name}: not a parameter of the space "
                                 f"({self.source}: {', '.join(self.names)})")
            problem = param.problem(value)
            if problem:
                raise InputError(f"{where}: {name}: {problem}")
            for key, allowed in param.when.items():
                if key not in point:
                    raise InputError(f"{where}: {name}: only used when {param.condition()}; "
                                     f"give {key} as well")
                if not any(_same(point[key], option) for option in allowed):
                    raise InputError(f"{where}: {name}: only used when {param.condition()}, "
                                     f"but {key} is {point[key]!r}")

    def mutations(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Ray PBT ``hyperparam_mutations`` for ``names`` (default: every parameter).

        Conditional parameters are allowed: PBT fills in a value where a trial lacks one and the
        trainable ignores it while inactive. PBT multiplies floats by its perturbation factors,
        which can leave the range: pass :meth:`clip` as ``custom_explore_fn``::

            PopulationBasedTraining(hyperparam_mutations=space.mutations(["learning_rate"]),
                                    custom_explore_fn=space.clip)
        """
        params = {param.name: param for param in self.params}
        chosen = self.names if names is None else list(names)
        unknown = [name for name in chosen if name not in params]
        if unknown:
            raise InputError(f"{self.source}: cannot mutate {', '.join(map(str, unknown))}: "
                             f"not a parameter of the space ({', '.join(self.names)})")
        return {name: params[name].mutation() for name in chosen}

    def clip(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``point`` whose numeric parameters lie in range and on their step grid.

        Keys that are not numeric parameters of the space pass through unchanged.
        """
        clipped = dict(point)
        for param in self.params:
            if param.type != "categorical" and param.name in clipped:
                clipped[param.name] = param.clip(clipped[param.name])
        return clipped

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for ``optuna.samplers.GridSampler``.

        Conditional parameters are included (the sampler needs a value for every name it may be
        asked about). A float without ``step`` has no finite grid: :class:`InputError`.
        """
        grid = {param.name: param.values() for param in self.params}
        continuous = [name for name, values in grid.items() if values is None]
        if continuous:
            raise InputError(f"{self.source}: grid search needs a step on every float parameter; "
                             f"without one: {', '.join(continuous)} (add step: or choose another "
                             "algorithm)")
        return grid

    def describe(self) -> str:
        """A table of the parameters (name, type, values, log, condition) for humans.

        >>> print(load_space({"lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-3,
        ...                          "log": True}}).describe())
        name  type   values          log  when
        lr    float  [1e-05, 0.001]  yes  -
        """
        rows = [["name", "type", "values", "log", "when"]]
        rows += [[param.name, param.type, param.range_text(), "yes" if param.log else "no",
                  param.condition() or "-"] for param in self.params]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                           row[-1]]) for row in rows]
        lines += [f"initial point {index}: "
                  + ", ".join(f"{name}={_text(value)}" for name, value in point.items())
                  for index, point in enumerate(self.initial_points, start=1)]
        return "\n".join(lines)


def load_space(spec: Path | str | Mapping[str, Any], source: str | None = None) -> SearchSpace:
    """Read and validate a search space: a YAML file path or an inline mapping.

    A mapping with a ``param_list`` key is a PaddleHub ``hparam.yaml``; anything else is an
    autoft space. ``source`` names the space in error messages (default: the file path, or
    ``"space"`` for a mapping).

    >>> load_space({"param_list": [{"name": "learning_rate", "init_value": 0.001,
    ...     "type": "float", "greater_than": 0.00001, "lower_than": 0.01}]}).initial_points
    ({'learning_rate': 0.001},)
    """
    if isinstance(spec, Mapping):
        raw: Any = spec
        source = source or "space"
    else:
        raw = read_yaml(spec, "space file")
        source = source or str(spec)
    if raw is None or (isinstance(raw, Mapping) and not raw):
        raise InputError(f"{source}: the space is empty: define at least one parameter")
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: expected a mapping of parameter names (or a PaddleHub "
                         f"hparam.yaml with param_list), got {type(raw).__name__}")
    if "param_list" in raw:
        return _from_paddlehub(raw, source)
    return _from_autoft(raw, source)


def _from_autoft(raw: Mapping[Any, Any], source: str) -> SearchSpace:
    names = list(raw)
    params: dict[str, Param] = {}
    for name, entry in raw.items():
        _check_name(name, f"{source}: {name!r}", params)
        params[name] = _autoft_param(name, entry, f"{source}: {name}", params, names)
    return SearchSpace(tuple(params.values()), (), source)


def _autoft_param(name: str, entry: Any, where: str, earlier: Mapping[str, Param],
                  names: list[Any]) -> Param:
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: expected a mapping such as {{type: float, low: 0.0, "
                         f"high: 1.0}}, got {entry!r}")
    kind = entry.get("type")
    if kind not in ("float", "int", "categorical"):
        raise InputError(f"{where}: type must be float, int or categorical, got {kind!r}")
    allowed = _CATEGORICAL_KEYS if kind == "categorical" else _NUMERIC_KEYS
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} parameter "
                         f"(allowed: {', '.join(sorted(allowed))})")
    when = _parse_when(entry.get("when"), name, where, earlier, names)
    if kind == "categorical":
        return Param(name, kind, choices=_parse_choices(entry.get("choices"), where), when=when)
    return _numeric_param(name, kind, entry, where, ("low", "high"), when)


def _from_paddlehub(raw: Mapping[Any, Any], source: str) -> SearchSpace:
    extra = sorted(str(key) for key in raw if key != "param_list")
    if extra:
        raise InputError(f"{source}: unknown top-level key(s) {', '.join(extra)}; a PaddleHub "
                         "hparam.yaml has only param_list")
    entries = raw["param_list"]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{source}: param_list must be a non-empty list of entries with name, "
                         "init_value, type, greater_than and lower_than")
    params: dict[str, Param] = {}
    initial: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise InputError(f"{source}: param_list[{index}]: expected a mapping with name, "
                             f"init_value, type, greater_than and lower_than, got {entry!r}")
        name = entry.get("name")
        _check_name(name, f"{source}: param_list[{index}]", params)
        where = f"{source}: {name}"
        unknown = sorted(str(key) for key in entry if key not in _PADDLEHUB_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: "
                             f"{', '.join(sorted(_PADDLEHUB_KEYS))})")
        kind = entry.get("type")
        if kind not in ("float", "int"):
            raise InputError(f"{where}: type must be int or float in a PaddleHub hparam.yaml, "
                             f"got {kind!r}")
        param = _numeric_param(name, kind, entry, where, ("greater_than", "lower_than"), {})
        if "init_value" not in entry:
            raise InputError(f"{where}: no init_value")
        value = _number(entry["init_value"], where, "init_value", whole=kind == "int")
        problem = param.problem(value)
        if problem:
            raise InputError(f"{where}: init_value {problem}")
        params[name], initial[name] = param, value
    return SearchSpace(tuple(params.values()), (initial,), source)


def _check_name(name: Any, where: str, seen: Mapping[str, Param]) -> None:
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a parameter name must be non-empty text, got {name!r}")
    if "/" in name:
        raise InputError(f"{where}: '/' is not allowed in a parameter name (Ray Tune reads it "
                         "as nesting)")
    if name in seen:
        raise InputError(f"{where}: parameter {name!r} is defined twice")


def _numeric_param(name: str, kind: ParamType, entry: Mapping[Any, Any], where: str,
                   bound_keys: tuple[str, str], when: dict[str, tuple[Choice, ...]]) -> Param:
    low_key, high_key = bound_keys
    whole = kind == "int"
    for key, side in ((low_key, "lower"), (high_key, "upper")):
        if entry.get(key) is None:
            raise InputError(f"{where}: no {key} ({side} bound)")
    low = _number(entry[low_key], where, low_key, whole)
    high = _number(entry[high_key], where, high_key, whole)
    if low >= high:
        raise InputError(f"{where}: {low_key} ({_text(low)}) must be below {high_key} "
                         f"({_text(high)}); a constant belongs in the config's fixed section")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise InputError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise InputError(f"{where}: log: true needs {low_key} > 0, got {_text(low)}")
    if log and whole and low < 1:
        raise InputError(f"{where}: log: true needs {low_key} >= 1 for an int parameter")
    step = entry.get("step")
    if step is not None:
        step = _number(step, where, "step", whole)
        if step <= 0:
            raise InputError(f"{where}: step must be positive, got {_text(step)}")
        if log:
            raise InputError(f"{where}: step cannot be combined with log: true")
        span = Decimal(str(high)) - Decimal(str(low))
        if span % Decimal(str(step)) != 0:
            raise InputError(f"{where}: {high_key} - {low_key} ({span}) is not a multiple of "
                             f"step ({_text(step)})")
    return Param(name, kind, low=low, high=high, step=step, log=log, when=when)


def _number(value: Any, where: str, key: str, whole: bool) -> float | int:
    """A bound as a number; text such as ``1e-5`` (YAML 1.1 reads it as a string) is accepted."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{where}: {key} must be a number, got {value!r}")
    if not whole:
        return float(value)
    if isinstance(value, Integral) or float(value).is_integer():
        return int(value)
    raise InputError(f"{where}: {key} must be a whole number for an int parameter, got {value!r}")


def _parse_choices(value: Any, where: str) -> tuple[Choice, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: choices must be a non-empty list such as [8, 16, 32], "
                         f"got {value!r}")
    for index, choice in enumerate(value):
        if choice is not None and not isinstance(choice, bool | int | float | str):
            raise InputError(f"{where}: choice {choice!r} is not a number, text, true/false "
                             "or null")
        if any(_same(choice, other) for other in value[:index]):
            raise InputError(f"{where}: choice {choice!r} is listed twice")
    return tuple(value)


def _parse_when(value: Any, name: str, where: str, earlier: Mapping[str, Param],
                names: list[Any]) -> dict[str, tuple[Choice, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise InputError(f"{where}: when must map parameters defined above to their allowed "
                         f"values, such as {{lr_schedule: stlr}}; got {value!r}")
    when: dict[str, tuple[Choice, ...]] = {}
    for key, allowed in value.items():
        if key == name:
            raise InputError(f"{where}: when names the parameter itself")
        if key not in earlier:
            if key in names:
                raise InputError(f"{where}: when names {key}, which is defined below it; a "
                                 "condition may only name a parameter defined above it")
            raise InputError(f"{where}: when names unknown parameter {key!r}")
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise InputError(f"{where}: when: {key}: the list of allowed values is empty")
        for item in values:
            problem = earlier[key].problem(item)
            if problem:
                raise InputError(f"{where}: when: {key} can never be {item!r}: {problem}")
        when[key] = tuple(values)
    return when
