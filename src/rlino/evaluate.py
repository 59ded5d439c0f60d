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


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sound near 0 and 1, unlike p ± 1.96·se)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(model, tokenizer, task, items: Sequence, *, seed: int, temperature: float, top_p: float,
             max_new_tokens: int, batch_size: int = 64, log_samples: int = 0) -> dict[str, Any]:
    """Score one response per held-out item; metric names carry the `eval/` prefix.

    With `log_samples` > 0 the result also has `samples`: the first items' prompts, responses and rewards.
    """
    rollout = sample(model, tokenizer, [it.prompt for it in items], list(range(len(items))), seed=seed,
                     step=EVAL_STEP, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                     batch_size=batch_size)
    rewards = torch.tensor([task.score(text, it) for text, it in zip(rollout.texts, items)], dtype=torch.float)
    correct = int(is_correct(rewards).sum())
    lo, hi = wilson_interval(correct, len(items))
    stats: dict[str, Any] = {"eval/accuracy": correct / max(len(items), 1), "eval/accuracy_lo": lo,
                             "eval/accuracy_hi": hi, "eval/num_items": len(items),
                             "eval/reward_mean": float(rewards.mean()),
                             "eval/truncated_frac": float(rollout.truncated.float().mean())}
    stats.update(length_stats(rollout.lengths.cpu(), rewards, prefix="eval/"))
    if log_samples:
        stats["samples"] = [{"uid": getattr(it, "uid", str(i)), "prompt": it.prompt, "response": rollout.texts[i],
                             "reward": float(rewards[i]), "length": int(rollout.lengths[i])}
                            for i, it in enumerate(items[:log_samples])]
    return stats
