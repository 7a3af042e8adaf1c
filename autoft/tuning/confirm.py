"""Seed-robust selection: the best of many noisy trials is often a lucky one.

After the search, the ``top_k`` best completed trials are trained again with ``seeds`` new
seeds each (MLflow child runs tagged ``autoft.role=confirm``), up to the epoch each trial was
scored at (its best, under ``search.select: best``: what export would train, so a lucky best
epoch is measured again, not chosen again), and the search's best is the configuration with the
best mean over all its seeds, its own trial included (SST-2: the winner
of 16 single-seed trials, retrained, scored below the untuned baseline).

The retrains run as Ray tasks of the search's own trainable on the data the search prepared.
Each finished retrain is recorded in ``confirm.json`` in the experiment folder at once, so an
interrupted confirmation goes on where it stopped with ``autoft resume``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray

from autoft.core.config import Config, ConfirmSettings
from autoft.core.files import write_text_atomic
from autoft.core.metrics import goodness
from autoft.core.trials import error_line
from autoft.tuning.results import TrialRecord, best_trial
from autoft.tuning.trial import scored_hparams
from trainables import TrialContext, load_trainable
from trainables.backbones import split_model

CONFIRM_FILE = "confirm.json"
#: Share of a search's trial-epochs that ``confirm: auto`` may spend on retrains.
AUTO_BUDGET = 0.25


@dataclass(frozen=True)
class Retrain:
    """One retrain of a top trial's configuration with another seed."""

    trial_id: str
    name: str
    seed: int
    score: float | None
    epochs: list[dict[str, float]]
    error: str | None = None


@dataclass(frozen=True)
class Confirmed:
    """A top trial with the scores of all its seeds (its own first)."""

    trial: TrialRecord
    scores: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


def top_trials(trials: list[TrialRecord], top_k: int, metric: str) -> list[TrialRecord]:
    """The ``top_k`` completed trials with the best scores by ``metric``'s direction (pruned
    ones never reached the end)."""
    completed = [t for t in trials if t.status == "completed" and t.score is not None]
    return sorted(completed, key=lambda t: -goodness(metric, t.score))[:top_k]


def planned(config: Config, top: list[TrialRecord], seeds: int) -> list[tuple[TrialRecord, int]]:
    """Each top trial with each of its new seeds, none of them a seed a trial trained with."""
    first = config.search.seed + config.search.num_samples
    return [(trial, first + rank * seeds + s) for rank, trial in enumerate(top)
            for s in range(seeds)]


def load_retrains(experiment_dir: Path) -> list[Retrain]:
    """The retrains recorded so far."""
    path = experiment_dir / CONFIRM_FILE
    if not path.is_file():
        return []
    return [Retrain(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def _record(experiment_dir: Path, retrains: list[Retrain]) -> None:
    write_text_atomic(experiment_dir / CONFIRM_FILE,
                      json.dumps([asdict(r) for r in retrains], indent=1))


class _Collect:
    """A reporter that keeps each epoch's metrics (a retrain is never resumed)."""

    def __init__(self, trial: TrialContext) -> None:
        self.trial = trial
        self.epochs: list[dict[str, float]] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        self.epochs.append({k: float(v) for k, v in metrics.items()})


def _retrain(config: Config, prepared: Mapping[str, Any], hparams: dict[str, Any],
             context: TrialContext) -> list[dict[str, float]]:
    reporter = _Collect(context)
    choice, config, hparams = split_model(config, hparams)
    load_trainable(config.trainable).fit(config, prepared[choice], hparams, reporter)
    return reporter.epochs


def run_retrains(config: Config, prepared: Mapping[str, Any], work: list[tuple[TrialRecord, int]],
                 on_done: Callable[[Retrain], None]) -> list[Retrain]:
    """Retrain each (trial, seed) of ``work`` on the Ray cluster, ``max_concurrent`` at once;
    ``on_done`` sees each as it ends. Records every one in the experiment folder."""
    retrains = load_retrains(config.experiment_dir)
    remote = ray.remote(_retrain).options(num_cpus=config.resources.cpu,
                                          num_gpus=config.resources.gpu, max_retries=0)
    shared = ray.put(prepared)
    waiting = iter(enumerate(work))
    running: dict[Any, tuple[TrialRecord, int]] = {}

    def start(jobs: Iterator[tuple[int, tuple[TrialRecord, int]]]) -> None:
        for position, (trial, seed) in jobs:
            context = TrialContext(index=config.search.num_samples + position, seed=seed)
            hparams = scored_hparams(config, trial.hparams, context, trial.scored_epoch)
            running[remote.remote(config, shared, hparams, context)] = trial, seed
            if len(running) >= config.search.max_concurrent:
                return

    start(waiting)
    while running:
        [ready], _ = ray.wait(list(running), num_returns=1)
        trial, seed = running.pop(ready)
        try:
            epochs = ray.get(ready)
            score = epochs[-1].get(config.metric_key) if epochs else None
            retrain = Retrain(trial.trial_id, trial.name, seed, score, epochs)
        except Exception as exc:  # noqa: BLE001 -- a failed retrain is recorded, not fatal
            retrain = Retrain(trial.trial_id, trial.name, seed, None, [],
                              error_line(str(exc)))
        retrains.append(retrain)
        _record(config.experiment_dir, retrains)
        on_done(retrain)
        start(waiting)
    return retrains


def settings_for(config: Config, trials: list[TrialRecord]) -> ConfirmSettings | None:
    """What ``search.confirm`` asks for after these trials. ``auto`` retrains (once each) as
    many of the best as :data:`AUTO_BUDGET` of the trial-epochs the search spent pay for, up
    to its ``top_k``, and is off when that is fewer than 2: a search that ASHA pruned hard
    cost less, so its confirmation must too."""
    settings = config.search.confirmation
    if settings is None or config.search.confirm != "auto":
        return settings
    affordable = int(AUTO_BUDGET * sum(t.epochs for t in trials)) // config.num_epochs
    top_k = min(settings.top_k, affordable)
    return settings.model_copy(update={"top_k": top_k}) if top_k >= 2 else None


def why_not_confirmed(config: Config, trials: list[TrialRecord]) -> str | None:
    """Why ``confirm: auto`` retrains nothing after these trials, for the console (None: it
    retrains, or the config itself turned confirmation off)."""
    if config.search.confirm != "auto":
        return None
    if config.search.confirmation is None:
        return (f"confirmation off: confirm: auto retrains the best trials from 8 trials on "
                f"({config.search.num_samples} here)")
    if settings_for(config, trials) is not None:
        return None
    spent = sum(t.epochs for t in trials)
    return (f"confirmation skipped: retraining the best 2 trials once ({2 * config.num_epochs} "
            f"trial-epochs) would cost more than {AUTO_BUDGET:.0%} of the {spent} the search "
            "spent (ASHA stopped many early); search.confirm: {top_k: 2, seeds: 1} retrains "
            "them anyway")


def still_to_run(config: Config, trials: list[TrialRecord]) -> list[tuple[TrialRecord, int]]:
    """The retrains ``search.confirm`` asks for that are not recorded yet."""
    settings = settings_for(config, trials)
    if settings is None:
        return []
    done = {(r.trial_id, r.seed) for r in load_retrains(config.experiment_dir)}
    return [(trial, seed) for trial, seed in
            planned(config, top_trials(trials, settings.top_k, config.metric_key),
                    settings.seeds)
            if (trial.trial_id, seed) not in done]


def confirmed(config: Config, trials: list[TrialRecord]) -> list[Confirmed]:
    """The top trials with all their scores, best mean first; empty when confirm is off."""
    settings = settings_for(config, trials)
    if settings is None:
        return []
    retrains = load_retrains(config.experiment_dir)
    found = [Confirmed(trial, [trial.score] + [r.score for r in retrains
                                               if r.trial_id == trial.trial_id
                                               and r.score is not None])
             for trial in top_trials(trials, settings.top_k, config.metric_key)]
    return sorted(found, key=lambda c: -goodness(config.metric_key, c.mean))


def chosen(config: Config, trials: list[TrialRecord]) -> tuple[TrialRecord | None,
                                                                list[Confirmed]]:
    """The search's best: the best mean over seeds when confirmed, else the best single trial
    (and the confirmations, best mean first)."""
    confirmations = confirmed(config, trials)
    return ((confirmations[0].trial if confirmations else best_trial(trials, config.metric_key)),
            confirmations)
