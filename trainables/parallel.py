"""The workers of one data-parallel trial, as the loop sees them (``resources.workers``).

Each worker runs the same loop on its own rows of every global batch (``batch_size`` is the
global batch, so the schedule counts the same optimizer steps as one worker would) and on its
own share of the evaluation batches. Per step the workers sum, in one all-reduce of a few
numbers and then of the gradients, what makes their update the one a single worker would make
on the whole batch: each worker's loss is weighted by how many terms it averages (examples, or
scored tokens), so the sum divided by the total weight is the whole batch's mean loss, L2-SP's
penalty counted once. The same holds for a worker whose share of a short last batch is empty.

Why not torch's ``DistributedDataParallel``: it hooks the parameters that need gradients when it
wraps the model, and gradual unfreezing changes them every epoch; every worker must run a
forward and backward pass each step, which a worker without rows cannot; and it averages over
workers, not over the examples each one had. What it buys, overlapping the all-reduce with the
backward pass, matters less than exactness here (the benchmarks measure what it costs).

The process group is torch.distributed's default one, set up by whoever starts the workers (the
search driver: :mod:`autoft.tuning.data_parallel`); without one, :class:`Workers` is the single
worker every operation leaves alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

#: Gradients all-reduced at once, in elements (as DistributedDataParallel's 25 MiB buckets, in
#: fp32): bounds the extra memory of the flattened copy for a large model.
BUCKET_ELEMENTS = 25 * 2**20 // 4


@dataclass(frozen=True)
class Workers:
    """This worker's ``rank`` among ``size`` workers of one trial (rank 0 reports and saves)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> Workers:
        """The workers of torch.distributed's default process group, or the single one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def lead(self) -> bool:
        """Whether this worker reports the trial's metrics and writes its checkpoints."""
        return self.rank == 0

    def rows(self, batch: Sequence[T]) -> Sequence[T]:
        """This worker's rows of a global batch (every ``size``-th, from ``rank``): possibly
        none, for a last batch shorter than the number of workers."""
        return batch[self.rank::self.size]

    def share(self, batches: Sequence[T]) -> Sequence[T]:
        """This worker's whole batches of an evaluation pass."""
        return batches[self.rank::self.size]

    def start_alike(self, model: nn.Module) -> None:
        """Give every worker rank 0's weights and buffers (they load the same pretrained
        weights under the same seed; this makes sure)."""
        if self.size > 1:
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, 0)

    def sync_gradients(self, model: nn.Module, loss: torch.Tensor,
                       weight: torch.Tensor) -> torch.Tensor:
        """Turn each worker's gradients of ``weight`` x (its loss + penalty) into the gradients
        of the whole batch's mean; the whole batch's mean loss. One worker: ``loss`` itself.

        The parameters that require gradients now (gradual unfreezing: the same on every
        worker) take part; one that got no gradient on any worker keeps none, as it would on
        one worker."""
        if self.size == 1:
            return loss
        parameters = [p for p in model.parameters() if p.requires_grad]
        device = loss.device
        present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32,
                               device=device)
        totals = torch.cat([torch.stack([loss.float() * weight, weight.float()]), present])
        dist.all_reduce(totals)
        total_weight = totals[1].clamp_min(1e-12)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        for bucket in _buckets(grads):
            flat = torch._utils._flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat /= total_weight
            for grad, reduced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket),
                                     strict=True):
                grad.copy_(reduced)
        for parameter, grad, workers_with_grad in zip(parameters, grads, totals[2:].tolist(),
                                                      strict=True):
            parameter.grad = grad if workers_with_grad else None
        return totals[0] / total_weight

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the workers (in place)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def gather(self, items: list[Any]) -> list[Any]:
        """Every worker's ``items``, in rank order, on every worker."""
        if self.size == 1:
            return items
        everyone: list[Any] = [None] * self.size
        dist.all_gather_object(everyone, items)
        return [item for worker_items in everyone for item in worker_items]

    def from_lead(self, value: T | None) -> T | None:
        """Rank 0's ``value`` on every worker (a resumed trial's state, read once)."""
        if self.size == 1:
            return value
        box = [value if self.lead else None]
        dist.broadcast_object_list(box, 0)
        return box[0]


#: The single worker of a trial that is not data-parallel.
ALONE = Workers()


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    buckets: list[list[torch.Tensor]] = [[]]
    filled = 0
    for tensor in tensors:
        if buckets[-1] and filled + tensor.numel() > BUCKET_ELEMENTS:
            buckets.append([])
            filled = 0
        buckets[-1].append(tensor)
        filled += tensor.numel()
    return [bucket for bucket in buckets if bucket]
