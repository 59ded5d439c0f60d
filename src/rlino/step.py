"""One training step in four phases; the math of each lives in `rollout` and `objectives`, this is the plumbing.

    batch   = sample_groups(...)   G responses for each of the step's prompts           (rollout.sample)
    scored  = score(...)           the verifier's rewards, the method's weights w_i     (objectives.response_weights)
    stats   = update(...)          epochs_per_batch passes, each one optimizer step per part (mini_batches of the
                                   groups), summing the loss over micro-batches with the part's normalisers
                                                                                        (objectives.token_loss)
    result  = records(...)         the metrics line, the logged samples, the per-response weights line

Under data parallel each rank samples and trains on its share of the prompts; sums that normalise the loss or make
a metric are taken over all ranks, so the step is the one a single process would take. Under sharding
(`rlino.sharding`) sampling runs on the gathered weights and every rank runs as many forward and backward passes as
the others (`idle_pass`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from rlino.config import Config
from rlino.credit import Credit, assign_credit, critic_optimizer_step, critic_pass
from rlino.distributed import World
from rlino.errors import RlinoError
from rlino.evaluate import length_stats, score_all
from rlino.mini_batches import Part, split_parts
from rlino.objectives import Method, group_rate, is_correct, response_weights, token_loss, zero_variance_groups
from rlino.prompts import RAW, PromptFormat
from rlino.rollout import MicroBatch, Rollout, sample, token_logprobs
from rlino.run_folder import SAMPLES, WEIGHTS
from rlino.schedule import prompt_indices
from rlino.sharding import as_float, gathered, is_sharded, zero_backward

SUMS = ("loss", "entropy", "kl", "clip", "clip_low", "clip_high", "clip_n", "value_loss", "value_clip")
"""The step's running sums (added over micro-batches, then over ranks)."""


class NonFiniteStep(RlinoError):
    """A non-finite loss or gradient norm: the step stops before the optimizer applies it."""


@dataclass
class Policy:
    """What a step trains and reads."""

    model: torch.nn.Module
    tokenizer: Any
    ref_model: torch.nn.Module | None
    """The frozen reference of the KL term; None when β = 0."""
    optimizer: torch.optim.Optimizer
    scheduler: Any
    autocast: Callable[[], AbstractContextManager] = nullcontext
    """A fresh mixed-precision context (model.autocast) for the training and reference forward passes."""
    sample_autocast: Callable[[], AbstractContextManager] = nullcontext
    """The same for sampling (sampling.autocast)."""
    critic: torch.nn.Module | None = None
    """The value model of methods with a critic (`ppo`), with its own optimizer and schedule; None otherwise."""
    critic_optimizer: torch.optim.Optimizer | None = None
    critic_scheduler: Any = None
    prompt_format: PromptFormat = RAW
    """How prompts become ids (task.chat_template, task.system_prompt, model.add_bos)."""


class Clock:
    """Wall seconds per phase of a step; `on_phase(name, seconds)`, when given, hears each phase as it ends (the
    benchmarks time the loop through it)."""

    def __init__(self, on_phase: Callable[[str, float], None] | None = None):
        self.on_phase = on_phase
        self.seconds: dict[str, float] = {}

    def phase(self, name: str):
        return _Phase(self, name)


class _Phase:
    def __init__(self, clock: Clock, name: str):
        self.clock, self.name = clock, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self.clock.seconds[self.name] = self.clock.seconds.get(self.name, 0.0) + dt
        if self.clock.on_phase is not None:
            self.clock.on_phase(self.name, dt)


@dataclass
class Batch:
    """Phase 1: the step's prompts and this rank's sampled rows (a group's G responses adjacent)."""

    items: list
    """The step's prompts, on all ranks, in order."""
    rows: list
    """This rank's rows: its prompts, each repeated G times."""
    rollout: Rollout


@dataclass
class Scored:
    """Phase 2: each row's reward and weight w_i."""

    rewards: torch.Tensor
    weights: torch.Tensor
    """[rows] w_i; with a critic, each response's mean per-token advantage (set by the update, for the logs)."""
    correct: torch.Tensor | None = None
    """[rows] 0/1, and `rate` each row's group's fraction correct: what the `nft` term reads beside w_i."""
    rate: torch.Tensor | None = None


@dataclass
class UpdateStats:
    """Phase 3: what the update measured (sums over micro-batches and ranks)."""

    num_responses: int
    num_tokens: float
    grad_norm: float = 0.0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SUMS, 0.0))
    token_weight: torch.Tensor | None = None
    """[rows] per response, the mean over its tokens of −∂loss/∂log π_t, times the step's response count."""
    thirds: torch.Tensor | None = None
    """[rows, 3] per response, the mean of −∂loss/∂log π_t × N over its first, middle and last third of tokens (NaN
    where a third is empty), and `position_corr` [rows] its correlation with t (NaN where the weight is flat)."""
    position_corr: torch.Tensor | None = None
    critic: dict[str, float] = field(default_factory=dict)
    """The critic's metrics (value, advantage and explained-variance statistics, its gradient norm)."""


@dataclass
class StepResult:
    metrics: dict[str, Any]
    lines: dict[str, list[dict[str, Any]]]
    """Log lines of the step by file name (samples.jsonl, weights.jsonl)."""
    rollout: Rollout
    """This rank's sampled batch (for callers that count tokens)."""


# ---- phase 1 and 2 --------------------------------------------------------------------------------------------------

def sample_groups(policy: Policy, cfg: Config, world: World, train_items: Sequence, step: int) -> Batch:
    """The step's prompts from the seeded order, and G responses for each of this rank's share."""
    c, G = cfg, cfg.train.group_size
    items = [train_items[i] for i in prompt_indices(step, c.train.prompts_per_step, len(train_items), c.train.seed)]
    mine = world.share(len(items))  # this rank's prompts (all of them on one process)
    rows = [items[p] for p in mine for _ in range(G)]
    rows_global = [p * G + g for p in mine for g in range(G)]  # noise keys: the same on any number of ranks
    with gathered(policy.model), policy.sample_autocast():
        rollout = sample(policy.model, policy.tokenizer, [it.prompt for it in rows], rows_global, seed=c.train.seed,
                         step=step, temperature=c.sampling.temperature, top_p=c.sampling.top_p,
                         max_new_tokens=c.sampling.max_new_tokens, batch_size=c.sampling.batch_size,
                         engine=c.sampling.engine, prompt_format=policy.prompt_format)
    return Batch(items, rows, rollout)


def score(task, batch: Batch, method: Method, group_size: int) -> Scored:
    rewards = score_all(task, batch.rollout.texts, batch.rows)
    device = batch.rollout.completion_ids.device
    if method.has_critic:  # the critic's per-token advantages replace w_i in the update
        return Scored(rewards, torch.zeros(len(rewards), device=device))
    return Scored(rewards, response_weights(rewards, group_size, method).to(device), is_correct(rewards).to(device),
                  group_rate(rewards, group_size).to(device))


# ---- phase 3 --------------------------------------------------------------------------------------------------------

def update(policy: Policy, batch: Batch, scored: Scored, cfg: Config, method: Method, world: World,
           clock: Clock, step: int) -> UpdateStats:
    """`epochs_per_batch` passes over the batch, each one optimizer step per part (`split_parts`); π_old is the
    policy that sampled the batch, so from the second optimizer step on the ratio moves.

    With a critic: its advantages first (`credit.assign_credit`), then each epoch trains the critic beside the policy
    (the policy frozen for the first critic.warmup_steps steps)."""
    rollout = batch.rollout
    (n_tok,) = world.sum_floats(float(rollout.completion_mask.sum()))  # the whole step's counts, over all ranks
    rows, device = len(batch.rows), rollout.completion_ids.device
    stats = UpdateStats(num_responses=len(batch.items) * cfg.train.group_size, num_tokens=n_tok,
                        token_weight=torch.zeros(rows, device=device),
                        thirds=torch.full((rows, 3), math.nan, device=device),
                        position_corr=torch.full((rows,), math.nan, device=device))
    parts = split_parts(policy.model, policy.ref_model, policy.autocast, batch, cfg, method, world, clock)
    advantages, credit = scored.weights, None
    if policy.critic is not None:  # one part (objectives._validate)
        whole = parts[0]
        with clock.phase("critic"):
            credit = assign_credit(policy.critic, policy.model, policy.autocast, rollout, whole.batches,
                                   scored.rewards, whole.ref_logps, cfg, method.beta, world, whole.idle)
        advantages = credit.advantages  # [rows, T]: one advantage per token
        mask = rollout.completion_mask
        scored.weights = (advantages * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        stats.critic, stats.sums["kl"] = dict(credit.metrics), credit.kl_sum
        if cfg.critic.kl == "reward":
            whole.ref_logps = [None] * len(whole.batches)  # the KL is in the reward, not in the loss
    train_policy = policy.critic is None or step > cfg.critic.warmup_steps
    policy.model.train()
    for epoch in range(method.epochs_per_batch):
        for part in parts:
            policy.optimizer.zero_grad(set_to_none=True)
            bad = None
            for k, mb in enumerate(part.batches):
                if train_policy:
                    bad = bad or micro_batch_pass(policy, mb, advantages, scored, cfg, method, stats, epoch, part, k,
                                                  step)
                if credit is not None:  # run even after a bad pass: a sharded critic's passes are collectives
                    bad = bad or value_pass(policy, mb, credit, cfg, stats, epoch, step)
            for _ in range(part.idle):
                idle_pass(policy, part.batches[0], cfg, train_policy)
            (num_bad,) = world.sum_floats(float(bad is not None))  # every rank stops together
            if num_bad:
                raise NonFiniteStep(f"{bad or 'a non-finite loss on another rank'}; stopping without applying it.")
            with clock.phase("optimizer"):
                if train_policy:
                    stats.grad_norm = optimizer_step(policy, cfg, world, step)
                if credit is not None:
                    stats.critic["critic/grad_norm"] = critic_optimizer_step(
                        policy.critic, policy.critic_optimizer, policy.critic_scheduler, cfg.train.max_grad_norm,
                        world)
    stats.sums.update(zip(SUMS, world.sum_floats(*(stats.sums[k] for k in SUMS))))
    return stats


def value_pass(policy: Policy, mb: MicroBatch, credit: Credit, cfg: Config, stats: UpdateStats, epoch: int,
               step: int) -> str | None:
    """The critic's forward and backward on one micro-batch; a message when its loss is not finite."""
    loss, clipped = critic_pass(policy.critic, policy.autocast, mb, credit, cfg, stats.num_tokens)
    if not torch.isfinite(loss):
        return f"value loss is {float(loss)} at step {step} (epoch {epoch + 1})"
    if epoch == 0:
        stats.sums["value_loss"] += float(loss)
        stats.sums["value_clip"] += clipped
    return None


def idle_pass(policy: Policy, mb: MicroBatch, cfg: Config, train_policy: bool) -> None:
    """A forward and backward whose loss is 0 (its gradients are 0): run by a rank with fewer micro-batches than
    another, because a sharded model's forward and backward are collectives (FSDP's all-gather, reduce-scatter)."""
    if train_policy:
        with policy.autocast():
            logp, _ = token_logprobs(policy.model, *mb.tensors, temperature=cfg.sampling.temperature)
        zero_backward(logp)
    if policy.critic is not None:
        with policy.autocast():
            values = policy.critic(*mb.tensors)
        zero_backward(values)


def micro_batch_pass(policy: Policy, mb: MicroBatch, weights: torch.Tensor, scored: Scored, cfg: Config,
                     method: Method, stats: UpdateStats, epoch: int, part: Part, k: int, step: int) -> str | None:
    """Forward and backward of one micro-batch, its share of its part's loss; a message when the loss is not finite."""
    mask = mb.completion_mask
    with policy.autocast():
        logp, entropy = token_logprobs(policy.model, *mb.tensors, temperature=cfg.sampling.temperature,
                                       with_entropy=epoch == 0)
    if part.old_logps[k] is None:
        part.old_logps[k] = logp.detach()  # the sampling-time policy (no step taken yet), for the ratio from now on
    if epoch == 0:
        logp.retain_grad()  # d loss / d log π_t: the weight the step really gives each token
    adv = weights[mb.rows] if weights.dim() == 1 else weights[mb.rows, :mask.shape[1]]  # w_i, or A_it of a critic
    outcome = {} if scored.correct is None else dict(correct=scored.correct[mb.rows], rate=scored.rate[mb.rows])
    out = token_loss(logp, mask, adv, method, old_logp=part.old_logps[k], ref_logp=part.ref_logps[k],
                     num_responses=part.num_responses, num_tokens=part.num_tokens,
                     max_new_tokens=cfg.sampling.max_new_tokens, **outcome)
    if not torch.isfinite(out.loss):
        if is_sharded(policy.model):
            zero_backward(logp)
        return f"loss is {float(out.loss.detach())} at step {step} (epoch {epoch + 1}, micro-batch {k + 1})"
    out.loss.backward()
    tokens, sums = float(mask.sum()), stats.sums
    if epoch == 0:
        # per response, the mean over its tokens of −∂loss/∂log π_t, times its part's response count
        per_token = -logp.grad * mask * part.num_responses
        stats.token_weight[mb.rows] = per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        stats.thirds[mb.rows], stats.position_corr[mb.rows] = position_profile(per_token, mask)
        sums["loss"] += float(out.loss.detach()) / method.mini_batches  # the mean of the parts' losses
        sums["entropy"] += float((entropy * mask).sum())
        if out.kl is not None:
            sums["kl"] += float(out.kl) * tokens
    if out.clip_frac is not None:
        sums["clip"] += float(out.clip_frac) * tokens
        sums["clip_low"] += float(out.clip_frac_low) * tokens
        sums["clip_high"] += float(out.clip_frac_high) * tokens
        sums["clip_n"] += tokens
    return None


def position_profile(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where along each response its per-token weight sits: the mean over the first, middle and last third of its
    tokens (token t of L is in third ⌊3t/L⌋; NaN for an empty third), and the Pearson correlation of the weight with t
    (NaN when the weight is flat within 1e-6 of its size, or the response has under 3 tokens). [B, T] → [B, 3], [B]."""
    m = mask.to(torch.float64)
    w = weight.to(torch.float64) * m
    lengths = m.sum(dim=1, keepdim=True)
    t = torch.arange(w.shape[1], dtype=torch.float64, device=w.device).unsqueeze(0).expand_as(w)
    third = torch.div(3 * t, lengths.clamp(min=1), rounding_mode="floor")
    thirds = torch.stack([((third == k) * m * w).sum(dim=1) / ((third == k) * m).sum(dim=1) for k in range(3)], 1)
    dt = (t - (t * m).sum(dim=1, keepdim=True) / lengths.clamp(min=1)) * m
    dw = (w - w.sum(dim=1, keepdim=True) / lengths.clamp(min=1)) * m
    sd_w, sd_t = dw.pow(2).sum(dim=1).sqrt(), dt.pow(2).sum(dim=1).sqrt()
    corr = (dt * dw).sum(dim=1) / (sd_w * sd_t).clamp(min=1e-300)
    flat = (sd_w <= 1e-6 * w.abs().sum(dim=1)) | (lengths.squeeze(1) < 3)
    return thirds.float(), torch.where(flat, torch.nan, corr).float()


def optimizer_step(policy: Policy, cfg: Config, world: World, step: int) -> float:
    """Sum gradients over ranks, clip by global norm, apply AdamW and advance the LR schedule; the norm before
    clipping."""
    model = policy.model
    world.sum_grads_(model.parameters())  # each rank's loss already carries the step-wide normaliser
    max_norm = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else float("inf")
    grad_norm = as_float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    if not math.isfinite(grad_norm):
        raise NonFiniteStep(f"gradient norm is {grad_norm} at step {step}; stopping without applying it.")
    policy.optimizer.step()
    policy.scheduler.step()
    return grad_norm


# ---- phase 4 --------------------------------------------------------------------------------------------------------

def records(step: int, batch: Batch, scored: Scored, stats: UpdateStats, cfg: Config, method: Method,
            world: World, lr: float, has_ref: bool,
            prompt_fields: Callable[[str], dict[str, str]] = lambda prompt: {}) -> StepResult:
    """The metrics line (without timings), the logged samples and the per-response weights line of the step.
    `prompt_fields(prompt)`: what a logged sample adds about its prompt (`PromptFormat.log_fields`)."""
    rollout, G = batch.rollout, cfg.train.group_size
    n_tok, sums = stats.num_tokens, stats.sums
    rewards, weights, token_weight, thirds, corr = (world.gather_cat(x.cpu()) for x in (
        scored.rewards, scored.weights, stats.token_weight, stats.thirds, stats.position_corr))
    lengths, truncated = world.gather_cat(rollout.lengths.cpu()), world.gather_cat(rollout.truncated.cpu())
    ok = is_correct(rewards)
    metrics: dict[str, Any] = {
        "step": step,
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "accuracy": float(ok.float().mean()),
        "frac_zero_std_groups": float(zero_variance_groups(rewards, G).float().mean()),
        "truncated_frac": float(truncated.float().mean()),
        **length_stats(lengths, rewards),
        "loss": sums["loss"],
        "grad_norm": stats.grad_norm,
        "entropy": sums["entropy"] / max(n_tok, 1.0),
        "lr": lr,
    }
    if has_ref:
        metrics["kl"] = sums["kl"] / max(n_tok, 1.0)
    if stats.critic:
        metrics.update(stats.critic, **{"critic/value_loss": sums["value_loss"],
                                        "critic/clip_frac": sums["value_clip"] / max(n_tok, 1.0)})
    if method.clip:
        for key, total in (("clip_frac", "clip"), ("clip_frac_low", "clip_low"), ("clip_frac_high", "clip_high")):
            metrics[key] = sums[total] / max(sums["clip_n"], 1.0)
    texts = world.gather_list(rollout.texts[:cfg.train.log_samples])
    all_rows = [it for it in batch.items for _ in range(G)]  # the whole step's rows, in global order
    samples = [{"step": step, "prompt": it.prompt, **prompt_fields(it.prompt), "response": texts[i],
                "reward": float(rewards[i]), "length": int(lengths[i]), "truncated": bool(truncated[i]),
                "uid": getattr(it, "uid", None)}
               for i, it in zip(range(min(cfg.train.log_samples, len(texts))), all_rows)]
    weights_row = {"step": step, "num_responses": stats.num_responses, "num_tokens": int(n_tok),
                   "aggregation": method.aggregation, "max_new_tokens": cfg.sampling.max_new_tokens,
                   "length": lengths.tolist(), "correct": ok.tolist(),
                   "response_weight": [round(float(x), 6) for x in weights],
                   "token_weight": [_number(x) for x in token_weight],
                   "token_weight_thirds": [[_number(x) for x in row] for row in thirds],
                   "token_weight_position_corr": [_number(x, 4) for x in corr]}
    return StepResult(metrics, {SAMPLES: samples, WEIGHTS: [weights_row]}, rollout)


def _number(x: torch.Tensor, digits: int = 6) -> float | None:
    """A logged float (digits significant), None for NaN (JSON has no NaN)."""
    value = float(x)
    return None if math.isnan(value) else float(f"{value:.{digits}g}")
