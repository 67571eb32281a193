"""One process or many (torchrun): the process group, and the few collectives training needs.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous); without them training runs
as a single process and every helper here is the identity. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    gather_group: object = None  # a second group for the autograd all_gather (see global_mean)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: torch.device) -> ProcessGroup:
    """Join torchrun's group (nccl on CUDA, gloo on CPU), or a single process without it."""
    if not launched_by_torchrun():
        return ProcessGroup()
    backend = "nccl" if device.type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    # The loss's gather runs inside autograd while DDP all-reduces gradient buckets; its own
    # group keeps the two streams of collectives from interleaving differently across ranks.
    gather_group = dist.new_group(backend=backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, gather_group)


def global_mean(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Mean of per-sample values over the GLOBAL batch, differentiable (gradients flow to every rank)."""
    if not group.distributed:
        return x.mean()
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x, group=group.gather_group)).mean()


def sum_gradients(state, bucket):  # no annotations: DDP checks them, and they are strings here
    """DDP communication hook: all-reduce a ``dist.GradBucket`` as a plain SUM (DDP's own divides
    by the world size). Each process's backward carries its share of the global batch already
    (see Trainer._generator_share), and with one sample per process the sum adds the same
    per-sample gradients in the same order as one process does."""
    work = dist.all_reduce(bucket.buffer(), group=state, async_op=True)
    return work.get_future().then(lambda done: done.value()[0])


def average(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Mean over processes of equal-sized local means (for the log), no gradient."""
    if not group.distributed:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / group.world_size


def any_process(flag: bool, device: torch.device, group: ProcessGroup) -> bool:
    """True when ``flag`` is set in any process (a stop request must stop all of them together)."""
    if not group.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(group: ProcessGroup) -> None:
    if group.distributed:
        dist.barrier()


def shutdown(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
