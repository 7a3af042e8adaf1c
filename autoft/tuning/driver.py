"""The Ray Tune driver: one search from a validated config to an exported best config.

Data flows one way: config -> space -> Tuner (OptunaSearch + scheduler) -> trials on Ray workers
-> results -> MLflow (from this process, through a Tune callback) -> export. The dataset is
prepared once here and shipped to every trial through Ray's object store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.space import SearchSpace, load_space
from autoft.tracking import MlflowTrackingCallback
from autoft.tuning.algorithms import make_scheduler, make_search_alg, pbt_param_space
from autoft.tuning.export import EXPERIMENT_CONFIG, best_config, dump_config, save_experiment_config
from autoft.tuning.numbering import with_trial_slot
from autoft.tuning.plots import write_plots
from autoft.tuning.results import TrialRecord, best_trial, load_trials, trials_frame
from autoft.tuning.trial import run_trial, trial_name
from trainables import load_trainable
from trainables.registry import check_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """What ``autoft search`` prints at the end."""

    experiment_dir: Path
    trials: list[TrialRecord]
    best: TrialRecord | None
    parent_run_id: str | None
    best_config_path: Path | None
    tracking_uri: str


def load_search_space(config: Config) -> SearchSpace:
    """The config's space, checked against the hyperparameters its trainable understands."""
    if config.space is None:
        raise InputError(f"{config.source or 'config'}: space: required for a search")
    space = load_space(config.space, str(config.space) if isinstance(config.space, Path)
                       else f"{config.source or 'config'}: space")
    check_config(config, space.names)
    return space


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join ``address``, or start an embedded local Ray that is this command's alone.

    ``address="local"`` matters: a plain ``ray.init()`` joins whatever cluster an earlier
    ``ray start`` left in Ray's temp dir, even a dead one. The embedded Ray runs trials at the
    command's own priority, not Ray's default nice 15 below the driver and Ray's daemons (on 2
    cores the measured difference was within noise: benchmarks/results/README.md).
    """
    # Epoch checkpoints of short trials snapshot the experiment often; that is expected here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        yield
        return
    if address is None:
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address or "local", include_dashboard=False, configure_logging=False,
                 log_to_driver=True)
    except ConnectionError as exc:
        raise InputError(
            f"ray.address: cannot join the Ray cluster at {address} ({exc}); a cluster started "
            "with `ray start` needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN, "
            "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token") from None
    try:
        yield
    finally:
        ray.shutdown()


def _trainable(config: Config, prepared: Any) -> Any:
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    return tune.with_resources(tune.with_parameters(run_trial, config=config, prepared=prepared),
                               resources)


def _tracking(config: Config, space: SearchSpace) -> MlflowTrackingCallback:
    return MlflowTrackingCallback(
        tracking_uri=config.tracking_uri,
        experiment_name=config.experiment_name,
        run_name=config.name,
        state_dir=config.experiment_dir,
        metric=config.metric_key,
        num_epochs=config.num_epochs,
        parent_params={**config.fixed, "algorithm": config.search.algorithm,
                       "scheduler": config.search.scheduler,
                       "num_samples": config.search.num_samples,
                       "space": ",".join(space.names)},
    )


def _tuner(config: Config, space: SearchSpace, prepared: Any,
           tracking: MlflowTrackingCallback) -> tune.Tuner:
    metric = config.metric_key
    return tune.Tuner(
        _trainable(config, prepared),
        param_space=with_trial_slot(pbt_param_space(config, space)),
        tune_config=tune.TuneConfig(
            metric=metric, mode="max",
            search_alg=make_search_alg(config, space, metric),
            scheduler=make_scheduler(config, space),
            num_samples=config.search.num_samples,
            # A trial starts in the actor its predecessor ran in: no process start, and torch,
            # timm and transformers stay imported (8 short trials: 42.5 s of gaps fell to 0.4 s,
            # benchmarks/results/README.md).
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=str(config.storage),
            failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
            # PBT restores one trial from another's checkpoint while that one trains on: keep all.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if config.search.scheduler == "pbt" else 1),
            callbacks=[tracking],
            verbose=1,
        ),
    )


def run_search(config: Config, *, resume: bool = False) -> SearchResult:
    """Run (or, with ``resume``, continue) the search ``config`` describes, to the end."""
    space = load_search_space(config)
    experiment_dir = config.experiment_dir
    if not resume and (experiment_dir / EXPERIMENT_CONFIG).exists():
        raise InputError(f"{experiment_dir} already holds a search: continue it with "
                         f"`autoft resume {experiment_dir}`, or change name or storage")
    trainable = load_trainable(config.trainable)
    prepared = trainable.prepare(config)
    tracking = _tracking(config, space)
    with ray_session(config.ray.address):
        if not resume:  # only once Ray is up: a failed join leaves no half-made experiment
            save_experiment_config(config, experiment_dir)
        if resume:
            tuner = tune.Tuner.restore(str(experiment_dir), trainable=_trainable(config, prepared),
                                       resume_unfinished=True, resume_errored=True)
        else:
            tuner = _tuner(config, space, prepared, tracking)
        tuner.fit()
    return finish_search(config, space, tracking)


def finish_search(config: Config, space: SearchSpace,
                  tracking: MlflowTrackingCallback) -> SearchResult:
    """Write best config, trials.csv and plots, and log them to the parent run."""
    experiment_dir = config.experiment_dir
    trials = load_trials(experiment_dir, config.metric_key, config.num_epochs)
    best = best_trial(trials)
    artifacts = [experiment_dir / EXPERIMENT_CONFIG]
    trials_csv = experiment_dir / "trials.csv"
    trials_frame(trials, config.metric_key).to_csv(trials_csv, index=False)
    artifacts.append(trials_csv)
    best_path = None
    if best is not None:
        best_path = experiment_dir / "best_config.yaml"
        best_path.write_text(dump_config(best_config(config, best)), encoding="utf-8")
        artifacts.append(best_path)
        tracking.log_parent_metric(f"best_{config.metric_key}", best.score)
    artifacts += write_plots(trials, space, config.metric_key, experiment_dir / "plots")
    tracking.log_parent_artifacts(artifacts)
    lost = tracking.mark_lost_trials(trial.trial_id for trial in trials)
    if lost:
        log.warning("MLflow runs of trials lost when the driver stopped, marked failed: %s",
                    ", ".join(lost))
    parent_run_id = tracking.finish()
    return SearchResult(experiment_dir, trials, best, parent_run_id, best_path,
                         config.tracking_uri)
