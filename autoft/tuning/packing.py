"""Packed GPU trials (``resources.gpu: auto``): as many trials per GPU as fit in its memory.

One small fine-tune leaves an H200 idle most of the time (4 MiniLM trials on one GPU trained
4.2x as fast as one, 8 trials 7.9x: benchmarks/results/gpu.md), so with GPUs in the cluster and
``resources.gpu`` unset or ``auto`` the search measures one trial's peak memory on a GPU (a few
training steps of the most memory-hungry configuration the space allows: the largest batch and
length, every layer trainable, L2-SP's copy of the weights if searched) and packs
``floor(HEADROOM * memory / (peak + CONTEXT_BYTES))`` trials per GPU, at most
:data:`MAX_PER_GPU`; ``max_concurrent`` follows unless the config sets it. Without GPUs the
trials run on CPUs (``gpu: 0``). A trial that still runs out of memory fails alone, with its
error recorded; the others go on.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoft.core.config import Config
from autoft.core.space import CategoricalParam, SearchSpace
from trainables.backbones import with_model
from trainables.registry import BUILTIN

logger = logging.getLogger(__name__)

#: Memory each trial process holds outside PyTorch's allocator (CUDA context, cuBLAS and cuDNN
#: workspaces): about 500 MiB on an H200 with torch 2.14.
CONTEXT_BYTES = 768 * 2**20
#: Share of the GPU's memory the packed trials may plan to use (fragmentation, longer batches).
HEADROOM = 0.85
#: Trials per GPU at most: beyond 8 the GPU was already 45% busy and its CPU share the limit.
MAX_PER_GPU = 8
#: Hyperparameters whose largest value needs the most memory.
LARGEST = ("batch_size", "max_length", "l2sp_alpha", "l2sp_beta")


@dataclass(frozen=True)
class Packing:
    """How trials share the GPUs, and the measurement it comes from."""

    gpus: int
    per_gpu: int
    #: Bytes one trial's allocator held at its peak (None: not measured, one trial per GPU).
    peak_bytes: int | None
    gpu_bytes: int | None
    max_concurrent: int

    @property
    def fraction(self) -> float:
        """``resources.gpu`` per trial: ``1 / per_gpu`` rounded down to Ray's 4 decimals."""
        return math.floor(10_000 / self.per_gpu) / 10_000

    def describe(self) -> str:
        """One line for the console and ``autoft validate``."""
        if self.peak_bytes is None:
            return (f"resources.gpu auto: 1 trial per GPU on {self.gpus} GPU(s) (no memory "
                    "probe for this trainable)")
        return (f"resources.gpu auto: {self.per_gpu} trial(s) per GPU (gpu {self.fraction:g}) "
                f"on {self.gpus} GPU(s), {self.max_concurrent} at once: a trial peaked at "
                f"{self.peak_bytes / 2**30:.2f} GiB of {self.gpu_bytes / 2**30:.0f} GiB")


def trials_per_gpu(peak_bytes: int, gpu_bytes: int) -> int:
    """How many trials of ``peak_bytes`` fit a GPU of ``gpu_bytes`` (at least 1).

    >>> trials_per_gpu(2 * 2**30, 140 * 2**30)
    8
    >>> trials_per_gpu(30 * 2**30, 80 * 2**30)
    2
    """
    fits = int(HEADROOM * gpu_bytes // (peak_bytes + CONTEXT_BYTES))
    return max(1, min(MAX_PER_GPU, fits))


def hungriest(config: Config, space: SearchSpace) -> dict[str, Any]:
    """The hyperparameters of the space's most memory-hungry trial: the largest batch, length
    and L2-SP weights, every layer trainable from the start (``frz_blocks`` 0)."""
    point = {**config.fixed, "frz_blocks": 0}
    for param in space.params:
        if param.name in LARGEST:
            values = param.values() if isinstance(param, CategoricalParam) else [param.high]
            point[param.name] = max(values)
    return point


#: ``measure(config, prepared, hparams)``: a trial's peak bytes and the GPU's total bytes.
Measure = Callable[[Config, Any, dict[str, Any]], tuple[int, int]]


def packing(config: Config, space: SearchSpace, prepared: Mapping[str, Any], gpus: int,
            measure: Measure) -> Packing:
    """The packing for ``gpus`` GPUs; ``measure(config, prepared, hparams)`` returns a trial's
    peak bytes and the GPU's total bytes (run on a GPU), for each model of the search
    (``prepared``, by model: a searched ``model`` packs as its largest choice)."""
    explicit = "max_concurrent" in config.search.model_fields_set
    builtin = BUILTIN.get(config.trainable)
    if builtin is None or not builtin.fine_tunes:
        per_gpu, peak, total = 1, None, None
    else:
        peak, total = max(measure(with_model(config, model), data, hungriest(config, space))
                          for model, data in prepared.items())
        per_gpu = trials_per_gpu(peak, total)
    at_once = config.search.max_concurrent if explicit else min(config.search.num_samples,
                                                                per_gpu * gpus)
    return Packing(gpus=gpus, per_gpu=per_gpu, peak_bytes=peak, gpu_bytes=total,
                   max_concurrent=at_once)


def measure_on_gpu(config: Config, prepared: Any, hparams: dict[str, Any]) -> tuple[int, int]:
    """A trial's peak bytes over its first steps and the GPU's total bytes, measured on the
    GPU this process sees."""
    import torch

    module = importlib.import_module(BUILTIN[config.trainable].module)
    peak = module.measure_memory(config, prepared, hparams)
    return peak, torch.cuda.mem_get_info()[1]


def per_worker(config: Config, gpus: int) -> Config | None:
    """``config`` with ``resources.gpu: auto`` resolved for data-parallel trials: a whole GPU per
    worker where there are ``gpus`` (two workers on one GPU cannot both use it), else none;
    None for trials of one worker, which are packed by their measured memory instead."""
    if config.resources.gpu != "auto" or config.resources.workers == 1:
        return None
    return config.model_copy(update={"resources": config.resources.model_copy(
        update={"gpu": 1.0 if gpus else 0.0})})


def describe_auto(config: Config, space: SearchSpace,
                  prepare: Callable[[], Mapping[str, Any]]) -> str:
    """What ``resources.gpu: auto`` will choose, for ``autoft validate``: measured here when this
    machine runs the trials (``prepare`` reads the data), else said when."""
    if config.resources.workers > 1:
        return (f"resources.gpu auto: a GPU for each of a trial's {config.resources.workers} "
                "data-parallel workers where there are GPUs, else the CPU")
    if config.ray.address is not None:
        return ("resources.gpu auto: the search measures a trial on a GPU of the cluster when it "
                "starts (no GPUs: trials run on CPUs)")
    import torch

    if not torch.cuda.is_available():
        return "resources.gpu auto: no CUDA GPU on this machine: the trials run on the CPU"
    return packing(config, space, prepare(), torch.cuda.device_count(),
                   measure_on_gpu).describe()


def packed(config: Config, plan: Packing | None) -> Config:
    """``config`` with ``resources.gpu`` a number: the packing's fraction, 0 without GPUs."""
    if config.resources.gpu != "auto":
        return config
    if plan is None:
        return config.model_copy(update={"resources": config.resources.model_copy(
            update={"gpu": 0.0})})
    logger.info(plan.describe())
    return config.model_copy(update={
        "resources": config.resources.model_copy(update={"gpu": plan.fraction}),
        "search": config.search.model_copy(update={"max_concurrent": plan.max_concurrent})})
