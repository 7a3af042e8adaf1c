"""The search space files: autoft's own YAML and PaddleHub's ``hparam.yaml``, read into one
:class:`~autoft.core.space.SearchSpace` (the formats are described in :mod:`autoft.core.space`).

Every problem in a file is an :class:`~autoft.core.errors.InputError` of one line naming the
source, the parameter and the problem: pydantic's complaints are reworded here
(:func:`_one_line`), PaddleHub's bound names (``greater_than``, ``lower_than``) included.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoft.core.config import read_yaml
from autoft.core.errors import InputError, validation_message
from autoft.core.space import (
    MISSING_BOUND,
    PARAM,
    PARAM_MODELS,
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    parse_number,
)

_PADDLEHUB_KEYS = frozenset({"name", "init_value", "type", "lower_than", "greater_than"})
_PADDLEHUB_BOUNDS = {"low": "greater_than", "high": "lower_than"}  # their names for our keys


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
    params = []
    for name, entry in raw.items():
        where = f"{source}: {name if isinstance(name, str) and name else repr(name)}"
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: expected a mapping such as {{type: float, low: 0.0, "
                             f"high: 1.0}}, got {entry!r}")
        if "name" in entry:  # the mapping's key names the parameter
            raise InputError(_unknown_keys(where, entry.get("type"), ["name"]))
        params.append(_param({**entry, "name": name}, where))
    return _space(params, (), source)


def _from_paddlehub(raw: Mapping[Any, Any], source: str) -> SearchSpace:
    extra = sorted(str(key) for key in raw if key != "param_list")
    if extra:
        raise InputError(f"{source}: unknown top-level key(s) {', '.join(extra)}; a PaddleHub "
                         "hparam.yaml has only param_list")
    entries = raw["param_list"]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{source}: param_list must be a non-empty list of entries with name, "
                         "init_value, type, greater_than and lower_than")
    params: dict[str, FloatParam | IntParam | CategoricalParam] = {}
    initial: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        at = f"{source}: param_list[{index}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{at}: expected a mapping with name, init_value, type, "
                             f"greater_than and lower_than, got {entry!r}")
        name = entry.get("name")
        if isinstance(name, str) and name in params:
            raise InputError(f"{at}: parameter {name!r} is defined twice")
        where = f"{source}: {name}" if isinstance(name, str) and name else at
        unknown = sorted(str(key) for key in entry if key not in _PADDLEHUB_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: "
                             f"{', '.join(sorted(_PADDLEHUB_KEYS))})")
        if entry.get("type") not in ("float", "int"):
            raise InputError(f"{where}: type must be int or float in a PaddleHub hparam.yaml, "
                             f"got {entry.get('type')!r}")
        fields = {"name": name, "type": entry["type"]}
        fields |= {ours: entry[theirs] for ours, theirs in _PADDLEHUB_BOUNDS.items()
                   if theirs in entry}
        param = _param(fields, where, _PADDLEHUB_BOUNDS)
        if "init_value" not in entry:
            raise InputError(f"{where}: no init_value")
        try:
            value = parse_number(entry["init_value"], "init_value",
                                 whole=isinstance(param, IntParam))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        problem = param.problem(value)
        if problem:
            raise InputError(f"{where}: init_value {problem}")
        params[param.name], initial[param.name] = param, value
    return _space(list(params.values()), (initial,), source)


def _param(fields: Mapping[str, Any], where: str,
           keys: Mapping[str, str] | None = None) -> FloatParam | IntParam | CategoricalParam:
    """Validate one parameter; ``keys`` renames fields in messages (PaddleHub's bounds)."""
    try:
        return PARAM.validate_python(fields, context=dict(keys or {}))
    except ValidationError as exc:
        raise InputError(_one_line(where, exc, keys or {})) from None


def _space(params: list[FloatParam | IntParam | CategoricalParam],
           initial: tuple[dict[str, Any], ...], source: str) -> SearchSpace:
    try:
        return SearchSpace(params=tuple(params), initial_points=initial, source=source)
    except ValidationError as exc:
        raise InputError(_one_line(source, exc, {})) from None


def _one_line(where: str, error: ValidationError, keys: Mapping[str, str]) -> str:
    """pydantic's complaint about a space as one line, ``where: problem``.

    Unknown keys come first (a misspelt ``lw`` also makes ``low`` missing); our validators'
    messages are used as they are; anything else is worded by pydantic.
    """
    problems = error.errors()
    first = problems[0]
    unknown = [str(p["loc"][-1]) for p in problems if p["type"] == "extra_forbidden"]
    if unknown:
        return _unknown_keys(where, first["loc"][0] if first["loc"] else None, unknown)
    if first["type"] == "value_error":
        return f"{where}: {first['ctx']['error']}"
    if first["type"] == "missing" and first["loc"][-1] in MISSING_BOUND:
        field = str(first["loc"][-1])
        return f"{where}: {MISSING_BOUND[field].format(key=keys.get(field, field))}"
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        got = first["input"].get("type") if isinstance(first["input"], Mapping) else None
        return f"{where}: type must be float, int or categorical, got {got!r}"
    return validation_message(where, error)


def _unknown_keys(where: str, kind: Any, unknown: list[str]) -> str:
    model = PARAM_MODELS.get(kind) if isinstance(kind, str) else None
    allowed = sorted(set(model.model_fields) - {"name"}) if model else []
    return (f"{where}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} parameter "
            f"(allowed: {', '.join(allowed)})")
