"""The Ray Tune callback that writes a search to MLflow, from the driver, in design.md's layout.

One experiment per search; one parent run per search (tag ``autoft.role=search``; params: the
fixed hyperparameters, algorithm, scheduler, num_samples); one child run per trial, nested under
the parent (tags ``mlflow.parentRunId``, ``autoft.trial_id``; params: the trial's sampled
hyperparameters and its seed; metrics
per epoch with step = epoch; tag ``autoft.status`` = completed | pruned | failed, and
``autoft.error`` for a failed trial). Every hook only enqueues into a
:class:`~autoft.tracking.writer.MlflowWriter`, so a slow or dead tracking server never stalls the
Tune loop.

A resumed search (``Tuner.restore``) unpickles this callback and calls :meth:`setup` again: the
writer's state in ``state_dir`` still maps the parent and every trial to its run, so the parent is
reused, no trial gets a second child run, and epochs a restored trial reports again are not
logged twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from autoft.core.trials import error_file_line, trial_status
from autoft.tracking.tags import (
    CONFIRMS_TAG,
    ERROR_TAG,
    FIRST_POINT_TAG,
    ROLE_TAG,
    SEARCH_ID_TAG,
    STATUS_TAG,
    TRIAL_TAG,
)
from autoft.tracking.writer import MlflowWriter, shared_writer
from trainables.api import split_trial_config

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

PARENT = "parent"
#: Run keys of the confirmation retrains (:meth:`MlflowTrackingCallback.log_confirmation`).
CONFIRM_PREFIX = "confirm:"
#: Why a child run has no trial in the experiment: Ray saves its experiment state every few
#: seconds, so a trial started just before the driver died is unknown to the restored search.
LOST_ERROR = ("lost: the driver stopped before Ray recorded this trial; the resumed search "
              "sampled a new trial in its place")
# Logged per epoch besides the task's metrics (``eval_*``); other result keys are Ray's.
EPOCH_METRICS = ("train_loss", "eval_loss", "lr", "epoch_time_s")


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """What an epoch's result logs to MLflow: :data:`EPOCH_METRICS` and every ``eval_*``
    metric of the task (the searched one and its siblings: Pearson beside RMSE, ...)."""
    return {key: value for key, value in result.items()
            if (key in EPOCH_METRICS or key.startswith("eval_")) and _is_number(value)}


def flatten_params(values: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted names (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def result_epoch(result: Mapping[str, Any]) -> int:
    """The 0-based epoch of a result: the trainable's ``epoch``, else Ray's iteration count."""
    if "epoch" in result:
        return int(result["epoch"])
    return int(result["training_iteration"]) - 1


def trial_error(trial: Trial) -> str:
    """The last line of the trial's latest failure, or a line saying that Ray recorded none."""
    return error_file_line(trial.error_file) or "the trial failed (Ray recorded no error text)"


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A child run's params: the trial's sampled hyperparameters and the seed it trains with."""
    sampled, context = split_trial_config(config)
    return flatten_params(sampled if context is None else {**sampled, "seed": context.seed})


def trial_cost(trial: Trial) -> dict[str, float]:
    """What a trial cost, for weighing its score against: ``trial_seconds`` (Ray's wall clock
    of the trial, restarts included) and ``gpu_seconds`` (those seconds times the GPUs it
    held; 0 on CPUs). Empty before its first result."""
    seconds = (trial.last_result or {}).get("time_total_s")
    if not _is_number(seconds):
        return {}
    gpus = float(trial.placement_group_factory.required_resources.get("GPU", 0))
    return {"trial_seconds": float(seconds), "gpu_seconds": float(seconds) * gpus}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class MlflowTrackingCallback(Callback):
    """Tracks a Ray Tune search in MLflow (see the module docstring for the layout).

    Args:
        tracking_uri: the MLflow tracking URI.
        experiment_name: the MLflow experiment of the search (created when missing).
        state_dir: the search's experiment folder; the writer keeps its spool and state there.
        run_name: name of the parent run (default: ``experiment_name``).
        num_epochs: epochs of a full trial when ``trial.config`` has no ``num_epochs``: a trial
            that ends with fewer was pruned. None: every trial that ends is completed.
        parent_params: params of the parent run (fixed hyperparameters, algorithm, scheduler,
            num_samples, ...); nested mappings are flattened to dotted names.
        first_points: what each of the search's first trials is, by trial index (``warm
            start: baseline``, ...): tagged on its run.

    Picklable (Ray stores it with the experiment for ``Tuner.restore``): the writer is opened in
    :meth:`setup` or on first use and is not part of the pickled state. Copies of this callback
    over the same ``state_dir`` in one process share one writer, so the driver can call
    :meth:`log_parent_metric`, :meth:`log_parent_artifacts` and :meth:`finish` on its own copy
    after ``Tuner.restore`` ran Ray's.
    """

    def __init__(self, *, tracking_uri: str, experiment_name: str,
                 state_dir: str | os.PathLike[str], run_name: str | None = None,
                 num_epochs: int | None = None,
                 parent_params: Mapping[str, Any] | None = None,
                 first_points: Mapping[int, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.state_dir = Path(state_dir)
        self.run_name = run_name or experiment_name
        self.num_epochs = num_epochs
        self.parent_params = dict(parent_params or {})
        self.first_points = dict(first_points or {})
        self.search_id = uuid.uuid4().hex
        self._writer: MlflowWriter | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_writer"] = None
        return state

    @property
    def writer(self) -> MlflowWriter:
        """The (shared) writer of ``state_dir``, opened on first use."""
        if self._writer is None or self._writer.closed:
            self._writer = shared_writer(self.tracking_uri, self.experiment_name,
                                         self.state_dir)
        return self._writer

    # Ray Tune hooks.

    def setup(self, stop: Any = None, num_samples: int | None = None,
              total_num_samples: int | None = None, **info: Any) -> None:
        """Open the writer and create the parent run, or reuse the one ``state_dir`` knows."""
        self._parent()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        """Create the trial's child run with its hyperparameters (once, also on restarts)."""
        self._trial_run(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        """Log the epoch's metrics at step = epoch, unless that epoch was logged before."""
        writer = self._trial_run(trial)
        step = result_epoch(result)
        last = writer.last_step(trial.trial_id)
        if last is not None and step <= last:
            return
        writer.log_metrics(trial.trial_id, epoch_metrics(result), step)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        """FINISHED, tagged completed if the trial ran all its epochs, else pruned (a trial the
        scheduler stopped ended normally: it is no failure); the error of an earlier failure
        (before a retry or ``autoft resume``) no longer applies."""
        writer = self._trial_run(trial)
        if trial.error_file is not None:
            writer.delete_tag(trial.trial_id, ERROR_TAG)
        last = writer.last_step(trial.trial_id)
        expected = trial.config.get("num_epochs", self.num_epochs)
        status = trial_status(failed=False, ended=True, epochs=0 if last is None else last + 1,
                              num_epochs=None if expected is None else int(expected))
        writer.log_metrics(trial.trial_id, trial_cost(trial), 0 if last is None else last)
        writer.set_tags(trial.trial_id, {STATUS_TAG: status})
        writer.set_terminated(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        """Failed (FAILED), with the exception in ``autoft.error`` and Ray's error file."""
        writer = self._trial_run(trial)
        last = writer.last_step(trial.trial_id)
        writer.log_metrics(trial.trial_id, trial_cost(trial), 0 if last is None else last)
        writer.set_tags(trial.trial_id, {STATUS_TAG: "failed", ERROR_TAG: trial_error(trial)})
        if trial.error_file is not None and Path(trial.error_file).is_file():
            writer.log_artifacts(trial.trial_id, [trial.error_file])
        writer.set_terminated(trial.trial_id, "FAILED")

    # For the driver.

    def log_parent_metric(self, key: str, value: float, step: int = 0) -> None:
        """Log a metric of the search (``best_eval_<metric>``) on the parent run."""
        self._parent().log_metrics(PARENT, {key: value}, step)

    def log_best_epoch(self, trial_id: str, metric: str, epoch: int, score: float) -> None:
        """Log a trial's best epoch (``best_epoch``, 0-based) and its score
        (``best_eval_<metric>``) on its child run, at step = that epoch."""
        writer = self._parent()
        if writer.has_run(trial_id):
            writer.log_metrics(trial_id, {"best_epoch": epoch, f"best_{metric}": score}, epoch)

    def set_parent_tags(self, tags: Mapping[str, str]) -> None:
        """Tag the parent run (which trial the search chose, and why)."""
        self._parent().set_tags(PARENT, tags)

    def log_parent_artifacts(self, paths: Iterable[str | os.PathLike[str]],
                             artifact_path: str | None = None) -> None:
        """Upload files (config, space, ``best_config.yaml``, ``trials.csv``, plots) to the
        parent run; they are read when the writer gets to them, so leave them in place."""
        self._parent().log_artifacts(PARENT, paths, artifact_path)

    def log_confirmation(self, key: str, *, confirms: str, params: Mapping[str, Any],
                         epochs: list[Mapping[str, float]], error: str | None) -> None:
        """One retrain of trial ``confirms`` with another seed: a child run tagged
        ``autoft.role=confirm`` with its params, per-epoch metrics and status (once per key)."""
        writer = self._parent()
        run_key = f"{CONFIRM_PREFIX}{key}"
        if writer.has_run(run_key):
            return
        writer.create_run(run_key, run_name=f"confirm {key}", parent_key=PARENT,
                          tags={ROLE_TAG: "confirm", CONFIRMS_TAG: confirms})
        writer.log_params(run_key, flatten_params(params))
        for values in epochs:
            writer.log_metrics(run_key, epoch_metrics(values), result_epoch(values))
        writer.set_tags(run_key, {STATUS_TAG: "failed" if error else "completed",
                                  **({ERROR_TAG: error} if error else {})})
        writer.set_terminated(run_key, "FAILED" if error else "FINISHED")

    def parent_run_id(self, timeout: float = 30.0) -> str | None:
        """The parent's MLflow run id, waiting up to ``timeout`` s for its creation."""
        return self.writer.run_id(PARENT, timeout)

    def trial_run_id(self, trial_id: str, timeout: float = 30.0) -> str | None:
        """A trial's MLflow run id, waiting up to ``timeout`` s for its creation."""
        return self.writer.run_id(trial_id, timeout)

    def mark_lost_trials(self, trial_ids: Iterable[str]) -> list[str]:
        """Mark the child runs of trials the experiment does not hold (``trial_ids`` are the
        ones it does) as superseded, with :data:`LOST_ERROR`, and move them to MLflow's deleted
        runs; returns their trial ids.

        Such a run is left RUNNING by a driver stopped (Ctrl-C, a kill) between starting a
        trial and Ray's next save of the experiment state; the resumed search never reports to
        it again and samples a trial in its place, so the runs table keeps each trial once. The
        run stays restorable (``mlflow runs restore``), tagged with why it went.
        """
        writer = self._parent()
        lost = sorted(key for key in writer.keys() - {PARENT, *trial_ids}
                      if not key.startswith(CONFIRM_PREFIX))
        for trial_id in lost:
            writer.set_tags(trial_id, {STATUS_TAG: "superseded", ERROR_TAG: LOST_ERROR})
            writer.set_terminated(trial_id, "KILLED")
            writer.delete_run(trial_id)
        return lost

    @property
    def experiment_id(self) -> str | None:
        """The MLflow experiment's id, once the store has answered (also after :meth:`finish`)."""
        return None if self._writer is None else self._writer.experiment_id

    def unsent(self) -> int:
        """Tracking operations not sent yet (after :meth:`finish`: left for ``autoft sync``)."""
        return 0 if self._writer is None else self._writer.unsent()

    def finish(self, status: str = "FINISHED", timeout: float = 60.0) -> str | None:
        """End the parent run with ``status`` and drain the writer for up to ``timeout`` s.

        Returns the parent run id (None if the store never answered; what was not sent stays
        in the spool for ``autoft sync`` or the next ``autoft resume``).
        """
        writer = self._parent()
        writer.set_terminated(PARENT, status)
        writer.close(timeout)
        return writer.run_id(PARENT, timeout=0)

    # Runs.

    def _parent(self) -> MlflowWriter:
        writer = self.writer
        if not writer.has_run(PARENT):
            writer.create_run(PARENT, run_name=self.run_name,
                              tags={ROLE_TAG: "search", SEARCH_ID_TAG: self.search_id})
            writer.log_params(PARENT, flatten_params(self.parent_params))
        return writer

    def _trial_run(self, trial: Trial) -> MlflowWriter:
        writer = self._parent()
        if not writer.has_run(trial.trial_id):
            _, context = split_trial_config(trial.config or {})
            first = getattr(self, "first_points", {}).get(context.index if context else -1)
            writer.create_run(trial.trial_id, run_name=trial.trial_id,
                              tags={TRIAL_TAG: trial.trial_id,
                                    **({FIRST_POINT_TAG: first} if first else {})},
                              parent_key=PARENT)
            writer.log_params(trial.trial_id, trial_params(trial.config))
        return writer
