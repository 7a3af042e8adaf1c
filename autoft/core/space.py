"""Search spaces: which hyperparameters a search varies, over which values, and when.

Two file formats (:mod:`autoft.core.space_files`) load into one model, :class:`SearchSpace`:

* autoft's own YAML (design.md "Search space files"), a mapping of parameter names::

      lr_schedule:   {type: categorical, choices: [constant, warmup_linear, stlr]}
      cut_frac:      {type: float, low: 0.0, high: 0.2, when: {lr_schedule: stlr}}
      learning_rate: {type: float, low: 1.0e-5, high: 2.0e-4, log: true}

  ``when`` makes a parameter conditional: it exists only in points where every named parameter
  (defined *above* it, so conditions can never form a cycle) has one of the listed values.

* PaddleHub's ``hparam.yaml`` (recognised by its top-level ``param_list``): int and float
  parameters bounded by ``greater_than`` and ``lower_than``, whose ``init_value``s become the first
  point to evaluate (:attr:`SearchSpace.initial_points`).

The schema is pydantic: one model per parameter type (:class:`FloatParam`, :class:`IntParam`,
:class:`CategoricalParam`, picked by ``type`` through the union :data:`Param`), each rule a
validator; :class:`SearchSpace` checks what spans parameters (unique names, conditions on earlier
parameters, initial points). Every problem in a space is an :class:`~autoft.core.errors.InputError`
of one line naming the source, the parameter and the problem.

This module is the schema, pure Python: Optuna's ``GridSampler`` (:meth:`SearchSpace.grid`),
Nevergrad's snapped first points (:meth:`SearchSpace.clip`), warm-start checks
(:meth:`check_point`) and ``autoft validate`` (:meth:`describe`) need nothing else. The files
are read by :mod:`autoft.core.space_files`; the conversions to Optuna (which also draws every
random point, PBT's population included), Ray Tune and Nevergrad live in
:mod:`autoft.tuning.space_adapters`, so the core imports none of them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from decimal import Decimal
from numbers import Integral, Real
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autoft.core.errors import InputError

Choice = None | bool | int | float | str

_GRID_TOLERANCE = 1e-8  # Optuna's own tolerance for "on the step grid"
MISSING_BOUND = {"low": "no {key} (lower bound)", "high": "no {key} (upper bound)",
            "choices": "choices must be a non-empty list such as [8, 16, 32], got None"}


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind: ``True`` does not match the choice ``1``."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _text(value: Any) -> str:
    """A value as a table cell: numbers compactly (``1e-05``), everything else as written."""
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def _not_a_choice(value: Any) -> bool:
    return value is not None and not isinstance(value, bool | int | float | str)


def _key(info: ValidationInfo, field: str) -> str:
    """The name the source gives ``field``: a PaddleHub file calls ``low`` ``greater_than``."""
    return (info.context or {}).get(field, field)


def parse_number(value: Any, key: str, whole: bool) -> float | int:
    """A number from a file; text such as ``1e-5`` (YAML 1.1 reads it as a string) is accepted.

    >>> parse_number("1e-5", "low", whole=False), parse_number(4.0, "high", whole=True)
    (1e-05, 4)
    """
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not whole:
        return float(value)
    if isinstance(value, Integral) or float(value).is_integer():
        return int(value)
    raise ValueError(f"{key} must be a whole number for an int parameter, got {value!r}")


class _Param(BaseModel):
    """What every parameter has: a name and an optional condition ``when``.

    ``when`` maps parameters to their allowed values; the parameter is *active* (sampled, passed
    to the trainable) only in points where all of them hold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    when: dict[str, tuple[Choice, ...]] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a parameter name must be non-empty text, got {name!r}")
        if "/" in name:
            raise ValueError("'/' is not allowed in a parameter name (Ray Tune reads it as "
                             "nesting)")
        return name

    @field_validator("when", mode="before")
    @classmethod
    def _check_when(cls, when: Any, info: ValidationInfo) -> dict[str, tuple[Choice, ...]]:
        """One tuple of allowed values per key; whether the keys name earlier parameters and the
        values are theirs is the space's check (:class:`SearchSpace`)."""
        if when is None:
            return {}
        if not isinstance(when, Mapping) or not when:
            raise ValueError("when must map parameters defined above to their allowed values, "
                             f"such as {{lr_schedule: stlr}}; got {when!r}")
        allowed: dict[str, tuple[Choice, ...]] = {}
        for key, values in when.items():
            if key == info.data.get("name"):
                raise ValueError("when names the parameter itself")
            if not isinstance(key, str):
                raise ValueError(f"when names unknown parameter {key!r}")
            allowed[key] = tuple(values) if isinstance(values, list | tuple) else (values,)
            if not allowed[key]:
                raise ValueError(f"when: {key}: the list of allowed values is empty")
            for value in allowed[key]:
                if _not_a_choice(value):
                    raise ValueError(f"when: {key} can never be {value!r}: not a number, text, "
                                     "true/false or null")
        return allowed

    def is_active(self, point: Mapping[str, Any]) -> bool:
        """Whether every condition of ``when`` holds in ``point`` (always, without ``when``).

        >>> IntParam(name="x", low=0, high=3, when={"a": (1, 2), "b": ("y",)}).is_active(
        ...     {"a": 2, "b": "y"})
        True
        """
        return all(key in point and any(_same(point[key], option) for option in allowed)
                   for key, allowed in self.when.items())

    def condition(self) -> str:
        """``when`` as text, e.g. ``lr_schedule = stlr``; empty for an unconditional parameter.

        >>> CategoricalParam(name="x", choices=(1,), when={"a": ("u", "v")}).condition()
        'a in {u, v}'
        """
        return " and ".join(
            f"{key} = {_text(allowed[0])}" if len(allowed) == 1
            else f"{key} in {{{', '.join(_text(value) for value in allowed)}}}"
            for key, allowed in self.when.items())


class CategoricalParam(_Param):
    """One of a list of values: numbers, text, true/false or null.

    >>> CategoricalParam(name="batch_size", choices=(16, 32)).problem(24)
    '24 is not one of the choices [16, 32]'
    """

    type: Literal["categorical"] = "categorical"
    choices: tuple[Choice, ...]

    @field_validator("choices", mode="before")
    @classmethod
    def _check_choices(cls, choices: Any) -> tuple[Choice, ...]:
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"choices must be a non-empty list such as [8, 16, 32], "
                             f"got {choices!r}")
        for index, choice in enumerate(choices):
            if _not_a_choice(choice):
                raise ValueError(f"choice {choice!r} is not a number, text, true/false or null")
            if any(_same(choice, other) for other in choices[:index]):
                raise ValueError(f"choice {choice!r} is listed twice")
        return tuple(choices)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not one of the choices, or None when it is."""
        if any(_same(value, choice) for choice in self.choices):
            return None
        return f"{value!r} is not one of the choices {list(self.choices)}"

    def values(self) -> list[Choice]:
        """Every value, in order."""
        return list(self.choices)

    def range_text(self) -> str:
        """The values as text: ``{a, b}``."""
        return "{" + ", ".join(_text(choice) for choice in self.choices) + "}"



class _NumericParam(_Param):
    """A number in ``[low, high]`` (inclusive), optionally on the grid ``low + k·step`` or
    sampled on a log scale (not both)."""

    whole: ClassVar[bool] = False

    low: float
    high: float
    step: float | None = None
    log: bool = False

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _checkparse_number(cls, value: Any, info: ValidationInfo) -> float | int | None:
        field = info.field_name or ""
        if value is None:
            if field == "step":
                return None
            raise ValueError(MISSING_BOUND[field].format(key=_key(info, field)))
        return parse_number(value, _key(info, field), cls.whole)

    @field_validator("step")
    @classmethod
    def _check_step(cls, step: float | None) -> float | None:
        if step is not None and step <= 0:
            raise ValueError(f"step must be positive, got {_text(step)}")
        return step

    @field_validator("log", mode="before")
    @classmethod
    def _check_log(cls, log: Any) -> bool:
        if not isinstance(log, bool):
            raise ValueError(f"log must be true or false, got {log!r}")
        return log

    @model_validator(mode="after")
    def _check_range(self, info: ValidationInfo) -> Self:
        low_key, high_key = _key(info, "low"), _key(info, "high")
        if self.low >= self.high:
            raise ValueError(f"{low_key} ({_text(self.low)}) must be below {high_key} "
                             f"({_text(self.high)}); a constant belongs in the config's fixed "
                             "section")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs {low_key} > 0, got {_text(self.low)}")
        if self.step is not None:
            if self.log:
                raise ValueError("step cannot be combined with log: true")
            span = Decimal(str(self.high)) - Decimal(str(self.low))
            if span % Decimal(str(self.step)) != 0:
                raise ValueError(f"{high_key} - {low_key} ({span}) is not a multiple of step "
                                 f"({_text(self.step)})")
        return self

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a value of this parameter, or None when it is.

        >>> FloatParam(name="cut_frac", low=0.0, high=0.2).problem(0.5)
        '0.5 is outside [0, 0.2]'
        >>> IntParam(name="blocks", low=0, high=4, step=2).problem(3)
        '3 is not 0 plus a multiple of 2'
        """
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return f"{value!r} is not a number"
        if self.whole and not isinstance(value, Integral):
            return f"{value!r} is not a whole number"
        if not self.low <= value <= self.high:
            return f"{value!r} is outside [{_text(self.low)}, {_text(self.high)}]"
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) >= _GRID_TOLERANCE:
                return f"{value!r} is not {_text(self.low)} plus a multiple of {_text(self.step)}"
        return None

    def range_text(self) -> str:
        """The values as text: ``[0, 5]`` or ``[0, 0.2] step 0.05``."""
        text = f"[{_text(self.low)}, {_text(self.high)}]"
        return text if self.step is None else f"{text} step {_text(self.step)}"

    def clip(self, value: float) -> float | int:
        """A number pulled into ``[low, high]``, onto the step grid, whole for an int.

        >>> FloatParam(name="x", low=0.0, high=0.3, step=0.1).clip(0.36)
        0.3
        """
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            value = self.grid_value(round((value - self.low) / self.step))
        return int(round(value)) if self.whole else value

    def grid_size(self) -> int:
        """How many steps fit between ``low`` and ``high`` (needs ``step``)."""
        return int((Decimal(str(self.high)) - Decimal(str(self.low))) / Decimal(str(self.step)))

    def grid_value(self, k: int) -> float | int:
        """``low + k·step``, computed in decimal so that 0.1 + 2·0.1 is 0.3 (needs ``step``)."""
        value = Decimal(str(self.low)) + k * Decimal(str(self.step))
        return int(value) if self.whole else float(value)


class FloatParam(_NumericParam):
    """A real number; with ``step`` only the grid ``low + k·step``."""

    type: Literal["float"] = "float"

    def values(self) -> list[float] | None:
        """Every grid value in order; None without ``step`` (infinitely many)."""
        if self.step is None:
            return None
        return [float(self.grid_value(k)) for k in range(self.grid_size() + 1)]



class IntParam(_NumericParam):
    """A whole number; with ``step`` only ``low``, ``low + step``, ... ``high``."""

    whole: ClassVar[bool] = True
    type: Literal["int"] = "int"
    low: int
    high: int
    step: int | None = None

    def values(self) -> list[int]:
        """Every value, in order."""
        return list(range(self.low, self.high + 1, self.step or 1))

#: One hyperparameter of a space, of the model its ``type`` names.
Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM: TypeAdapter[FloatParam | IntParam | CategoricalParam] = TypeAdapter(Param)
PARAM_MODELS = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


class SearchSpace(BaseModel):
    """The parameters of a search, in file order (a condition names only earlier parameters).

    ``initial_points`` are points to evaluate first (PaddleHub's ``init_value``s; empty for
    autoft files); ``source`` names where the space came from in error messages.

    >>> from autoft.core.space_files import load_space
    >>> space = load_space({"lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
    ...                     "cut_frac": {"type": "float", "low": 0.0, "high": 0.2,
    ...                                  "when": {"lr_schedule": "stlr"}}})
    >>> space.names
    ['lr_schedule', 'cut_frac']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: tuple[Param, ...] = Field(min_length=1)
    initial_points: tuple[dict[str, Any], ...] = ()
    source: str = "space"

    @model_validator(mode="after")
    def _check_links(self) -> Self:
        """Names are unique, a condition names an earlier parameter and values it can take, and
        the initial points are points of the space."""
        earlier: dict[str, FloatParam | IntParam | CategoricalParam] = {}
        for param in self.params:
            if param.name in earlier:
                raise ValueError(f"parameter {param.name!r} is defined twice")
            for key, allowed in param.when.items():
                if key not in earlier:
                    if key in self.names:
                        raise ValueError(f"{param.name}: when names {key}, which is defined "
                                         "below it; a condition may only name a parameter "
                                         "defined above it")
                    raise ValueError(f"{param.name}: when names unknown parameter {key!r}")
                for item in allowed:
                    problem = earlier[key].problem(item)
                    if problem:
                        raise ValueError(f"{param.name}: when: {key} can never be {item!r}: "
                                         f"{problem}")
            earlier[param.name] = param
        for index, point in enumerate(self.initial_points, start=1):
            self.check_point(point, f"initial point {index}")
        return self

    @property
    def names(self) -> list[str]:
        """The parameter names, in order."""
        return [param.name for param in self.params]

    @property
    def extremes(self) -> dict[str, list[Any]]:
        """Per parameter the values that decide whether all of its values keep a rule that
        bounds them (at least, at most): every choice, or both ends of a range.

        >>> from autoft.core.space_files import load_space
        >>> load_space({"batch_size": {"type": "categorical", "choices": [-4, 16]},
        ...             "cut_frac": {"type": "float", "low": 0.0, "high": 1.5}}).extremes
        {'batch_size': [-4, 16], 'cut_frac': [0.0, 1.5]}
        """
        return {param.name: list(param.choices) if isinstance(param, CategoricalParam)
                else [param.low, param.high] for param in self.params}

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

    def clip(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``point`` whose numeric parameters lie in range and on their step grid.

        Keys that are not numeric parameters of the space pass through unchanged; PBT takes this
        as ``custom_explore_fn``, since it multiplies floats by factors that can leave the range.
        """
        clipped = dict(point)
        for param in self.params:
            if isinstance(param, _NumericParam) and param.name in clipped:
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
        return grid  # type: ignore[return-value]

    def describe(self) -> str:
        """A table of the parameters (name, type, values, log, condition) for humans.

        >>> from autoft.core.space_files import load_space
        >>> print(load_space({"lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-3,
        ...                          "log": True}}).describe())
        name  type   values          log  when
        lr    float  [1e-05, 0.001]  yes  -
        """
        rows = [["name", "type", "values", "log", "when"]]
        rows += [[param.name, param.type, param.range_text(),
                  "yes" if isinstance(param, _NumericParam) and param.log else "no",
                  param.condition() or "-"] for param in self.params]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                           row[-1]]) for row in rows]
        lines += [f"initial point {index}: "
                  + ", ".join(f"{name}={_text(value)}" for name, value in point.items())
                  for index, point in enumerate(self.initial_points, start=1)]
        return "\n".join(lines)
