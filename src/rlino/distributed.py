"""Data parallel through `torch.distributed`: one process per rank, launched with torchrun.

    torchrun --nproc_per_node N -m rlino train CONFIG

Each rank samples, scores and back-propagates a contiguous share of the step's prompts (whole groups, so group
advantages need no communication). What couples the ranks is small and explicit:

- the step's token count (for `token-mean`) is summed over ranks before the loss, and the response count is the
  step's, so every aggregation normalises by the whole step exactly as one process would;
- gradients are summed over ranks (not averaged: each rank's loss already carries the step-wide normaliser), then
  clipped and applied identically on every rank, so the weights stay equal without broadcasting them;
- per-response results (rewards, lengths, weights, a few texts) are gathered for the metrics, which rank 0 writes.

Sampling noise is keyed by (seed, step, global row), so the responses do not depend on the number of ranks: the
same global batch gives the same update on 1 or N ranks, up to the order of floating-point sums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from rlino.errors import RlinoError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    """Where collectives put their buffers: NCCL only reduces CUDA tensors, gloo CPU ones."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def share(self, n: int) -> range:
        """This rank's contiguous block of n items (sizes differ by at most one; rank order = global order)."""
        return range(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (a no-op on one rank)."""
        if self.active:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def sum_floats(self, *values: float) -> list[float]:
        return self.sum_(torch.tensor(values, dtype=torch.float64, device=self.device)).tolist()

    def sum_grads_(self, params) -> None:
        """Sum the gradients of `params` over ranks in one flat buffer (a parameter without a gradient counts 0).
        Sharded parameters (DTensors, `rlino.sharding`) are left alone: FSDP's reduce-scatter already summed them."""
        if not self.active:
            return
        params = [p for p in params if p.requires_grad and not hasattr(p, "device_mesh")]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self.sum_(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, value)
        return out

    def gather_list(self, values: list[Any]) -> list[Any]:
        """Concatenate a per-rank list over ranks in rank order (e.g. each rank's first logged texts)."""
        return [v for part in self.gather(values) for v in part]

    def gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a per-row tensor over ranks in rank order (rows may differ in number between ranks)."""
        if not self.active:
            return tensor
        return torch.cat([t.to(tensor.device) for t in self.gather(tensor.cpu())])

    def broadcast_params_(self, module: torch.nn.Module) -> None:
        """Make every rank start from rank 0's weights (a guard against any difference in how they were loaded)."""
        if self.active:
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


SINGLE = World()


def init_world(device: torch.device) -> World:
    """The World from torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); one process when they are absent."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    if not torch.distributed.is_available():
        raise RlinoError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend=backend)
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 device if device.type == "cuda" else torch.device("cpu"))


def local_device(device: torch.device) -> torch.device:
    """On CUDA with several ranks, each rank's own GPU (LOCAL_RANK); otherwise the device as given."""
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
