"""PPO mini-batches: a step's groups in parts, one optimizer step each (`method.mini_batches`).

    parts = split_parts(...)   the step's prompt groups in M parts, prompt p in part p mod M (one part when M = 1)
    for part in parts:         one optimizer step each, the loss normalised by the part's own counts
                               (responses, tokens: over all ranks), π_old = the policy that sampled the batch

verl's train_batch_size / ppo_mini_batch_size and TRL's steps per generation. From the second part on, the policy
has moved since sampling, so the importance ratio leaves 1 and the clip acts; π_old of those parts is read before
any optimizer step, by one forward without gradients (the first part's comes from its own first pass).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from rlino.config import Config
from rlino.distributed import World
from rlino.errors import RlinoError
from rlino.objectives import Method
from rlino.rollout import MicroBatch, token_logprobs
from rlino.sharding import idle_passes


@dataclass
class Part:
    """One mini-batch of the step: its micro-batches, its normalisers (over all ranks), and per micro-batch the
    reference's and π_old's log-probs (None where there is no KL term / where the first pass will set it)."""

    batches: list[MicroBatch]
    num_responses: int
    num_tokens: float
    idle: int
    ref_logps: list
    old_logps: list


def group_rows(prompts: range, group_size: int, parts: int) -> list[torch.Tensor]:
    """This rank's row indices per part, for its prompts (their indices in the step, a contiguous block): prompt p
    goes to part p mod `parts`, so the parts are the same on any number of ranks (the step one process would take).
    Every rank needs a prompt in every part: `parts` consecutive prompts or more."""
    if len(prompts) < parts:
        raise RlinoError(f"method.mini_batches = {parts} needs at least as many prompts a step on each process; "
                         f"this one has {len(prompts)} (train.prompts_per_step over the ranks)")
    return [torch.cat([torch.arange(g * group_size, (g + 1) * group_size)
                       for g, p in enumerate(prompts) if p % parts == j]) for j in range(parts)]


def split_parts(model: torch.nn.Module, ref_model: torch.nn.Module | None,
                autocast: Callable[[], AbstractContextManager], batch: Any, cfg: Config, method: Method,
                world: World, clock: Any) -> list[Part]:
    """The step's batch (`step.Batch`) in `method.mini_batches` parts, each with its micro-batches, its counts over
    all ranks, its reference log-probs and, after the first part, π_old's."""
    rollout = batch.rollout
    rows = group_rows(world.share(len(batch.items)), cfg.train.group_size, method.mini_batches)
    mask = rollout.completion_mask.cpu()
    counts = world.sum_floats(*(x for r in rows for x in (float(len(r)), float(mask[r].sum()))))
    parts = []
    for j, r in enumerate(rows):
        batches = rollout.micro_batches(cfg.train.micro_batch_size, r)
        idle = idle_passes(len(batches), world, model)  # sharded: every rank runs as many passes
        with clock.phase("reference"):
            ref = frozen_logprobs(ref_model, autocast, batches, cfg.sampling.temperature, idle)
            old = ([None] * len(batches) if j == 0 else
                   frozen_logprobs(model, autocast, batches, cfg.sampling.temperature, idle))
        parts.append(Part(batches, int(counts[2 * j]), counts[2 * j + 1], idle, ref, old))
    return parts


def frozen_logprobs(model: torch.nn.Module | None, autocast: Callable[[], AbstractContextManager],
                    batches: list[MicroBatch], temperature: float, idle: int = 0) -> list:
    """`model`'s log-probs per micro-batch without gradients (None each when `model` is None: no KL term); `idle`
    more forwards whose result is dropped (a sharded model: every rank runs as many)."""
    if model is None:
        return [None] * len(batches)
    with torch.no_grad(), autocast():
        out = [token_logprobs(model, *mb.tensors, temperature=temperature)[0] for mb in batches]
        for _ in range(idle):
            token_logprobs(model, *batches[0].tensors, temperature=temperature)
    return out
