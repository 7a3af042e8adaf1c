"""Data-parallel trials (``resources.workers: N``): the Tune trial is worker 0, and workers
1..N-1 are Ray tasks in the placement group Tune reserved for the trial; torch.distributed
joins them (gloo on CPUs, NCCL on GPUs) and :mod:`trainables.parallel` makes the loop's steps,
evaluation and resume those of one worker on the whole batch.

Why not Ray Train's ``TorchTrainer`` inside the trial: the Tune trial stays what Tune reports,
checkpoints, prunes (ASHA, HyperBand, PBT) and retries, and what the driver's MLflow callback
logs, once per epoch. A ``TorchTrainer`` in a trial runs its own controller actor and workers
beside it, reports through that controller (Train V2's Tune integration forwards rank 0's
metrics only, and Ray's ``MLflowLoggerCallback`` is not usable with it: ray-project/ray#64179,
#64253), and would restore its own checkpoints; here rank 0 restores the trial's checkpoint and
sends the state to the others. Placement groups are what Ray Train uses underneath: Tune
reserves all N workers' resources at once (``PlacementGroupFactory``, the first bundle for the
trial itself), so a multi-worker trial is scheduled, paused and stopped like any other.

A worker that dies or fails takes its peers' collective operations down with it (gloo and NCCL
close the connections), so the attempt fails on rank 0 with the worker's own error, and Tune
retries the trial from its last checkpoint (``search.max_failures``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray import tune
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from autoft.core.config import Config
from autoft.core.errors import InputError
from trainables import TrialContext, load_trainable
from trainables.api import Reporter, TrialFailed

log = logging.getLogger(__name__)

#: How long a worker waits for its peers: to join (a new worker process imports torch and the
#: trainable and loads the model first) and in any collective operation (a peer that hangs).
PEER_TIMEOUT = timedelta(minutes=10)
#: How long rank 0, after an error, waits for a failed worker to report why (its own error
#: names the cause better than the broken connection rank 0 saw).
WHY_TIMEOUT_S = 10.0


def trial_resources(cpu: float, gpu: float, workers: int) -> dict[str, float] | Any:
    """What Tune reserves for one trial: its one worker's resources, or a placement group of a
    bundle per worker (Ray packs them on as few nodes as hold them, else spreads them)."""
    if workers == 1:
        return {"cpu": cpu, "gpu": gpu}
    bundle = {name: amount for name, amount in (("CPU", cpu), ("GPU", gpu)) if amount}
    return tune.PlacementGroupFactory([bundle] * workers, strategy="PACK")


class FollowerReporter:
    """The reporter of workers 1..N-1: the loop reports and restores through rank 0 alone."""

    def __init__(self, trial: TrialContext) -> None:
        self.trial = trial

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None = None) -> None:
        raise RuntimeError("only a data-parallel trial's rank 0 reports")


@contextmanager
def process_group(store: dist.Store, rank: int, size: int) -> Iterator[None]:
    """This process as worker ``rank`` of ``size`` in torch.distributed's default group (NCCL
    where a GPU is visible: Ray gives each worker its own, as device 0), left when done."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(0)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size,
                            timeout=PEER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _follow(config: Config, prepared: Any, hparams: dict[str, Any], trial: TrialContext,
            rank: int, size: int, host: str, port: int) -> None:
    """Worker ``rank`` of a trial (a Ray task in the trial's placement group)."""
    store = dist.TCPStore(host, port, size, is_master=False, timeout=PEER_TIMEOUT)
    with process_group(store, rank, size):
        load_trainable(config.trainable).fit(config, prepared, hparams, FollowerReporter(trial))


def fit_data_parallel(config: Config, prepared: Any, hparams: dict[str, Any],
                      reporter: Reporter, fit: Callable[..., Any]) -> None:
    """Run ``fit(config, prepared, hparams, reporter)`` (a trainable's) as rank 0 of
    ``config.resources.workers``, the others started here in the trial's placement group."""
    resources, size = config.resources, config.resources.workers
    host = ray.util.get_node_ip_address()
    store = dist.TCPStore(host, 0, size, is_master=True, wait_for_workers=False,
                          timeout=PEER_TIMEOUT)
    group = get_current_placement_group()
    follow = ray.remote(_follow)
    shared = ray.put(prepared)  # once for all followers
    followers = [follow.options(
        num_cpus=resources.cpu, num_gpus=resources.gpu, max_retries=0,
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=rank)).remote(
                config, shared, hparams, reporter.trial, rank, size, host, store.port)
        for rank in range(1, size)]
    try:
        with process_group(store, 0, size):
            fit(config, prepared, hparams, reporter)
        ray.get(followers)
    except (TrialFailed, InputError):  # every worker fails alike (a NaN loss is the batch's)
        _cancel(followers)
        raise
    except Exception as exc:
        why = _failed_follower(followers)
        _cancel(followers)
        if why is None:
            raise
        raise RuntimeError(f"worker {why[0]} of {size} failed: {why[1]}") from exc


def _cancel(followers: list[ray.ObjectRef]) -> None:
    for follower in followers:
        ray.cancel(follower, force=True)


def _failed_follower(followers: list[ray.ObjectRef]) -> tuple[int, str] | None:
    """The first follower (its rank) that failed, and why; None if none did so far."""
    done, _ = ray.wait(followers, num_returns=len(followers), timeout=WHY_TIMEOUT_S)
    for rank, follower in enumerate(followers, start=1):
        if follower in done:
            try:
                ray.get(follower)
            except Exception as exc:  # noqa: BLE001 (its error, as Ray gives it)
                return rank, str(exc).strip().splitlines()[-1]
    return None
