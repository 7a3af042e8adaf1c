"""``autoft train CONFIG``: one fine-tune with the config's ``fixed`` hyperparameters, no search.

The run is one MLflow run (tag ``autoft.role=train``) in the config's experiment: the
hyperparameters as params (defaults filled in), ``train_loss``, ``eval_<metric>`` and ``lr`` per
epoch with step = epoch, and the trained model as the artifact folder ``model``. Each epoch is
also printed on the console. MLflow writes go through the project's background
:class:`~autoft.tracking.MlflowWriter` (spool under ``storage/<name>-train``), so a tracking
server that is down never stalls training; what it misses is replayed by the next run.

The model is saved by the trainable's ``save_model`` (text: a ``save_pretrained`` folder with
the tokenizer; image: safetensors weights and a json config) into ``output_dir``, by default
``storage/<name>-model``, replacing an earlier one only once the new one is complete.

Example::

    result = autoft.train("examples/sst2_minilm.yaml")
    result.metrics["eval_accuracy"], result.model_dir, result.run_id
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoft.core.config import Config
from autoft.tracking import MlflowWriter
from autoft.tracking.store import check_store
from autoft.tracking.tags import ROLE_TAG
from trainables import TrialContext, load_trainable
from trainables.hparams import parse_hparams
from trainables.registry import check_config, typed_hparams

RUN_KEY = "train"


@dataclass(frozen=True)
class TrainResult:
    """The MLflow run (None if the store never answered), final metrics and model folder."""

    run_id: str | None
    metrics: dict[str, float]
    model_dir: Path | None


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


def _save(trainable: Any, prepared: Any, state: dict[str, Any], model_dir: Path) -> None:
    """Save into a fresh sibling folder, then swap it in: an old model is replaced only by a
    complete new one, and two trainings never share a half-written folder."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}."))
    try:
        trainable.save_model(prepared, state["model"], partial)
        if model_dir.exists():
            old = model_dir.with_name(f"{partial.name}.old")
            model_dir.rename(old)
            partial.rename(model_dir)
            shutil.rmtree(old)
        else:
            partial.rename(model_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def train(config: Config, output_dir: Path | None = None) -> TrainResult:
    """Fine-tune once with ``config.fixed``, log to MLflow, save the model; see the module doc."""
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
                              "autoft.model": config.model or ""})
    writer.log_params(RUN_KEY, params)
    reporter = TrainReporter(writer, TrialContext(index=0, seed=int(params.get("seed", 0))))
    status = "FAILED"
    try:
        metrics = trainable.fit(config, prepared, hparams, reporter)
        if model_dir is not None and reporter.state is not None:
            _save(trainable, prepared, reporter.state, model_dir)
            writer.log_artifacts(RUN_KEY, sorted(model_dir.iterdir()), artifact_path="model")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        writer.set_terminated(RUN_KEY, status)
        writer.close()
    return TrainResult(run_id=writer.run_id(RUN_KEY, timeout=0), metrics=metrics,
                       model_dir=model_dir)
