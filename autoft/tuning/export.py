"""Export a search's best trial as a complete config that ``autoft train`` runs unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.files import write_text_atomic
from autoft.tuning.confirm import chosen
from autoft.tuning.experiment import experiment_config
from autoft.tuning.results import TrialRecord, load_trials
from autoft.tuning.trial import scored_hparams, trial_context
from trainables.backbones import split_model

Format = Literal["yaml", "json"]

#: The best trial as a train config, written beside the experiment at the end of a search.
BEST_CONFIG = "best_config.yaml"


def best_config(config: Config, trial: TrialRecord) -> dict[str, Any]:
    """``config`` with the trial's full hyperparameters (seed included) as ``fixed``, stopping
    at the epoch the trial was scored at (:func:`~autoft.tuning.trial.scored_hparams`), and the
    trial as its ``origin``."""
    context = trial.context or trial_context(config, 0, trial.hparams)
    _, config, hparams = split_model(config, scored_hparams(config, trial.hparams, context,
                                                            trial.scored_epoch))
    exported = config.to_yaml_dict()  # the trial's model (a searched one) with its weights
    exported["fixed"] = hparams
    exported["space"] = None
    exported["origin"] = {"experiment_dir": str(config.experiment_dir), "trial": trial.name,
                          "trial_id": trial.trial_id}
    return exported


def dump_config(mapping: dict[str, Any], fmt: Format = "yaml") -> str:
    """A config mapping as YAML or JSON text."""
    if fmt == "json":
        return json.dumps(mapping, indent=2) + "\n"
    return yaml.safe_dump(mapping, sort_keys=False)


def export_best(experiment_dir: Path, fmt: Format = "yaml", output: Path | None = None) -> Path:
    """Write the best trial's config (the best mean over seeds where the search confirmed its
    top trials); the default file is ``best_config.<fmt>`` in the folder."""
    experiment_dir = Path(experiment_dir)
    config = experiment_config(experiment_dir)
    trials = load_trials(experiment_dir, config.metric_key, config.num_epochs,
                         config.search.select)
    best, _ = chosen(config, trials)
    if best is None:
        raise InputError(f"{experiment_dir}: no trial has reported a score yet")
    output = output or experiment_dir / f"best_config.{fmt}"
    return write_text_atomic(output, dump_config(best_config(config, best), fmt))
