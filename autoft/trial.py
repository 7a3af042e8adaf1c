"""One trial on a Ray worker: the trainable's ``fit`` with a reporter that talks to Ray Tune.

Each epoch is reported with ``tune.report`` and a checkpoint holding the trainable's state, so a
trial that dies (a node lost, a PBT exploit) restarts from its last epoch instead of from zero.
"""

from __future__ import annotations

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


def trial_index(trial_id: str) -> int:
    """The running number Ray puts at the end of a trial id (``3f2a1_00007`` -> 7)."""
    suffix = trial_id.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def trial_hparams(config: Config, sampled: dict[str, Any], index: int) -> dict[str, Any]:
    """The hyperparameters a trial runs with: ``fixed``, then the sampled ones, then the seed."""
    hparams = {**config.fixed, **sampled}
    hparams.setdefault("seed", config.search.seed + index)
    return hparams


def run_trial(sampled: dict[str, Any], *, config: Config, prepared: Any) -> None:
    """The Ray Tune function trainable: fine-tune with the sampled hyperparameters."""
    index = trial_index(tune.get_context().get_trial_id() or "")
    trainable = load_trainable(config.trainable)
    trainable.fit(config, prepared, trial_hparams(config, sampled, index), TuneReporter())
