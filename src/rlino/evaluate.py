"""Held-out evaluation: accuracy and response lengths split by correct and wrong."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from rlino.objectives import is_correct
from rlino.rollout import sample

# Evaluation noise is keyed by this fixed "step", so every evaluation of a run (and of every arm compared) draws
# the same noise: differences between evaluations come from the model, not from the dice.
EVAL_STEP = 0x7E57


def mean_or_none(values: torch.Tensor) -> float | None:
    """Mean of a 1-D tensor as a float, or None (null in JSON) when it is empty."""
    return float(values.float().mean()) if values.numel() else None


def length_stats(lengths: torch.Tensor, rewards: torch.Tensor, prefix: str = "") -> dict[str, Any]:
    """Mean length overall and split by correct and wrong responses."""
    ok = is_correct(rewards)
    return {
        f"{prefix}length_mean": mean_or_none(lengths),
        f"{prefix}length_correct_mean": mean_or_none(lengths[ok]),
        f"{prefix}length_wrong_mean": mean_or_none(lengths[~ok]),
    }


def evaluate(model, tokenizer, task, items: Sequence, *, seed: int, temperature: float, top_p: float,
             max_new_tokens: int, batch_size: int = 64) -> dict[str, Any]:
    """Score one response per held-out item; metric names carry the `eval/` prefix."""
    rollout = sample(model, tokenizer, [it.prompt for it in items], list(range(len(items))), seed=seed,
                     step=EVAL_STEP, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                     batch_size=batch_size)
    rewards = torch.tensor([task.score(text, it) for text, it in zip(rollout.texts, items)], dtype=torch.float)
    acc = float(is_correct(rewards).float().mean())
    stats = {"eval/accuracy": acc,
             "eval/accuracy_ci95": 1.96 * math.sqrt(max(acc * (1 - acc), 0.0) / max(len(items), 1)),
             "eval/reward_mean": float(rewards.mean()),
             "eval/truncated_frac": float(rollout.truncated.float().mean())}
    stats.update(length_stats(rollout.lengths, rewards, prefix="eval/"))
    return stats
