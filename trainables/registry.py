"""The registry of trainables: the built-in ones by name, and user functions by import path.

Modules are imported only when asked for, so a trainable's heavy libraries load only where it
runs. :data:`BUILTIN` is the one list of built-in trainables; the config, the hyperparameter
checks and the CLI ask it rather than naming ``text`` and ``image`` themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables.api import Reporter, Trainable
from trainables.hparams import check_hparam_names, parse_hparams


@dataclass(frozen=True)
class Builtin:
    """A built-in trainable: its module and what it needs of a config."""

    module: str
    #: Reads ``data`` with a ``model`` and takes the hyperparameters of :mod:`trainables.hparams`.
    fine_tunes: bool


BUILTIN: dict[str, Builtin] = {
    "text": Builtin("trainables.text", fine_tunes=True),
    "image": Builtin("trainables.image", fine_tunes=True),
    "script": Builtin("trainables.script", fine_tunes=False),
}

UserFunction = Callable[[dict[str, Any], Reporter], "dict[str, float] | None"]


@dataclass(frozen=True)
class FunctionTrainable:
    """A user function as a trainable: nothing to prepare; ``fit`` calls the function."""

    function: UserFunction

    def prepare(self, config: Config) -> None:
        return None

    def fit(self, config: Config, prepared: Any, hparams: dict[str, Any],
            reporter: Reporter) -> dict[str, float]:
        return dict(self.function(hparams, reporter) or {})


def _import(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"trainable {what!r}: cannot import {module}: {exc}") from None


def load_trainable(name: str) -> Trainable:
    """The trainable called ``name``: ``text``, ``image``, ``script`` or ``module:function``."""
    if name in BUILTIN:
        return _import(BUILTIN[name].module, name)
    module_name, sep, function_name = name.partition(":")
    if not sep or not module_name or not function_name:
        raise InputError(f"trainable {name!r}: expected {', '.join(BUILTIN)} or "
                         "'package.module:function'")
    function = getattr(_import(module_name, name), function_name, None)
    if not callable(function):
        raise InputError(f"trainable {name!r}: {module_name} has no function {function_name!r}")
    return FunctionTrainable(function)


def check_config(config: Config, searched: Iterable[str] = (),
                 space_source: str | None = None) -> None:
    """Refuse a config that its trainable cannot run, before anything is written or started.

    A built-in fine-tune needs ``data`` and ``model``, and every name in ``fixed`` and in the
    ``searched`` space (read from ``space_source``) must be one of its hyperparameters, every
    ``fixed`` value in range; ``script`` needs its ``script`` section. A user function is only
    checked for importability.
    """
    where = str(config.source or "config")
    builtin = BUILTIN.get(config.trainable)
    if builtin is None:
        try:
            load_trainable(config.trainable)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        return
    if builtin.fine_tunes:
        for key in ("data", "model"):
            if not getattr(config, key):
                raise InputError(f"{where}: {key}: required for trainable {config.trainable!r}")
        check_hparam_names(searched, space_source or f"{where}: space")
        parse_hparams(config.fixed, config.trainable, f"{where}: fixed")
    elif config.script is None:
        raise InputError(f"{where}: script: required for trainable {config.trainable!r}")


def typed_hparams(config: Config) -> bool:
    """Whether the config's trainable takes :mod:`trainables.hparams`' typed hyperparameters."""
    builtin = BUILTIN.get(config.trainable)
    return builtin is not None and builtin.fine_tunes
