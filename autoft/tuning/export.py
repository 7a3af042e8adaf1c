"""Export a search's best trial as a complete config that ``autoft train`` runs unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml

from autoft.core.config import Config, load_config
from autoft.core.errors import InputError
from autoft.tuning.results import TrialRecord, best_trial, load_trials
from autoft.tuning.trial import trial_context, trial_hparams

EXPERIMENT_CONFIG = "autoft_config.yaml"

Format = Literal["yaml", "json"]


def experiment_config(experiment_dir: Path) -> Config:
    """The config a search in ``experiment_dir`` was started with."""
    path = Path(experiment_dir) / EXPERIMENT_CONFIG
    if not path.is_file():
        raise InputError(f"{experiment_dir}: not an autoft experiment folder "
                         f"(no {EXPERIMENT_CONFIG})")
    return load_config(path)


def save_experiment_config(config: Config, experiment_dir: Path) -> Path:
    """Record the resolved config in the experiment folder, for resume and export."""
    experiment_dir.mkdir(parents=True, exist_ok=True)
    path = experiment_dir / EXPERIMENT_CONFIG
    path.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    return path


def best_config(config: Config, trial: TrialRecord) -> dict[str, Any]:
    """``config`` with the trial's full hyperparameters (seed included) as ``fixed``."""
    exported = config.to_yaml_dict()
    context = trial.context or trial_context(config, 0, trial.hparams)
    exported["fixed"] = trial_hparams(config, trial.hparams, context)
    exported["space"] = None
    return exported


def dump_config(mapping: dict[str, Any], fmt: Format = "yaml") -> str:
    """A config mapping as YAML or JSON text."""
    if fmt == "json":
        return json.dumps(mapping, indent=2) + "\n"
    return yaml.safe_dump(mapping, sort_keys=False)


def export_best(experiment_dir: Path, fmt: Format = "yaml", output: Path | None = None) -> Path:
    """Write the best trial's config; the default file is ``best_config.<fmt>`` in the folder."""
    experiment_dir = Path(experiment_dir)
    config = experiment_config(experiment_dir)
    records = load_trials(experiment_dir, config.metric_key, config.num_epochs)
    best = best_trial(records)
    if best is None:
        raise InputError(f"{experiment_dir}: no trial has reported a score yet")
    output = output or experiment_dir / f"best_config.{fmt}"
    output.write_text(dump_config(best_config(config, best), fmt), encoding="utf-8")
    return output
