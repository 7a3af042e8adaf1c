"""The one fine-tuning loop of the text and image trainables, for every task.

A trainable describes its model and data as a :class:`Job`, whose :class:`~trainables.tasks.Task`
says what is learnt (the loss, the metrics); :func:`run` does the rest, top to bottom: seed and
device, optimizer with the ULMFiT strategies of :mod:`autoft.finetune` (discriminative rates,
schedule, gradual unfreezing, L2-SP), resume from the reporter's state, then per epoch: train,
evaluate, report ``epoch``, ``train_loss``, ``eval_<metric>`` for each of the task's metrics,
``eval_loss``, ``lr`` (the head's rate at the end of the epoch) and ``epoch_time_s`` (training
plus evaluation) with the state to resume after that epoch.

The optimizer is AdamW's fused kernel (on CPU several times faster than its per-tensor loop).
Per step the loop does no host-device synchronisation except a finiteness check of the summed
loss every ``CHECK_EVERY`` steps: a NaN/inf loss raises :class:`~trainables.api.TrialFailed`.
On CUDA it runs under autocast (bf16 where supported, else fp16 with a gradient scaler); on CPU
in fp32 with the trial's CPU count as torch threads, reproducibly for a given ``seed``.

A data-parallel trial (:mod:`trainables.parallel`) runs this loop on every worker: each trains
on its rows of every global batch and evaluates its share of the evaluation batches; the
gradients and the metrics are those of the whole batches and the whole evaluation set; rank 0
alone reports, and a resumed state is read by rank 0 and sent to the others.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autoft.finetune import L2SP, GradualUnfreezer, build_param_groups, lr_multiplier
from trainables.api import Reporter, TrialFailed
from trainables.hparams import HParams
from trainables.parallel import ALONE, Workers
from trainables.tasks import Task

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]

#: Steps between two finiteness checks of the loss (each check is one device sync).
CHECK_EVERY = 50
#: Training steps :func:`peak_memory` measures (the first steps allocate the optimizer state).
PROBE_STEPS = 3


@dataclass(frozen=True)
class Runtime:
    """Where a trial runs: the device, the autocast dtype (None: full precision) and which of
    the trial's workers this is (each trains on its rows of every batch)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    workers: Workers = ALONE


@dataclass
class Job:
    """What the loop needs from a trainable: the model, its batches, its forward pass and the
    task (loss and metrics).

    ``train_batches(epoch)`` must be deterministic given the epoch (seeded shuffling), so that a
    resumed trial sees the same batches as an uninterrupted one. On one of several workers
    (``runtime.workers``) it yields that worker's rows of each global batch, or None for a
    batch where it has none, and ``eval_batches`` its share of the evaluation batches.
    """

    model: nn.Module
    train_batches: Callable[[int], Iterable[Batch | None]]
    steps_per_epoch: int
    eval_batches: Callable[[], Iterable[Batch]]
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    task: Task


def setup(threads: float, seed: int) -> Runtime:
    """Seed every generator; pick CUDA (with its AMP dtype) if present, else CPU threads; find
    this worker among the trial's."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    workers = Workers.current()
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Runtime(torch.device("cuda"), dtype, workers)
    torch.set_num_threads(max(1, int(threads)))
    return Runtime(torch.device("cpu"), None, workers)


@dataclass
class Training:
    """The model with what updates it: one :meth:`step` is one optimizer step on one batch."""

    model: nn.Module
    runtime: Runtime
    job: Job
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    l2sp: L2SP | None

    @classmethod
    def start(cls, job: Job, hp: HParams, runtime: Runtime) -> Training:
        """The job's model on the device with AdamW over its ULMFiT parameter groups, the
        schedule over the whole fine-tune, and L2-SP when asked for."""
        model = job.model.to(runtime.device)
        runtime.workers.start_alike(model)
        optimizer = torch.optim.AdamW(build_param_groups(
            model, hp.learning_rate, hp.dis_blocks, hp.factor, hp.weight_decay), fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(
            hp.lr_schedule, job.steps_per_epoch * hp.num_epochs, cut_frac=hp.cut_frac,
            ratio=hp.ratio, warmup_proportion=hp.warmup_proportion,
            end_lr_ratio=hp.end_lr_ratio))
        scaler = torch.amp.GradScaler(runtime.device.type,
                                      enabled=runtime.amp_dtype == torch.float16)
        l2sp = L2SP(model, hp.l2sp_alpha, hp.l2sp_beta) if hp.l2sp_alpha or hp.l2sp_beta \
            else None
        return cls(model, runtime, job, optimizer, scheduler, scaler, l2sp)

    def parts(self) -> dict[str, Any]:
        """What a checkpoint saves and a resumed trial loads."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": self.scaler}

    def step(self, batch: Batch | None) -> torch.Tensor:
        """One optimizer step on this worker's rows of a batch (None: it has none of this
        one); the whole batch's mean loss, on the device (no host sync on one worker)."""
        device, dtype, workers = self.runtime.device, self.runtime.amp_dtype, self.runtime.workers
        loss = weight = torch.zeros((), device=device)
        if batch is not None:
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch[0].items()}
            labels = batch[1].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = self.job.forward(self.model, inputs)
            loss = self.job.task.loss(logits.float(), labels)
            objective = loss + self.l2sp.penalty() if self.l2sp is not None else loss
            if workers.size > 1:  # weighted, summed over the workers, then divided
                weight = self.job.task.loss_weight(labels)
                objective = objective * weight
            self.scaler.scale(objective).backward()
        loss = workers.sync_gradients(self.model, loss, weight)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss.detach()


def run(hp: HParams, reporter: Reporter, build: Callable[[Runtime], Job],
        threads: float) -> dict[str, float]:
    """Fine-tune the job ``build`` makes with ``hp`` (on the CPU: ``threads`` torch threads);
    return the last epoch's metrics."""
    runtime = setup(threads, hp.seed)
    job = build(runtime)
    training = Training.start(job, hp, runtime)
    model, parts = training.model, training.parts()
    unfreezer = GradualUnfreezer(model, hp.frz_blocks)

    metrics: dict[str, float] = {}
    first_epoch = 0
    workers = runtime.workers
    saved = workers.from_lead(reporter.restore() if workers.lead else None)
    if saved is not None:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        _set_rng_state(saved["rng"])
        metrics, first_epoch = saved["metrics"], saved["epoch"] + 1

    for epoch in range(first_epoch, hp.epochs_to_train):
        started = time.perf_counter()
        model.train()
        unfreezer.set_epoch(epoch)
        loss_sum = torch.zeros((), device=runtime.device)
        steps = 0
        for batch in job.train_batches(epoch):
            loss_sum += training.step(batch)
            steps += 1
            if steps % CHECK_EVERY == 0:
                _check_finite(loss_sum, epoch, steps)
        _check_finite(loss_sum, epoch, steps)

        scores = evaluate(model, job, runtime)
        metrics = {"epoch": epoch, "train_loss": loss_sum.item() / max(steps, 1),
                   **{f"eval_{name}": value for name, value in scores.items()},
                   "lr": _head_lr(training.optimizer),
                   "epoch_time_s": time.perf_counter() - started}
        if workers.lead:
            state = {name: part.state_dict() for name, part in parts.items()}
            reporter.report(metrics, _to_cpu({**state, "rng": _rng_state(), "epoch": epoch,
                                              "metrics": metrics}))
    return metrics


def peak_memory(hp: HParams, build: Callable[[Runtime], Job],
                steps: int = PROBE_STEPS) -> int:
    """Bytes of GPU memory the trial's allocator held at its peak over ``steps`` training
    steps (every layer trainable) and one evaluation batch; 0 on a CPU."""
    runtime = setup(1, hp.seed)
    if runtime.device.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats()
    job = build(runtime)
    training = Training.start(job, hp, runtime)
    training.model.train()
    for batch in itertools.islice(job.train_batches(0), steps):
        training.step(batch)
    training.model.eval()
    with torch.inference_mode(), torch.autocast("cuda", dtype=runtime.amp_dtype):
        for inputs, _ in itertools.islice(job.eval_batches(), 1):
            job.forward(training.model, {k: v.to(runtime.device) for k, v in inputs.items()})
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_reserved())


@torch.inference_mode()
def evaluate(model: nn.Module, job: Job, runtime: Runtime) -> dict[str, float]:
    """The task's metrics and its mean loss (``loss``, per example) on the job's evaluation
    batches, over every worker's share; the loss orders trials whose metric ties (early
    stopping)."""
    model.eval()
    task, collected, examples = job.task, [], 0
    loss_sum = torch.zeros((), device=runtime.device)
    for inputs, batch_labels in job.eval_batches():
        inputs = {k: v.to(runtime.device, non_blocking=True) for k, v in inputs.items()}
        labels = batch_labels.to(runtime.device, non_blocking=True)
        with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype,
                            enabled=runtime.amp_dtype is not None):
            logits = job.forward(model, inputs).float()
        loss_sum += task.loss(logits, labels) * len(labels)
        collected.append(task.collect(logits, labels))
        examples += len(labels)
    workers = runtime.workers
    totals = workers.sum(torch.stack([loss_sum, torch.tensor(float(examples),
                                                             device=runtime.device)]))
    return {**task.metrics(workers.gather(collected)),
            "loss": totals[0].item() / max(totals[1].item(), 1)}


def _check_finite(loss_sum: torch.Tensor, epoch: int, steps: int) -> None:
    if not torch.isfinite(loss_sum):
        raise TrialFailed(f"training loss became {loss_sum.item()} in epoch {epoch} "
                          f"(by step {steps} of the epoch); lower the learning rate")


def _head_lr(optimizer: torch.optim.Optimizer) -> float:
    """The current rate of the head (group ``block`` 0: the head, or the whole model)."""
    return float(next(g["lr"] for g in optimizer.param_groups if g["block"] == 0))


def _rng_state() -> dict[str, Any]:
    """Every generator's state, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_cpu(value: Any) -> Any:
    """A copy with every tensor on the CPU, detached from the live model and optimizer."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
