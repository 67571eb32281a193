"""Host <-> device copies that do not make the host wait (pinned memory, ``non_blocking``).

On a CPU engine both directions are no-ops. On CUDA the host side lives in pinned (page-locked)
memory from torch's caching host allocator, so a copy is queued on the stream and the loop goes
on launching work; the consumer waits for the copy's event only when it reads the values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A host tensor on the engine's device and dtype, without blocking on CUDA."""
    if device.type != "cuda":
        return x.to(device=device, dtype=dtype)
    return x.pin_memory().to(device=device, dtype=dtype, non_blocking=True)


@dataclass
class HostCopy:
    """A device tensor's copy on the host; ``get`` waits for the copy to land."""

    tensor: torch.Tensor
    event: torch.cuda.Event | None = None

    def get(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.tensor


def to_host(x: torch.Tensor) -> HostCopy:
    """Start copying ``x`` to the host; returns at once on CUDA (pinned + non_blocking)."""
    if x.device.type != "cuda":
        return HostCopy(x.cpu())
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    host.copy_(x, non_blocking=True)
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(x.device))
    return HostCopy(host, event)
