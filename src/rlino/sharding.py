"""Sharded full fine-tuning (`train.sharding = "fsdp"`): PyTorch's FSDP2 (`fully_shard`) on the policy, its
reference and the critic, under the same torchrun launch as data parallel.

    fully_shard(every decoder layer); fully_shard(the whole model)     the root group: embeddings, final norm, head

Each rank keeps 1/N of every parameter, gradient and AdamW moment (DTensors sharded on dim 0); the sharding is the
library's, rlino writes none of its own. What the step needs to know is small:

- gradients are summed over ranks by FSDP's reduce-scatter (divide factor 1, a plain SUM, which gloo supports too):
  each rank's loss already carries the step-wide normaliser, as under data parallel, so `World.sum_grads_` leaves
  sharded parameters alone;
- every forward of a sharded module all-gathers its layer's weights, a collective, so every rank must run as many
  forward (and backward) passes as the others: a rank with fewer micro-batches runs `idle_passes` more, each a repeat
  of its first micro-batch whose result is dropped (no-grad) or whose loss is 0 (training);
- sampling and evaluation run as many decode steps as their own responses need: they run inside `gathered(model)`,
  which all-gathers every weight once and keeps it until the end, so no collective happens inside (the full weights
  are resident while sampling; `rlino plan` counts them).

Checkpoints: each rank writes its shards of the weights and optimizer states through `torch.distributed.checkpoint`
(`sharded/` in the checkpoint folder); rank 0 writes the plain Hugging Face folder beside it from a full state dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from rlino.distributed import World
from rlino.errors import RlinoError

SHARDED_DIR = "sharded"
"""Subfolder of a checkpoint holding `torch.distributed.checkpoint`'s files (every rank's shards)."""


def fsdp():
    """torch.distributed.fsdp (imported on use: a build without distributed support still runs everything else)."""
    import torch.distributed.fsdp as fsdp_module

    return fsdp_module


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of a transformers model: the modules whose class its `_no_split_modules` names."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise RlinoError(f"train.sharding = 'fsdp': cannot find the decoder layers of {type(model).__name__} (no "
                         f"_no_split_modules); use train.sharding = 'none'")
    return layers


def shard_(model: torch.nn.Module, bf16_compute: bool) -> None:
    """Shard `model` in place over the default process group: each decoder layer a group, then the root.

    fp32 master weights stay sharded; `bf16_compute` gathers them as bf16 for the forward and backward passes and
    reduces gradients in fp32 (`MixedPrecisionPolicy`)."""
    f = fsdp()
    mp = f.MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16_compute \
        else f.MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        f.fully_shard(layer, mp_policy=mp, reshard_after_forward=True)
    # the root too reshards after its forward (FSDP's default keeps it gathered until a backward, which the
    # reference model's no-grad forwards never run)
    f.fully_shard(model, mp_policy=mp, reshard_after_forward=True)
    for module in fsdp_modules(model):
        # sum, not average: the loss already carries the whole step's normaliser (gloo has no PREMUL_SUM)
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)


def fsdp_modules(model: torch.nn.Module | None) -> list:
    """The FSDP-managed modules of `model` (empty when it is not sharded)."""
    if model is None or not isinstance(model, torch.nn.Module):
        return []
    cls = fsdp().FSDPModule
    return [m for m in model.modules() if isinstance(m, cls)]


def is_sharded(model: torch.nn.Module | None) -> bool:
    return bool(fsdp_modules(model))


@contextmanager
def gathered(model: torch.nn.Module | None) -> Iterator[None]:
    """Every weight of a sharded `model` gathered for the block (a no-op when it is not sharded).

    Inside, forwards run no collective, so ranks may run different numbers of them (sampling's decode steps)."""
    modules = fsdp_modules(model)
    if not modules:
        yield
        return
    for m in modules:
        m.unshard()
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for m in modules:
            m.set_reshard_after_forward(True, recurse=False)
            m.reshard()


def idle_passes(count: int, world: World, model: torch.nn.Module | None) -> int:
    """How many passes this rank adds to its `count` so that every rank runs as many (0 when nothing is sharded)."""
    if not world.active or not is_sharded(model):
        return 0
    return max(world.gather(count)) - count


def zero_backward(output: torch.Tensor) -> None:
    """A backward whose loss is 0, through the graph of `output`: every gradient stays as it was, but a sharded
    model's backward collectives (FSDP's reduce-scatter) run, which the other ranks wait for. Used where a rank has
    nothing to learn from a pass (an idle pass, a loss that is not finite) yet must keep step with the others."""
    (output.sum() * 0.0).backward()


def as_float(value: torch.Tensor) -> float:
    """A scalar tensor as a float; a replicated DTensor (the norm of sharded gradients) through its full value."""
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


# ---- checkpoints ----------------------------------------------------------------------------------------------------

def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on rank 0 (on CPU), empty on the others; a collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(folder: Path, parts: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]) -> None:
    """Every rank writes its shards of each (model, optimizer) pair, by name, into `folder` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    state = {}
    for name, (model, optimizer) in parts.items():
        state[name], state[f"{name}_optimizer"] = get_state_dict(model, optimizer)
    dcp.save(state, checkpoint_id=str(folder))


def load_sharded(folder: Path, parts: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]) -> None:
    """Load what `save_sharded` wrote into each (model, optimizer) pair, sharded or not, on any number of ranks."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = {}
    for name, (model, optimizer) in parts.items():
        state[name], state[f"{name}_optimizer"] = get_state_dict(model, optimizer)
    dcp.load(state, checkpoint_id=str(folder))
    for name, (model, optimizer) in parts.items():
        set_state_dict(model, optimizer, model_state_dict=state[name], optim_state_dict=state[f"{name}_optimizer"])
