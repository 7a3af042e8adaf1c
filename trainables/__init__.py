"""The PyTorch trainables that every trial runs, found by name with :func:`load_trainable`.

* ``text``: transformers sequence classification (:mod:`trainables.text`);
* ``image``: timm image classification (:mod:`trainables.image`);
* ``script``: any program that prints its score (:mod:`trainables.script`);
* ``"package.module:function"``: a user function ``fn(hparams, reporter) -> dict | None``.

Modules are imported only when asked for, so a trainable's heavy libraries load only where it
runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoft.config import Config
from autoft.errors import InputError
from trainables.api import Reporter, Trainable

BUILTIN = {"text": "trainables.text", "image": "trainables.image", "script": "trainables.script"}

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
        return _import(BUILTIN[name], name)
    module_name, sep, function_name = name.partition(":")
    if not sep or not module_name or not function_name:
        raise InputError(f"trainable {name!r}: expected text, image, script or "
                         "'package.module:function'")
    function = getattr(_import(module_name, name), function_name, None)
    if not callable(function):
        raise InputError(f"trainable {name!r}: {module_name} has no function {function_name!r}")
    return FunctionTrainable(function)
