"""``autoft train CONFIG``: one fine-tune with the config's ``fixed`` hyperparameters, no search.

The run is one MLflow run (tag ``autoft.role=train``) in the config's experiment: the
hyperparameters as params (defaults filled in), ``train_loss``, ``eval_<metric>`` and ``lr`` per
epoch with step = epoch, and, for an exported config, the trial it retrains (``autoft.origin_*``
tags). Each epoch is also printed on the console. MLflow writes go through the project's
background :class:`~autoft.tracking.MlflowWriter` (spool under ``storage/<name>-train``), so a
tracking server that is down never stalls training; what it misses is replayed by the next run.
Once trained, the model is logged as an MLflow model of the run (:mod:`autoft.tracking.models`)
and, with ``tracking.registered_model: NAME`` (``--register NAME``), registered as a new version of
NAME, tagged with the search and the trial it came from.

The model is saved by the trainable's ``save_model`` in its library's own format, which that
library loads without autoft (text: a transformers ``save_pretrained`` folder with the tokenizer
and the label names, for ``AutoModelFor...from_pretrained``; image: timm's ``save_for_hf``
folder, for ``timm.create_model("local-dir:FOLDER", pretrained=True)``), plus the config that
made it (:data:`MODEL_CONFIG`), into ``output_dir``, by default ``storage/<name>-model``,
replacing an earlier one only once the new one is complete.

Example::

    result = autoft.train("examples/sst2_minilm.yaml")
    result.metrics["eval_accuracy"], result.model_dir, result.run_id
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoft.core.config import Config
from autoft.tracking import MlflowWriter
from autoft.tracking.models import log_model, origin_tags, register
from autoft.tracking.store import check_store
from autoft.tracking.tags import ROLE_TAG
from trainables import BUILTIN, TrialContext, load_trainable
from trainables.hparams import parse_hparams
from trainables.registry import check_config, resolve_task, typed_hparams

log = logging.getLogger(__name__)

RUN_KEY = "train"
#: The autoft config that trained a saved model, in its folder.
MODEL_CONFIG = "autoft.yaml"


@dataclass(frozen=True)
class TrainResult:
    """The MLflow run (None if the store never answered), final metrics, model folder, the
    MLflow model logged from it and its registered version (``NAME/VERSION``)."""

    run_id: str | None
    metrics: dict[str, float]
    model_dir: Path | None
    model_uri: str | None = None
    registered: str | None = None


class TrainReporter:
    """Logs each epoch to the MLflow run and prints it; keeps the last state for saving."""

    def __init__(self, writer: MlflowWriter, trial: TrialContext) -> None:
        self.writer = writer
        self.trial = trial
        self.state: dict[str, Any] | None = None

    def restore(self) -> dict[str, Any] | None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        epoch = int(metrics["epoch"])
        values = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        self.writer.log_metrics(RUN_KEY, values, step=epoch)
        print(f"epoch {epoch}: " + "  ".join(f"{k}={v:.4g}" for k, v in values.items()),
              flush=True)
        self.state = state


def save_model_folder(trainable: Any, prepared: Any, model_state: dict[str, Any],
                      made_by: Mapping[str, Any], model_dir: Path) -> Path:
    """Save the model (the trainable's ``save_model``) and the config that made it
    (:data:`MODEL_CONFIG`) into a fresh sibling folder, then swap it in: an old model is
    replaced only by a complete new one, and two trainings never share a half-written
    folder."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}."))
    try:
        trainable.save_model(prepared, model_state, partial)
        (partial / MODEL_CONFIG).write_text(yaml.safe_dump(dict(made_by), sort_keys=False),
                                            encoding="utf-8")
        if model_dir.exists():
            old = model_dir.with_name(f"{partial.name}.old")
            model_dir.rename(old)
            partial.rename(model_dir)
            shutil.rmtree(old)
        else:
            partial.rename(model_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return model_dir


def train(config: Config, output_dir: Path | None = None) -> TrainResult:
    """Fine-tune once with ``config.fixed``, log to MLflow, save the model; see the module doc."""
    config = resolve_task(config)[0]  # the saved autoft.yaml names it, for autoft predict
    check_config(config)
    check_store(config.tracking_uri)
    trainable = load_trainable(config.trainable)
    hparams = dict(config.fixed)
    params = (parse_hparams(hparams, config.trainable).model_dump() if typed_hparams(config)
              else hparams)
    prepared = trainable.prepare(config)
    saves = callable(getattr(trainable, "save_model", None))
    model_dir = Path(output_dir or config.storage / f"{config.name}-model") if saves else None

    writer = MlflowWriter(config.tracking_uri, config.experiment_name,
                          config.storage / f"{config.name}-train")
    tags = {ROLE_TAG: "train", "autoft.train_id": uuid.uuid4().hex}
    writer.create_run(RUN_KEY, run_name=f"{config.name}-train", tags=tags)
    writer.set_tags(RUN_KEY, {"autoft.trainable": config.trainable,
                              "autoft.model": config.model or "", **_origin(config)})
    writer.log_params(RUN_KEY, params)
    reporter = TrainReporter(writer, TrialContext(index=0, seed=int(params.get("seed", 0))))
    status = "FAILED"
    try:
        metrics = trainable.fit(config, prepared, hparams, reporter)
        if model_dir is not None and reporter.state is not None:
            save_model_folder(trainable, prepared, reporter.state["model"],
                              config.to_yaml_dict(), model_dir)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        writer.set_terminated(RUN_KEY, status)
        writer.close()
    run_id = writer.run_id(RUN_KEY, timeout=0)
    model_uri, registered = _publish(config, run_id, model_dir)
    return TrainResult(run_id=run_id, metrics=metrics, model_dir=model_dir, model_uri=model_uri,
                       registered=registered)


def _origin(config: Config) -> dict[str, str]:
    """The train run's tags naming the trial an exported config retrains."""
    if config.origin is None:
        return {}
    return {"autoft.origin_trial": config.origin.trial,
            "autoft.origin_trial_id": config.origin.trial_id,
            "autoft.origin_search_dir": str(config.origin.experiment_dir)}


def _publish(config: Config, run_id: str | None,
             model_dir: Path | None) -> tuple[str | None, str | None]:
    """Log the saved folder as an MLflow model of the run and register it when
    ``tracking.registered_model`` asks: its URI and ``NAME/VERSION`` (None where not done)."""
    flavor = BUILTIN[config.trainable].mlflow_flavor if config.trainable in BUILTIN else None
    if model_dir is None or flavor is None:
        return None, None
    if run_id is None:
        log.warning("the MLflow store did not answer: the model is saved in %s but not logged "
                    "as an MLflow model%s", model_dir,
                    " nor registered" if config.tracking.registered_model else "")
        return None, None
    pairs = config.data is not None and config.data.text_pair_column is not None
    model_uri = log_model(config.tracking_uri, run_id, model_dir, flavor, config.task or "",
                          pairs)
    name = config.tracking.registered_model
    if name is None:
        return model_uri, None
    tags = {"autoft.train_run_id": run_id, **(origin_tags(
        config.tracking_uri, config.experiment_name, config.origin) if config.origin else {})}
    version = register(config.tracking_uri, model_uri, name, tags)
    return model_uri, f"{name}/{version.version}"
