"""autoft from Python: what the CLI does, as functions that return typed results.

The ``autoft`` command is a thin layer over these; a notebook calls them directly. A config is
a path to a YAML file, a mapping of the same keys (relative paths resolved against the current
folder) or a loaded :class:`~autoft.core.config.Config`.

Example::

    import autoft

    result = autoft.search("examples/sst2_minilm.yaml", num_samples=4)
    print(result.best.score, result.best.hparams)
    best = autoft.export(result.experiment_dir)            # best_config.yaml
    trained = autoft.train(best)                           # the final model, logged to MLflow
    print(trained.metrics, trained.model_dir)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autoft.core.config import Config, config_from_mapping, load_config
from autoft.core.errors import InputError
from autoft.core.files import write_text_atomic
from autoft.core.space import SearchSpace
from autoft.tracking.store import check_store
from autoft.tracking.writer import MlflowWriter
from autoft.tuning.algorithms import describe_strategy
from autoft.tuning.best_model import export_model as copy_kept_model
from autoft.tuning.driver import SearchInterrupted, SearchResult, plan_search, run_search
from autoft.tuning.embedded_ray import embedded_ray_started_early
from autoft.tuning.experiment import check_new_experiment, resumable_config
from autoft.tuning.export import Format, export_best
from autoft.tuning.packing import describe_auto
from autoft.tuning.predict import PredictResult
from autoft.tuning.predict import predict as predict_with
from autoft.tuning.train import TrainResult
from autoft.tuning.train import train as train_config
from trainables import load_trainable
from trainables.backbones import prepare_models
from trainables.profile.locate import infer_columns, locate
from trainables.registry import check_config, check_inputs, resolve_task, unchecked_hparams

if TYPE_CHECKING:  # suggest's modules import scikit-learn (0.8 s), which a search never uses
    from autoft.tuning.suggest import Suggestion
    from trainables.profile.probe import Profile

ConfigLike = Config | Mapping[str, Any] | str | os.PathLike[str]

__all__ = ["ConfigLike", "PredictResult", "SearchInterrupted", "SearchResult", "Suggested",
           "SyncResult", "TrainResult", "Validation", "as_config", "export", "export_model",
           "predict", "resume", "search", "suggest", "sync", "train", "validate"]


@dataclass(frozen=True)
class Validation:
    """A config that passed every check: its space (None for a train config) and, for a search,
    how trials are chosen and stopped."""

    config: Config
    space: SearchSpace | None
    strategy: str | None
    #: What ``resources.gpu: auto`` chooses (None: the config sets a number).
    gpus: str | None = None
    #: Hyperparameters a user function receives unchecked (it declares no type for them).
    unchecked: tuple[str, ...] = ()
    #: Why the task is the one it is, when it was inferred from the data.
    task_reason: str | None = None


def as_config(config: ConfigLike, *, num_samples: int | None = None, address: str | None = None,
              tracking_uri: str | None = None, register: str | None = None) -> Config:
    """``config`` loaded and checked, with the CLI's overrides applied where given and its task
    inferred from the data where not given."""
    return _loaded(config, num_samples=num_samples, address=address,
                   tracking_uri=tracking_uri, register=register)[0]


def _loaded(config: ConfigLike, **overrides: Any) -> tuple[Config, str | None]:
    """:func:`as_config`, and why the task is the one it is when it was inferred."""
    return resolve_task(_overridden(config, **overrides))


def _overridden(config: ConfigLike, *, num_samples: int | None = None,
                address: str | None = None, tracking_uri: str | None = None,
                register: str | None = None) -> Config:
    """``config`` loaded with the CLI's overrides, before its task is resolved (which imports
    the trainable and may read the data)."""
    if isinstance(config, Mapping):
        loaded = config_from_mapping(dict(config), Path.cwd())
    elif isinstance(config, Config):
        loaded = config
    else:
        loaded = load_config(config)
    update: dict[str, Any] = {}
    if num_samples is not None:
        if num_samples < 1:
            raise InputError(f"num_samples: must be at least 1, got {num_samples}")
        update["search"] = loaded.search.model_copy(update={"num_samples": num_samples})
    if address:
        update["ray"] = loaded.ray.model_copy(update={"address": address})
    tracking = {key: value for key, value in (("uri", tracking_uri),
                                              ("registered_model", register)) if value}
    if tracking:
        update["tracking"] = loaded.tracking.model_copy(update=tracking)
    return loaded.model_copy(update=update)


def validate(config: ConfigLike, *, prepare_data: bool = False, **overrides: Any) -> Validation:
    """Every check a search (or, without a space, a train) makes before it writes anything;
    with ``prepare_data`` the dataset is read and prepared too."""
    loaded, task_reason = _loaded(config, **overrides)
    if loaded.space is None:
        check_config(loaded)
        check_store(loaded.tracking_uri)
        space, strategy = None, None
    else:
        space = plan_search(loaded).space
        check_new_experiment(loaded)
        strategy = describe_strategy(loaded, space)
    prepare = functools.cache(
        lambda: prepare_models(load_trainable(loaded.trainable), loaded, space))
    if prepare_data:
        prepare()
    else:
        check_inputs(loaded, space)
    gpus = (describe_auto(loaded, space, prepare)
            if space is not None and loaded.resources.gpu == "auto" else None)
    unchecked = unchecked_hparams(loaded, space.names if space is not None else ())
    return Validation(loaded, space, strategy, gpus, tuple(unchecked), task_reason)


def search(config: ConfigLike, *, verbose: bool = False, **overrides: Any) -> SearchResult:
    """Run a search to the end: trials, best trial, MLflow parent run, best config file.

    ``overrides``: ``num_samples``, ``address`` (a Ray cluster) and ``tracking_uri``;
    ``verbose`` shows Ray's own progress tables. Ctrl-C raises
    :class:`~autoft.tuning.driver.SearchInterrupted` (a ``KeyboardInterrupt``).
    """
    loaded = _overridden(config, **overrides)
    with embedded_ray_started_early(loaded.ray.address):
        return run_search(resolve_task(loaded)[0], verbose=verbose)


def resume(experiment_dir: str | os.PathLike[str], *, verbose: bool = False) -> SearchResult:
    """Continue an interrupted search in ``experiment_dir`` to its full ``num_samples``; a
    finished one is only summarised (``already_finished``)."""
    config = resumable_config(Path(experiment_dir))
    with embedded_ray_started_early(config.ray.address):
        return run_search(config, resume=True, verbose=verbose)


@dataclass(frozen=True)
class SyncResult:
    """What ``sync`` sent from a search's tracking spool, and what is still there."""

    sent: int
    unsent: int


def sync(experiment_dir: str | os.PathLike[str], timeout_s: float = 120.0) -> SyncResult:
    """Send what the search's tracking spool still holds to its MLflow store, re-running
    nothing; waits up to ``timeout_s`` for the store."""
    if timeout_s < 0:
        raise InputError(f"--timeout: must be at least 0 seconds, got {timeout_s:g}")
    config = resumable_config(Path(experiment_dir))
    check_store(config.tracking_uri)
    writer = MlflowWriter(config.tracking_uri, config.experiment_name, config.experiment_dir)
    waiting = writer.unsent()
    writer.close(timeout_s)
    return SyncResult(sent=waiting - writer.unsent(), unsent=writer.unsent())


def export(experiment_dir: str | os.PathLike[str], fmt: Format = "yaml",
           output: str | os.PathLike[str] | None = None) -> Path:
    """Write the search's best trial as a config that :func:`train` runs; returns its path."""
    return export_best(Path(experiment_dir), fmt, Path(output) if output else None)


def export_model(experiment_dir: str | os.PathLike[str],
                 output: str | os.PathLike[str] | None = None) -> Path:
    """Copy the model a search kept (``search.keep_best_model``) to ``output`` (default:
    ``storage/<name>-model`` beside the experiment folder, where ``train`` saves); its path."""
    folder = Path(experiment_dir)
    return copy_kept_model(folder, Path(output) if output else
                           folder.with_name(f"{folder.name}-model"))


def train(config: ConfigLike, output_dir: str | os.PathLike[str] | None = None,
          **overrides: Any) -> TrainResult:
    """One fine-tune with the config's ``fixed`` hyperparameters, logged to MLflow, model saved."""
    return train_config(as_config(config, **overrides), Path(output_dir) if output_dir else None)


def predict(model_dir: str | os.PathLike[str], data: str | os.PathLike[str],
            output: str | os.PathLike[str] | None = None) -> PredictResult:
    """Run a model folder ``autoft train`` wrote on ``data``; write the predictions (CSV or
    JSONL) to ``output`` (default ``predictions.csv``)."""
    return predict_with(Path(model_dir), Path(data), Path(output) if output else None)


@dataclass(frozen=True)
class Suggested:
    """What :func:`suggest` measured, what it chose, and the config it wrote."""

    profile: Profile
    suggestion: Suggestion
    #: The config as YAML, comments included; it loads as a search config.
    text: str
    #: Where it was written (None: not written).
    path: Path | None
    config: Config


def suggest(data: str | os.PathLike[str], model: str, *, trainable: str | None = None,
            pretrained_file: str | os.PathLike[str] | None = None,
            eval_data: str | os.PathLike[str] | None = None, fmt: str | None = None,
            text_column: int | str | None = None, label_column: int | str | None = None,
            text_pair_column: int | str | None = None, max_train_samples: int | None = None,
            name: str | None = None, output: str | os.PathLike[str] | None = None) -> Suggested:
    """Measure ``data`` for ``model`` and write a search config for its quadrant.

    ``data`` is a dataset folder with its splits (``train.tsv`` + ``dev.tsv``, ``train/`` +
    ``val/``) or the training split; the columns of a text table are inferred unless given.
    The config is written to ``output`` when given (relative paths against its folder).
    """
    target = Path(output) if output else None
    if target is not None and (target.is_dir() or target.parent.is_file()):
        raise InputError(f"-o: {target} cannot be written: "
                         f"{'it is a folder' if target.is_dir() else 'its folder is a file'}")
    located = locate(Path(data), Path(eval_data) if eval_data else None, fmt)
    kind = located.trainable
    if trainable is not None and trainable != kind:
        raise InputError(f"--trainable {trainable}: {located.train} is "
                         f"{'an ImageFolder' if kind == 'image' else 'a text table'}")
    given = {"text_column": text_column, "label_column": label_column}
    columns = {} if kind == "image" else {
        **(infer_columns(located) if None in given.values() else {}),
        **{k: v for k, v in given.items() if v is not None}}
    if text_pair_column is not None:
        columns["text_pair_column"] = text_pair_column
    section = {"train": str(located.train), "eval": str(located.eval) if located.eval else None,
               "format": located.format, **columns, "max_train_samples": max_train_samples,
               "label_names": str(located.label_names) if located.label_names else None}
    stem = Path(data).resolve()
    name = name or f"{stem.stem if stem.is_file() else stem.name}-suggested"
    raw = {"name": name, "trainable": kind, "model": model, "data": section,
           "pretrained_file": str(pretrained_file) if pretrained_file else None}
    measured, task_why = resolve_task(config_from_mapping(raw, Path.cwd(), "suggest"))
    from autoft.tuning.suggest import render
    from autoft.tuning.suggest import suggest as suggest_for
    from trainables.profile.probe import measure

    profile = measure(measured, task_why or "")
    suggestion = suggest_for(profile)
    base = target.parent if target else Path.cwd()
    text = render(profile, suggestion, name=name, model=model, data=section, base=base,
                  pretrained_file=str(pretrained_file) if pretrained_file else None)
    config = config_from_mapping(yaml.safe_load(text), base, str(target or "suggested config"))
    if target is not None:
        write_text_atomic(target, text)
    return Suggested(profile=profile, suggestion=suggestion, text=text, path=target,
                     config=config)
