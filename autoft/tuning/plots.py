"""The pictures a user looks at in the MLflow UI: how the search went and what mattered.

Optuna's own matplotlib plots (optimization history, parameter importances, parallel coordinates)
drawn over an in-memory study rebuilt from the trial records, so they work for every sampler and
for PBT alike, plus the learning curve of every trial.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from autoft.core.metrics import mode  # noqa: E402
from autoft.core.space import SearchSpace  # noqa: E402
from autoft.tuning.results import TrialRecord  # noqa: E402
from autoft.tuning.space_adapters import study_trial  # noqa: E402

log = logging.getLogger(__name__)


def study_from_trials(trials: list[TrialRecord], space: SearchSpace,
                      metric: str) -> optuna.Study:
    """An in-memory Optuna study holding every scored trial with its searched parameters, in
    ``metric``'s direction."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=f"{mode(metric)}imize")
    for record in trials:
        if record.score is not None:
            study.add_trial(study_trial(space, record.hparams, record.score))
    return study


def _learning_curves(trials: list[TrialRecord], metric: str) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for record in trials:
        if record.history:
            axes.plot(range(len(record.history)), record.history, marker="o", alpha=0.7,
                      label=f"{record.name} ({record.status})")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title("Learning curves")
    if len(trials) <= 12:
        axes.legend(fontsize="small")
    return figure


def write_plots(trials: list[TrialRecord], space: SearchSpace, metric: str,
                folder: Path) -> list[Path]:
    """Draw every plot the trials allow into ``folder`` as PNG; returns the files written."""
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    study = study_from_trials(trials, space, metric)
    drawers = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(
            study, target_name=metric).figure,
        "param_importances": lambda: optuna_plots.plot_param_importances(
            study, target_name=metric).figure,
        "parallel_coordinate": lambda: optuna_plots.plot_parallel_coordinate(
            study, target_name=metric).figure,
        "learning_curves": lambda: _learning_curves(trials, metric),
    }
    written = []
    for name, draw in drawers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = draw()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("plot %s skipped: %s", name, exc)
            continue
        path = folder / f"{name}.png"
        figure.set_size_inches(max(figure.get_size_inches()[0], 7), 4.5)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
