"""One trial on a Ray worker: the trainable's ``fit`` with a reporter that talks to Ray Tune.

Each epoch is reported with ``tune.report`` and a checkpoint holding the trainable's state, so a
trial that dies (a node lost, a PBT exploit) restarts from its last epoch instead of from zero.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from autoft.config import Config
from trainables import load_trainable

STATE_FILE = "state.pt"


class TuneReporter:
    """A :class:`trainables.api.Reporter` that reports to Ray Tune with an epoch checkpoint."""

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def trial_name(trial: Any, first_tag: int = 1) -> str:
    """``trial_0007``: names trials by the running number Ray gives them (0-based).

    Ray's experiment tag starts with a counter (``8_lr=0.1``) that counts from 1 for search
    algorithms and from 0 for Ray's own variant generator (PBT): ``first_tag`` says which.
    Passed to Ray Tune as ``trial_name_creator``, so a trial can read its own index on the worker.
    """
    counter = str(trial.experiment_tag).split("_", 1)[0]
    if not counter.isdigit():
        return f"trial_{trial.trial_id}"
    return f"trial_{int(counter) - first_tag:04d}"


def trial_index(name: str) -> int:
    """The index in a name made by :func:`trial_name` (``trial_0007`` -> 7); 0 if none."""
    suffix = name.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def trial_hparams(config: Config, sampled: dict[str, Any], index: int) -> dict[str, Any]:
    """The hyperparameters a trial runs with: ``fixed``, then the sampled ones, then the seed."""
    hparams = {**config.fixed, **sampled}
    hparams.setdefault("seed", config.search.seed + index)
    return hparams


def run_trial(sampled: dict[str, Any], *, config: Config, prepared: Any) -> None:
    """The Ray Tune function trainable: fine-tune with the sampled hyperparameters."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-epoch noise
    index = trial_index(tune.get_context().get_trial_name() or "")
    trainable = load_trainable(config.trainable)
    trainable.fit(config, prepared, trial_hparams(config, sampled, index), TuneReporter())
