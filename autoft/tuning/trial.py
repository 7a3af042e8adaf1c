"""One trial on a Ray worker: the trainable's ``fit`` with a reporter that talks to Ray Tune.

Each epoch is reported with ``tune.report`` and a checkpoint holding the trainable's state, so a
trial that dies (a node lost, a PBT exploit) restarts from its last epoch instead of from zero.

Checkpoints live in shared storage, and unpickling one may run any code it names, so they are
read with ``torch.load(weights_only=True)``: a state may hold only tensors and plain values
(str, int, float, bool, None) in dicts, lists and tuples, as the built-in trainables' state does
(model, optimizer and scheduler state dicts; RNG states as tensors and tuples of ints). A user
function's state too: one holding anything else (a numpy array, an object of its own) fails the
trial at the epoch that reports it, not later, when it would be restored.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from autoft.core.config import Config
from autoft.core.quiet import one_line_warnings
from autoft.tuning.data_parallel import fit_data_parallel
from autoft.tuning.retries import fail_if_marked
from trainables import TrialContext, load_trainable
from trainables.api import TrialFailed, split_trial_config
from trainables.backbones import split_model
from trainables.registry import typed_hparams

STATE_FILE = "state.pt"


class TuneReporter:
    """A :class:`trainables.api.Reporter` that reports to Ray Tune with an epoch checkpoint."""

    def __init__(self, trial: TrialContext) -> None:
        self.trial = trial

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / STATE_FILE)
            _check_loadable(Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _check_loadable(path: Path) -> None:
    """Refuse a saved state that :meth:`TuneReporter.restore` would refuse to load."""
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise TrialFailed(f"the reported state holds {', '.join(unsafe)}: a checkpoint may hold "
                          "only tensors and str, int, float, bool, None in dicts, lists and "
                          "tuples (torch.load weights_only=True)")


def trial_context(config: Config, index: int, sampled: Mapping[str, Any]) -> TrialContext:
    """Trial ``index``'s context: its seed is a searched or fixed ``seed``, else the search's
    seed plus the index (design.md: "search seed + trial index")."""
    seed = sampled.get("seed", config.fixed.get("seed", config.search.seed + index))
    return TrialContext(index=index, seed=int(seed))


def trial_hparams(config: Config, sampled: Mapping[str, Any],
                  context: TrialContext) -> dict[str, Any]:
    """The hyperparameters a trial runs with: ``fixed``, then the sampled ones, then its seed."""
    return {**config.fixed, **sampled, "seed": context.seed}


def scored_hparams(config: Config, sampled: Mapping[str, Any], context: TrialContext,
                   scored_epoch: int | None) -> dict[str, Any]:
    """The hyperparameters that train a trial again up to the epoch it was scored at
    (``scored_epoch``, 0-based), for export and confirmation: a built-in trainable stops there
    (``stop_after_epochs``) on the schedule planned for all ``num_epochs``, so the retrain is the
    scored model; a function trainable, whose schedule autoft cannot see, gets that
    ``num_epochs``.

    >>> config = Config(name="x", fixed={"num_epochs": 4})
    >>> scored_hparams(config, {}, TrialContext(0, 7), 1)
    {'num_epochs': 4, 'seed': 7, 'stop_after_epochs': 2}
    >>> scored_hparams(config, {}, TrialContext(0, 7), 3)
    {'num_epochs': 4, 'seed': 7}
    """
    hparams = trial_hparams(config, sampled, context)
    planned = int(hparams.get("num_epochs", config.num_epochs))
    if scored_epoch is None or scored_epoch + 1 >= planned:
        return hparams
    key = "stop_after_epochs" if typed_hparams(config) else "num_epochs"
    return {**hparams, key: scored_epoch + 1}


def trial_name(trial: Any) -> str:
    """``trial_0007``, from the index the driver gave the trial (Ray's own id without one)."""
    _, context = split_trial_config(trial.config or {})
    return f"trial_{trial.trial_id}" if context is None else f"trial_{context.index:04d}"


def run_trial(config_of_trial: dict[str, Any], *, config: Config,
              prepared: Mapping[str, Any]) -> None:
    """The Ray Tune function trainable: fine-tune with the sampled hyperparameters, on the data
    prepared for the trial's model (``prepared``, by model: :mod:`trainables.backbones`)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-epoch noise
    one_line_warnings()
    fail_if_marked(config_of_trial)
    sampled, context = split_trial_config(config_of_trial)
    if context is None:
        raise RuntimeError("a trial without its autoft context: started outside autoft's driver")
    choice, config, sampled = split_model(config, sampled)
    trainable = load_trainable(config.trainable)
    fit = trainable.fit if config.resources.workers == 1 else functools.partial(
        fit_data_parallel, fit=trainable.fit)
    fit(config, prepared[choice], trial_hparams(config, sampled, context), TuneReporter(context))
