"""What a search found: one record per trial, read back from the Ray Tune experiment folder.

Works on a finished or an interrupted search alike (``autoft export`` reads an experiment folder
long after the driver has gone), and needs no running Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import ExperimentAnalysis

from autoft.core.errors import InputError
from autoft.core.metrics import Select, goodness, scored_epoch
from autoft.core.trials import Status, best_of, error_line, trial_status
from trainables.api import TrialContext, split_trial_config


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its hyperparameters, how far it got and its score, the score of its epoch
    ``scored_epoch`` (0-based: its best, or its last under ``search.select: last``)."""

    trial_id: str
    name: str
    hparams: dict[str, Any]
    status: Status
    epochs: int
    score: float | None
    history: list[float] = field(default_factory=list)
    scored_epoch: int | None = None
    error: str | None = None
    context: TrialContext | None = None


def load_trials(experiment_dir: Path, metric: str, num_epochs: int,
                select: Select = "best") -> list[TrialRecord]:
    """Every trial of the experiment in ``experiment_dir``, in the order they were created,
    each scored by the epoch ``select`` picks (:func:`autoft.core.metrics.scored_epoch`)."""
    try:
        analysis = ExperimentAnalysis(str(experiment_dir))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise InputError(f"{experiment_dir}: not a search experiment folder ({exc})") from None
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        history = [] if frame is None or metric not in frame else [
            float(v) for v in frame[metric].tolist()]
        epoch = scored_epoch(history, metric, select)
        sampled, context = split_trial_config(trial.config or {})
        records.append(TrialRecord(
            trial_id=trial.trial_id,
            name=str(trial),
            hparams=sampled,
            status=trial_status(failed=trial.status == "ERROR",
                                ended=trial.status == "TERMINATED", epochs=len(history),
                                num_epochs=num_epochs),
            epochs=len(history),
            score=None if epoch is None else history[epoch],
            history=history,
            scored_epoch=epoch,
            error=error_line(trial.get_error()) if trial.status == "ERROR" else None,
            context=context,
        ))
    return sorted(records, key=lambda r: r.name)


def best_trial(records: list[TrialRecord], metric: str) -> TrialRecord | None:
    """The trial with the best score: the highest, or the lowest for a metric that is better
    lower (``metric``'s direction)."""
    return best_of((r for r in records if r.status != "failed"),
                   score=lambda r: None if r.score is None else goodness(metric, r.score))


def trials_frame(records: list[TrialRecord], metric: str) -> pd.DataFrame:
    """One row per trial: id, status, epochs, score and the epoch it was scored at,
    hyperparameters, error."""
    rows = [{"trial": r.name, "trial_id": r.trial_id, "status": r.status, "epochs": r.epochs,
             metric: r.score, "scored_epoch": r.scored_epoch,
             "seed": r.context.seed if r.context else None,
             **{f"param_{k}": v for k, v in sorted(r.hparams.items())},
             "error": r.error}
            for r in records]
    return pd.DataFrame(rows)
