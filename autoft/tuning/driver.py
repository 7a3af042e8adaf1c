"""The Ray Tune driver: one search from a validated config to an exported best config.

Data flows one way: config -> space -> Tuner (OptunaSearch + scheduler) -> trials on Ray workers
-> results -> MLflow (from this process, through a Tune callback) -> export. The dataset is
prepared once here and shipped to every trial through Ray's object store.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.trainable.function_trainable import wrap_function

from autoft.core.config import Config
from autoft.core.errors import InputError
from autoft.core.files import write_text_atomic
from autoft.core.metrics import scored_epoch
from autoft.core.space import SearchSpace
from autoft.core.space_files import load_space
from autoft.tracking import MlflowTrackingCallback
from autoft.tracking.store import check_store, runs_url
from autoft.tracking.tags import SELECTION_TAG
from autoft.tuning.algorithms import (
    labelled_initial_points,
    make_scheduler,
    make_search_alg,
    pbt_param_space,
)
from autoft.tuning.best_model import keep_best_model
from autoft.tuning.confirm import (
    Confirmed,
    Retrain,
    chosen,
    run_retrains,
    still_to_run,
    why_not_confirmed,
)
from autoft.tuning.console import ConsoleCallback
from autoft.tuning.data_parallel import trial_resources
from autoft.tuning.embedded_ray import ray_session
from autoft.tuning.experiment import EXPERIMENT_CONFIG, check_new_experiment, create_experiment
from autoft.tuning.export import BEST_CONFIG, best_config, dump_config
from autoft.tuning.numbering import with_trial_slot
from autoft.tuning.packing import measure_on_gpu, packed, packing, per_worker
from autoft.tuning.plots import write_plots
from autoft.tuning.results import TrialRecord, best_trial, load_trials, trials_frame
from autoft.tuning.retries import NoRetryForLastingFailures
from autoft.tuning.state_backup import StateBackup, restore_state_backup
from autoft.tuning.trial import run_trial, trial_name
from autoft.tuning.trial_actor import trial_class
from trainables import load_trainable
from trainables.backbones import prepare_models
from trainables.registry import check_config

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SearchResult:
    """What a search found and where it is recorded."""

    experiment_dir: Path
    trials: list[TrialRecord]
    best: TrialRecord | None
    parent_run_id: str | None
    best_config_path: Path | None
    tracking_uri: str
    #: The metric trials were judged by (``eval_<metric>``; its direction says which is best).
    metric: str
    #: The experiment's runs view in the MLflow UI (None while the store never answered).
    runs_url: str | None = None
    #: Tracking operations still in the spool, for ``autoft sync`` to send.
    unsent: int = 0
    #: ``autoft resume`` of a search that had finished: nothing ran.
    already_finished: bool = False
    #: The top trials retrained with other seeds, best mean first (``best`` is the first).
    confirmed: list[Confirmed] = field(default_factory=list)
    #: Why ``best`` was chosen, when it was chosen by its mean over seeds.
    selection: str | None = None


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search: its parent run is KILLED and ``autoft resume`` continues it."""

    def __init__(self, experiment_dir: Path) -> None:
        super().__init__(str(experiment_dir))
        self.experiment_dir = experiment_dir


@dataclass(frozen=True)
class SearchPlan:
    """A search checked end to end (config, space, fixed values, searcher, scheduler, tracking
    store) before anything is written; ``autoft validate`` stops here."""

    config: Config
    space: SearchSpace
    search_alg: Any
    scheduler: Any


def load_search_space(config: Config) -> SearchSpace:
    """The config's space, checked against the hyperparameters its trainable understands."""
    if config.space is None:
        raise InputError(f"{config.source or 'config'}: space: required for a search")
    source = (str(config.space) if isinstance(config.space, Path)
              else f"{config.source or 'config'}: space")
    space = load_space(config.space, source)
    check_config(config, space)
    return space


def plan_search(config: Config) -> SearchPlan:
    """Every check a search makes before it writes anything (design.md, CLI: ``validate``)."""
    space = load_search_space(config)
    try:
        plan = SearchPlan(config, space, make_search_alg(config, space, config.metric_key),
                          make_scheduler(config, space))
    except InputError as exc:  # their messages name the key; say which file it is in
        raise InputError(f"{config.source or 'config'}: {exc}") from None
    check_store(config.tracking_uri, f"{config.source or 'config'}: tracking.uri")
    check_gpus(config)
    return plan


def check_gpus(config: Config) -> None:
    """Refuse GPU trials on an embedded Ray without a GPU: Ray would keep them pending forever.
    (A cluster, ``ray.address``, may have GPU workers that this machine lacks.)"""
    gpu = config.resources.gpu
    wants_gpu = gpu != "auto" and gpu > 0
    if config.ray.address is None and wants_gpu and not torch.cuda.is_available():
        raise InputError(f"{config.source or 'config'}: resources.gpu: {gpu:g} GPU per trial, "
                         "but this machine has no CUDA GPU and no ray.address names a cluster "
                         "that has (the trials would never start)")


def _trainable(config: Config, prepared: Any) -> Any:
    resources = config.resources
    trainable = wrap_function(tune.with_parameters(run_trial, config=config, prepared=prepared))
    return tune.with_resources(trial_class(trainable), trial_resources(
        resources.cpu, resources.gpu, resources.workers))


def _tracking(config: Config, space: SearchSpace) -> MlflowTrackingCallback:
    return MlflowTrackingCallback(
        tracking_uri=config.tracking_uri,
        experiment_name=config.experiment_name,
        run_name=config.name,
        state_dir=config.experiment_dir,
        num_epochs=config.num_epochs,
        first_points=first_points(config, space),
        parent_params={**config.fixed, "algorithm": config.search.algorithm,
                       "scheduler": config.search.scheduler,
                       "num_samples": config.search.num_samples,
                       "space": ",".join(space.names)},
    )


def first_points(config: Config, space: SearchSpace) -> dict[int, str]:
    """What each of the search's first trials is, by trial index (console, MLflow)."""
    return {index: name for index, (name, _) in
            enumerate(labelled_initial_points(config, space))}


def _callbacks(config: Config, space: SearchSpace,
               tracking: MlflowTrackingCallback) -> list[tune.Callback]:
    return [tracking, ConsoleCallback(config.metric_key, config.num_epochs,
                                      first_points=first_points(config, space)),
            NoRetryForLastingFailures(), StateBackup(config.experiment_dir)]


def _tuner(plan: SearchPlan, prepared: Any, tracking: MlflowTrackingCallback,
           verbose: bool) -> tune.Tuner:
    config = plan.config
    return tune.Tuner(
        _trainable(config, prepared),
        param_space=with_trial_slot(pbt_param_space(config, plan.space)),
        tune_config=tune.TuneConfig(
            metric=config.metric_key, mode=config.metric_mode,
            search_alg=plan.search_alg,
            scheduler=plan.scheduler,
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
            checkpoint_config=_checkpoints(config),
            callbacks=_callbacks(config, plan.space, tracking),
            verbose=2 if verbose else 0,
        ),
    )


def _checkpoints(config: Config) -> tune.CheckpointConfig:
    """Each trial's latest checkpoint (to resume from), with ``search.keep_best_model`` also its
    best-scoring one; every one under PBT, which restores one trial from another's checkpoint
    while that one trains on."""
    if config.search.scheduler == "pbt":
        return tune.CheckpointConfig(num_to_keep=None)
    if config.search.keep_best_model and config.search.select == "best":
        return tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=config.metric_key,
                                     checkpoint_score_order=config.metric_mode)
    return tune.CheckpointConfig(num_to_keep=1)


def run_search(config: Config, *, resume: bool = False, verbose: bool = False) -> SearchResult:
    """Run (or, with ``resume``, continue) the search ``config`` describes, to the end, then
    its confirmation retrains (:mod:`autoft.tuning.confirm`).

    Everything is checked before anything is written; the experiment folder is then made
    exclusively. Ctrl-C raises :class:`SearchInterrupted` once the parent run is marked KILLED;
    no best config is written then.
    """
    plan = plan_search(config)
    experiment_dir = config.experiment_dir
    tracking = _tracking(config, plan.space)
    trials_done = False
    if resume:
        restore_state_backup(experiment_dir)
        trials = load_trials(experiment_dir, config.metric_key, config.num_epochs,
                             config.search.select)
        trials_done = is_finished(trials, config.search.num_samples)
        if trials_done and not still_to_run(config, trials):
            return _result(config, tracking, trials, *chosen(config, trials),
                           already_finished=True)
    else:
        check_new_experiment(config)
    prepared = prepare_models(load_trainable(config.trainable), config, plan.space)
    # Ctrl-C raises KeyboardInterrupt here instead of Ray's own stop-and-return, so that an
    # interrupted search is never taken for a finished one.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if not verbose:  # Ray's newer console output prints its boxed header at any verbosity
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_session(config.ray.address):
        plan = _packed(plan, prepared)
        config = plan.config
        if not resume:  # only once Ray is up: a failed join leaves no half-made experiment
            create_experiment(config)
        try:
            if not trials_done:
                _search_tuner(plan, prepared, tracking, resume, verbose).fit()
            trials = load_trials(experiment_dir, config.metric_key, config.num_epochs,
                                 config.search.select)
            skipped = why_not_confirmed(config, trials)
            if skipped:
                print(skipped, flush=True)
            run_retrains(config, prepared, still_to_run(config, trials),
                         functools.partial(_track_retrain, tracking, config))
        except KeyboardInterrupt:
            tracking.finish("KILLED", timeout=10)
            raise SearchInterrupted(experiment_dir) from None
    return finish_search(config, plan.space, tracking, trials, prepared)


def _packed(plan: SearchPlan, prepared: Any) -> SearchPlan:
    """The plan with ``resources.gpu: auto`` resolved on the cluster Ray is connected to."""
    config = plan.config
    if config.resources.gpu != "auto":
        return plan
    gpus = int(ray.cluster_resources().get("GPU", 0))
    whole_gpus = per_worker(config, gpus)
    if whole_gpus is not None:
        return plan_search(whole_gpus)
    measure = ray.remote(num_gpus=1, max_retries=0)(measure_on_gpu)
    layout = packing(config, plan.space, prepared, gpus,
                     lambda *args: ray.get(measure.remote(*args))) if gpus else None
    if layout is not None:
        print(layout.describe(), flush=True)
    return plan_search(packed(config, layout))


def _search_tuner(plan: SearchPlan, prepared: Any, tracking: MlflowTrackingCallback,
                  resume: bool, verbose: bool) -> tune.Tuner:
    config = plan.config
    if resume:
        return tune.Tuner.restore(str(config.experiment_dir),
                                  trainable=_trainable(config, prepared),
                                  resume_unfinished=True, resume_errored=False)
    return _tuner(plan, prepared, tracking, verbose)


def _track_retrain(tracking: MlflowTrackingCallback, config: Config, retrain: Retrain) -> None:
    key = f"{retrain.name}-seed{retrain.seed}"
    print(f"{retrain.name} seed {retrain.seed} (confirm): "
          + (f"{config.metric_key}={retrain.score:.4g}" if retrain.error is None
             else f"failed: {retrain.error}"), flush=True)
    tracking.log_confirmation(key, confirms=retrain.trial_id,
                              params={"seed": retrain.seed, "confirms": retrain.trial_id},
                              epochs=retrain.epochs, error=retrain.error)


def is_finished(trials: list[TrialRecord], num_samples: int) -> bool:
    """Whether a search ran all its trials to an end (completed, pruned or failed)."""
    return len(trials) >= num_samples and all(t.status != "running" for t in trials)


def selection_text(metric: str, trials: list[TrialRecord],
                   confirmations: list[Confirmed]) -> str:
    """Why the exported best is the one it is (console, parent run tag)."""
    pick, single = confirmations[0], best_trial(trials, metric)
    text = (f"{pick.trial.name}: best mean {metric} {pick.mean:.4f} ± {pick.std:.4f} over "
            f"{len(pick.scores)} seeds (its own trial {pick.trial.score:.4f})")
    if single is not None and single.trial_id != pick.trial.trial_id:
        text += f"; the best single trial, {single.name} ({single.score:.4f}), averaged lower"
    return text


def finish_search(config: Config, space: SearchSpace, tracking: MlflowTrackingCallback,
                  trials: list[TrialRecord], prepared: Any = None) -> SearchResult:
    """Write best config, trials.csv and plots, and log them to the parent run; with
    ``search.keep_best_model``, keep the best trial's model (from ``prepared`` data)."""
    experiment_dir = config.experiment_dir
    metric = config.metric_key
    best, confirmations = chosen(config, trials)
    artifacts = [experiment_dir / EXPERIMENT_CONFIG]
    frame = trials_frame(trials, metric)
    for column, value in (("seeds", lambda c: len(c.scores)), ("seed_mean", lambda c: c.mean),
                          ("seed_std", lambda c: c.std)):
        by_trial = {c.trial.trial_id: value(c) for c in confirmations}
        frame[column] = frame["trial_id"].map(by_trial)
    trials_csv = experiment_dir / "trials.csv"
    frame.to_csv(trials_csv, index=False)
    for trial in trials:
        peak = scored_epoch(trial.history, metric)
        if peak is not None:
            tracking.log_best_epoch(trial.trial_id, metric, peak, trial.history[peak])
    artifacts.append(trials_csv)
    if best is not None:
        exported = best_config(config, best)
        best_path = write_text_atomic(experiment_dir / BEST_CONFIG, dump_config(exported))
        artifacts.append(best_path)
        if config.search.keep_best_model and prepared is not None:
            kept = keep_best_model(config, prepared, best, exported)
            if kept is not None:
                print(f"best model ({best.name} at epoch {best.scored_epoch}): {kept}",
                      flush=True)
        tracking.log_parent_metric(f"best_{metric}", best.score)
    if confirmations:
        tracking.log_parent_metric(f"best_{metric}_mean", confirmations[0].mean)
        tracking.log_parent_metric(f"best_{metric}_std", confirmations[0].std)
        tracking.set_parent_tags({SELECTION_TAG: selection_text(metric, trials, confirmations)})
    artifacts += write_plots(trials, space, metric, experiment_dir / "plots")
    tracking.log_parent_artifacts(artifacts)
    lost = tracking.mark_lost_trials(trial.trial_id for trial in trials)
    if lost:
        log.warning("MLflow runs of trials lost when the driver stopped, marked failed: %s",
                    ", ".join(lost))
    return _result(config, tracking, trials, best, confirmations)


def _result(config: Config, tracking: MlflowTrackingCallback, trials: list[TrialRecord],
            best: TrialRecord | None, confirmations: list[Confirmed],
            already_finished: bool = False) -> SearchResult:
    """End the parent run, drain the tracking, and say what the search found."""
    parent_run_id = tracking.finish()
    best_path = config.experiment_dir / BEST_CONFIG
    experiment_id = tracking.experiment_id
    return SearchResult(
        config.experiment_dir, trials, best, parent_run_id,
        best_path if best_path.is_file() else None, config.tracking_uri, config.metric_key,
        runs_url=None if experiment_id is None else runs_url(config.tracking_uri, experiment_id),
        unsent=tracking.unsent(), already_finished=already_finished,
        confirmed=confirmations,
        selection=selection_text(config.metric_key, trials, confirmations) if confirmations
        else None)
