"""A saved model folder as an MLflow model, and a version of it in the Model Registry.

``autoft train`` logs the folder it wrote (:mod:`autoft.tuning.train`) with the MLflow flavor of
the library that wrote it, so that MLflow's own tools load and serve it
(``mlflow.pyfunc.load_model``, ``mlflow models serve``) without autoft:

* ``transformers``: the folder's model and tokenizer as a transformers pipeline,
  ``text-classification`` (classes, scores, labels; sentence pairs as ``text`` / ``text_pair``
  columns) or ``token-classification`` (tags);
* ``pytorch``: the timm model, whose input is the evaluation transform's output, a float32
  tensor ``(N, 3, H, W)``.

Each is logged with an input example, from which MLflow infers the signature. The model is
linked to the train run; :func:`register` adds a version to the registry with the tags the
caller gives (the search and trial it came from).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from autoft.core.config import Origin
from autoft.tracking.tags import TRIAL_TAG

#: The name of the logged model, in the run and in ``runs:/RUN/model``.
MODEL_NAME = "model"
#: The input example of a text model: a sentence, or a sentence pair.
EXAMPLE_TEXT = "A short example sentence."
EXAMPLE_PAIR = "Another example sentence."


def _log_transformers(model_dir: Path, task: str, pairs: bool) -> Any:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    tagging = task == "token_classification"
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    parts = {"model": auto.from_pretrained(model_dir), "tokenizer":
             AutoTokenizer.from_pretrained(model_dir)}
    example: Any = ([{"text": EXAMPLE_TEXT, "text_pair": EXAMPLE_PAIR}] if pairs
                    else [EXAMPLE_TEXT])
    return mlflow.transformers.log_model(
        parts, name=MODEL_NAME, input_example=example,
        task="token-classification" if tagging else "text-classification")


def _log_pytorch(model_dir: Path, task: str, pairs: bool) -> Any:
    import numpy as np
    import timm

    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    size = json.loads((model_dir / "config.json").read_text())["pretrained_cfg"]["input_size"]
    return mlflow.pytorch.log_model(model, name=MODEL_NAME,
                                    input_example=np.zeros((1, *size), dtype=np.float32))


#: How each flavor logs a saved folder, by the name the trainables registry gives it.
FLAVORS: Mapping[str, Callable[[Path, str, bool], Any]] = {
    "transformers": _log_transformers, "pytorch": _log_pytorch}


def log_model(tracking_uri: str, run_id: str, model_dir: Path, flavor: str, task: str,
              pairs: bool = False) -> str:
    """Log the saved folder ``model_dir`` as an MLflow model of ``flavor`` linked to the run
    ``run_id``; its URI (``models:/m-...``)."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        return FLAVORS[flavor](model_dir, task, pairs).model_uri


def origin_tags(tracking_uri: str, experiment_name: str, origin: Origin) -> dict[str, str]:
    """Tags that name the search and trial an exported config came from: the trial (name and
    Ray id), its MLflow run and the search's parent run, where the store still has them."""
    tags = {"autoft.trial": origin.trial, TRIAL_TAG: origin.trial_id,
            "autoft.search_dir": str(origin.experiment_dir)}
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], f"tags.`{TRIAL_TAG}` = '{origin.trial_id}'", max_results=1)
    if runs:
        tags["autoft.trial_run_id"] = runs[0].info.run_id
        parent = runs[0].data.tags.get("mlflow.parentRunId")
        if parent:
            tags["autoft.search_run_id"] = parent
    return tags


def register(tracking_uri: str, model_uri: str, name: str,
             tags: Mapping[str, str]) -> ModelVersion:
    """A new version of registered model ``name`` (created when missing) for ``model_uri``."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.register_model(model_uri, name, tags=dict(tags))
