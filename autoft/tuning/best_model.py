"""``search.keep_best_model``: the search's outcome as a model, without a retrain.

The chosen trial's weights at the epoch it was scored at are saved as the model folder ``autoft
train`` writes (:func:`autoft.tuning.train.save_model_folder`: the library's own format and the
exported config as ``autoft.yaml``) in ``EXPERIMENT_DIR/best_model``; ``autoft export --model``
copies it out. Ray keeps each trial's best-scoring checkpoint beside its latest for this
(``CheckpointConfig.checkpoint_score_attribute``; among equal scores the later one, as
:func:`autoft.core.metrics.scored_epoch` picks). The retrained model of ``autoft train`` is the
same one up to the nondeterminism of the device: the exported config stops at that epoch of
the same schedule, with the trial's seed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.tuning.results import TrialRecord
from autoft.tuning.train import save_model_folder
from autoft.tuning.trial import STATE_FILE
from trainables import load_trainable
from trainables.backbones import split_model

#: The folder of the kept model, in the experiment folder.
BEST_MODEL = "best_model"


def checkpoint_of(experiment_dir: Path, trial: TrialRecord) -> Path:
    """The checkpoint folder of ``trial``'s scored epoch."""
    folder = experiment_dir / trial.name
    names = {}
    with (folder / "result.json").open(encoding="utf-8") as results:
        for line in results:
            if line.strip():
                row = json.loads(line)
                names[row.get("epoch", row["training_iteration"] - 1)] = row.get(
                    "checkpoint_dir_name")
    name = names.get(trial.scored_epoch)
    if name is None or not (folder / name).is_dir():
        raise InputError(f"{folder}: the checkpoint of epoch {trial.scored_epoch} is gone; only a "
                         "search with search.keep_best_model: true keeps it")
    return folder / name


def keep_best_model(config: Config, prepared: Mapping[str, Any], trial: TrialRecord,
                    exported: Mapping[str, Any]) -> Path | None:
    """Save ``trial``'s weights at its scored epoch, with the ``exported`` config, as
    ``EXPERIMENT_DIR/best_model`` (``prepared``: the search's data, by model); None for a
    trainable that saves no model."""
    choice, _, _ = split_model(config, trial.hparams)
    trainable = load_trainable(config.trainable)
    if not callable(getattr(trainable, "save_model", None)):
        return None
    state = torch.load(checkpoint_of(config.experiment_dir, trial) / STATE_FILE,
                       map_location="cpu", weights_only=True)
    return save_model_folder(trainable, prepared[choice], state["model"], exported,
                             config.experiment_dir / BEST_MODEL)


def export_model(experiment_dir: Path, output: Path) -> Path:
    """Copy the kept model of the search in ``experiment_dir`` to ``output``."""
    kept = experiment_dir / BEST_MODEL
    if not kept.is_dir():
        raise InputError(f"{experiment_dir}: no kept model ({BEST_MODEL}); set "
                         "search.keep_best_model: true, or retrain the best config with autoft "
                         "train")
    if output.exists():
        raise InputError(f"{output}: already exists; name a new folder with -o")
    shutil.copytree(kept, output)
    return output
