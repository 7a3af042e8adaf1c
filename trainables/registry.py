"""The registry of trainables: the built-in ones by name, and user functions by import path.

Modules are imported only when asked for, so a trainable's heavy libraries load only where it
runs. :data:`trainables.builtins.BUILTIN` is the one list of built-in trainables; the config,
the hyperparameter checks and the CLI ask it rather than naming ``text`` and ``image``
themselves.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from autoft.core.config import Config
from autoft.core.errors import InputError, validation_message
from autoft.core.space import SearchSpace
from trainables.api import Reporter, Trainable, TrialFailed
from trainables.backbones import MODEL, model_choices, with_model
from trainables.builtins import BUILTIN
from trainables.hparams import (
    DRIVER_HPARAMS,
    check_driver_hparams,
    check_hparam_names,
    parse_hparams,
)

UserFunction = Callable[[Any, Reporter], "dict[str, float] | None"]


@dataclass(frozen=True)
class FunctionTrainable:
    """A user function as a trainable: nothing to prepare; ``fit`` calls the function.

    A function whose first parameter is annotated with a pydantic model declares its
    hyperparameters: each trial's are validated by that model and the function receives the
    model instance. Otherwise it receives the plain mapping, as given::

        class Params(BaseModel):
            learning_rate: float = Field(gt=0)
            num_epochs: int = 3

        def fit(hparams: Params, reporter: Reporter) -> dict[str, float]: ...
    """

    function: UserFunction

    @property
    def declared(self) -> type[BaseModel] | None:
        """The pydantic model of the function's hyperparameters, if it declares one."""
        return declared_model(self.function)

    def prepare(self, config: Config) -> None:
        return None

    def fit(self, config: Config, prepared: Any, hparams: dict[str, Any],
            reporter: Reporter) -> dict[str, float]:
        declared = self.declared
        if declared is None:
            return dict(self.function(hparams, reporter) or {})
        try:
            values = declared.model_validate(hparams)
        except ValidationError as exc:
            raise TrialFailed(validation_message("hyperparameters", exc)) from None
        return dict(self.function(values, reporter) or {})


def declared_model(function: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model that ``function``'s first parameter is annotated with, else None."""
    try:
        first = next(iter(inspect.signature(function).parameters), None)
        hint = typing.get_type_hints(function).get(first) if first else None
    except (NameError, TypeError, ValueError):  # an annotation that does not resolve
        return None
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


def _check_declared(model: type[BaseModel], fixed: Mapping[str, Any], searched: Iterable[str],
                    where: str) -> None:
    """``fixed`` values by ``model``'s field rules; with ``extra="forbid"`` no name outside
    its fields, fixed or searched."""
    fields = model.model_fields
    if model.model_config.get("extra") == "forbid":
        unknown = sorted((set(fixed) | set(searched)) - set(fields))
        if unknown:
            raise InputError(f"{where}: unknown hyperparameter(s) {', '.join(unknown)} "
                             f"({model.__name__} declares: {', '.join(fields)})")
    given = create_model(f"{model.__name__}Fixed", **{
        name: (field.annotation, field) for name, field in fields.items() if name in fixed})
    try:
        given.model_validate({name: fixed[name] for name in fields if name in fixed})
    except ValidationError as exc:
        raise InputError(validation_message(f"{where}: fixed", exc)) from None


def unchecked_hparams(config: Config, searched: Iterable[str] = ()) -> list[str]:
    """The hyperparameters (fixed or searched) handed to a user function as given: neither read
    by autoft (:data:`DRIVER_HPARAMS`) nor declared by the function's model."""
    if config.trainable in BUILTIN:
        return []
    declared = declared_model(_user_function(config.trainable))
    known = set(DRIVER_HPARAMS) | set(declared.model_fields if declared else ())
    return sorted((set(config.fixed) | set(searched)) - known)


def _import(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"trainable {what!r}: cannot import {module}: {exc}") from None


def load_trainable(name: str) -> Trainable:
    """The trainable called ``name``: ``text``, ``image``, ``script`` or ``module:function``."""
    if name in BUILTIN:
        return _import(BUILTIN[name].module, name)
    return FunctionTrainable(_user_function(name))


def _user_function(name: str) -> UserFunction:
    """The function that ``package.module:function`` names."""
    module_name, sep, function_name = name.partition(":")
    if not sep or not module_name or not function_name:
        raise InputError(f"trainable {name!r}: expected {', '.join(BUILTIN)} or "
                         "'package.module:function'")
    function = getattr(_import(module_name, name), function_name, None)
    if not callable(function):
        raise InputError(f"trainable {name!r}: {module_name} has no function {function_name!r}")
    return function


def check_config(config: Config, space: SearchSpace | None = None) -> None:
    """Refuse a config that its trainable cannot run, before anything is written or started.

    A built-in fine-tune needs ``data`` and ``model``, and every name in ``fixed`` and in the
    ``space`` must be one of its hyperparameters, every ``fixed`` value and every value the
    space can give in range (each choice, both ends of a range: :attr:`SearchSpace.extremes`);
    ``script`` needs its ``script`` section. A user function must import; the ``fixed`` values
    autoft reads (:data:`DRIVER_HPARAMS`) and those the function declares
    (:func:`declared_model`) must keep their rules.
    """
    where = str(config.source or "config")
    searched = space.names if space is not None else []
    check_driver_hparams(config.fixed, f"{where}: fixed")
    builtin = BUILTIN.get(config.trainable)
    if config.resources.workers > 1 and (builtin is None or not builtin.fine_tunes):
        raise InputError(f"{where}: resources.workers: {config.resources.workers} data-parallel "
                         "workers need a built-in fine-tune (trainable: text or image); "
                         f"trainable {config.trainable!r} trains in one process")
    if builtin is None:
        try:
            declared = declared_model(_user_function(config.trainable))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if declared is not None:
            _check_declared(declared, config.fixed, searched, where)
        return
    if config.task is not None and config.task not in builtin.tasks:
        raise InputError(f"{where}: task: trainable {config.trainable!r} does not learn "
                         f"{config.task} (it learns: {', '.join(builtin.tasks) or 'no task'})")
    if builtin.fine_tunes:
        for key in ("data", "model"):
            if not getattr(config, key):
                raise InputError(f"{where}: {key}: required for trainable {config.trainable!r}")
        model_choices(config, space)  # a searched model is a categorical of models
        check_hparam_names([name for name in searched if name != MODEL],
                           space.source if space is not None else f"{where}: space")
        parse_hparams(config.fixed, config.trainable, f"{where}: fixed")
        for name, values in (space.extremes if space is not None else {}).items():
            for value in values if name != MODEL else ():  # "space.yaml: batch_size: ... -4"
                parse_hparams({name: value}, config.trainable, space.source)  # type: ignore[union-attr]
    elif config.script is None:
        raise InputError(f"{where}: script: required for trainable {config.trainable!r}")


def check_inputs(config: Config, space: SearchSpace | None = None) -> None:
    """Refuse a model or data that a built-in fine-tune's ``prepare`` would refuse, without
    preparing them (no tokenising, no decoding): each model (the config's, or each choice of a
    searched ``model``) loads its config and tokenizer (text) or is a timm name with its weights
    (image), the data files parse with their columns and labels. ``validate`` runs this; a
    search finds the same in ``prepare``."""
    builtin = BUILTIN.get(config.trainable)
    if builtin is None or not builtin.fine_tunes:
        return
    module = _import(builtin.module, config.trainable)
    for model in model_choices(config, space):
        module.check_model(with_model(config, model))
    module.check_data(config)


def resolve_task(config: Config) -> tuple[Config, str | None]:
    """``config`` with its task: the one given, else the one its built-in trainable infers from
    the data (with its default metric unless a metric was given); also why it was inferred
    (None: given, or a trainable that has no task)."""
    builtin = BUILTIN.get(config.trainable)
    if config.task is not None or builtin is None or not builtin.fine_tunes or not config.data:
        return config, None
    check_config(config)  # what is wrong with the config itself first, then with its data
    task, why = _import(builtin.module, config.trainable).infer_task(config.data)
    return config.with_task(task), why


def typed_hparams(config: Config) -> bool:
    """Whether the config's trainable takes :mod:`trainables.hparams`' typed hyperparameters."""
    builtin = BUILTIN.get(config.trainable)
    return builtin is not None and builtin.fine_tunes
