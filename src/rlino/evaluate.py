"""Held-out evaluation: accuracy and response lengths split by correct and wrong."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from rlino.distributed import SINGLE, World
from rlino.objectives import is_correct
from rlino.prompts import RAW, PromptFormat
from rlino.rollout import sample
from rlino.stats import wilson_interval

# Evaluation noise is keyed by this fixed "step", so every evaluation of a run (and of every arm compared) draws
# the same noise: differences between evaluations come from the model, not from the dice.
EVAL_STEP = 0x7E57


def score_all(task, texts: Sequence[str], items: Sequence) -> torch.Tensor:
    """The verifier's reward for each (response, item) pair, as a float tensor."""
    return torch.tensor([task.score(text, it) for text, it in zip(texts, items)], dtype=torch.float)


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
             max_new_tokens: int, batch_size: int = 64, log_samples: int = 0, world: World = SINGLE,
             engine: str = "hf", prompt_format: PromptFormat = RAW) -> dict[str, Any]:
    """Score one response per held-out item; metric names carry the `eval/` prefix.

    With `log_samples` > 0 the result also has `samples`: the first items' prompts, responses and rewards. Under
    data parallel each rank samples its share of the items (noise keyed by the item's index, so the responses are
    the same on any number of ranks) and every rank returns the same gathered result.
    """
    mine = world.share(len(items))
    rollout = sample(model, tokenizer, [items[i].prompt for i in mine], list(mine), seed=seed, step=EVAL_STEP,
                     temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     engine=engine, prompt_format=prompt_format)
    rewards = world.gather_cat(score_all(task, rollout.texts, [items[i] for i in mine]))
    lengths, truncated = world.gather_cat(rollout.lengths.cpu()), world.gather_cat(rollout.truncated.cpu())
    correct = int(is_correct(rewards).sum())
    lo, hi = wilson_interval(correct / max(len(items), 1), len(items))
    stats: dict[str, Any] = {"eval/accuracy": correct / max(len(items), 1), "eval/accuracy_lo": lo,
                             "eval/accuracy_hi": hi, "eval/num_items": len(items),
                             "eval/reward_mean": float(rewards.mean()),
                             "eval/truncated_frac": float(truncated.float().mean())}
    stats.update(length_stats(lengths, rewards, prefix="eval/"))
    if log_samples:
        texts = world.gather_list(rollout.texts[:log_samples])
        stats["samples"] = [{"uid": getattr(it, "uid", str(i)), "prompt": it.prompt,
                             **prompt_format.log_fields(tokenizer, it.prompt), "response": texts[i],
                             "reward": float(rewards[i]), "length": int(lengths[i])}
                            for i, it in enumerate(items[:log_samples])]
    return stats


def evaluate_k(model, tokenizer, task, items: Sequence, *, k: int, seed: int, temperature: float, top_p: float,
               max_new_tokens: int, batch_size: int = 64, engine: str = "hf",
               prompt_format: PromptFormat = RAW) -> dict[str, Any]:
    """Greedy accuracy, mean accuracy over k samples at `temperature`, pass@k, and lengths split by correctness.

    Sample j of item i is keyed by row j·N + i at the evaluation step, so sample 0 is exactly what the trainer's
    own evaluation draws with the same seed and settings.
    """
    n = len(items)
    greedy = evaluate(model, tokenizer, task, items, seed=seed, temperature=0.0, top_p=1.0,
                      max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine, prompt_format=prompt_format)
    prompts = [it.prompt for _ in range(k) for it in items]
    rollout = sample(model, tokenizer, prompts, list(range(k * n)), seed=seed, step=EVAL_STEP,
                     temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     engine=engine, prompt_format=prompt_format)
    rewards = score_all(task, rollout.texts, [it for _ in range(k) for it in items])
    correct = is_correct(rewards).view(k, n)
    mean_acc = int(correct.sum()) / (k * n)
    lo, hi = wilson_interval(mean_acc, k * n)
    out: dict[str, Any] = {
        "num_items": n, "k": k, "temperature": temperature,
        "greedy_accuracy": greedy["eval/accuracy"],
        "greedy_accuracy_lo": greedy["eval/accuracy_lo"], "greedy_accuracy_hi": greedy["eval/accuracy_hi"],
        "sampled_accuracy": mean_acc, "sampled_accuracy_lo": lo, "sampled_accuracy_hi": hi,
        "first_sample_accuracy": int(correct[0].sum()) / n,
        f"pass@{k}": int(correct.any(dim=0).sum()) / n,
        "truncated_frac": float(rollout.truncated.float().mean()),
        "greedy_length_mean": greedy["eval/length_mean"],
    }
    out.update(length_stats(rollout.lengths.cpu(), rewards))
    return out
