"""What each step sees: the learning-rate factor of an optimizer step, and the prompts of a training step.

The one LR schedule (the trainer's and the embedded base model's warm-up): linear warm-up from 0 over
`warmup_steps` optimizer steps, then `constant`, `linear` or `cosine` decay from 1 to `floor` at `total_steps`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

SHAPES = ("constant", "linear", "cosine")


def lr_schedule(*, warmup_steps: int, total_steps: int, shape: str, floor: float = 0.0) -> Callable[[int], float]:
    """The factor on the peak learning rate at optimizer step `step` (0-based), as `LambdaLR` takes it."""
    if shape not in SHAPES:
        raise ValueError(f"unknown LR schedule shape '{shape}'")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if shape == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
        if shape == "linear":
            return floor + (1 - floor) * (1.0 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def prompt_indices(step: int, per_step: int, num_items: int, seed: int) -> list[int]:
    """Items for a step (1-based): consecutive slices of a fresh seeded shuffle of the split per pass."""
    orders: dict[int, list[int]] = {}  # one shuffle per pass touched by this step
    out = []
    for k in range((step - 1) * per_step, step * per_step):
        epoch, pos = divmod(k, num_items)
        if epoch not in orders:
            orders[epoch] = list(range(num_items))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        out.append(orders[epoch][pos])
    return out
