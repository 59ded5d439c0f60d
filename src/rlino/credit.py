"""The critic's part of a `ppo` step: per-token advantages before the update, the value loss during it.

    V_old    = critic(batch)                               the values the advantages are computed with (no grad)
    r_t      = token_rewards(outcome r, kl, β)             the reward on the last token (−β·kl per token: critic.kl)
    A, R     = gae(r, V_old, mask, γ, λ)                   per-token advantages and value targets
    A        = (A − mean) / std                            over the step's tokens on all ranks (critic.whiten)
    then, next to each policy micro-batch pass:
    ℓ_value  = value_loss(critic(mb), V_old, R, mask, ε_v) token-mean over the step; the critic's own AdamW step

Under data parallel the whitening statistics and the value loss's normaliser are the whole step's, so the critic's
update is the one a single process would take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlino.config import Config
from rlino.critic import Critic
from rlino.distributed import World
from rlino.gae import gae, token_rewards, value_loss
from rlino.rollout import MicroBatch, Rollout, token_logprobs
from rlino.sharding import as_float, is_sharded, zero_backward


@dataclass
class Credit:
    """Per-token quantities of the step's rows, in the rollout's layout [B, T] (padding 0)."""

    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor
    metrics: dict[str, float]
    kl_sum: float = 0.0
    """Σ over tokens of the k3 KL between the sampling policy and the reference (with critic.kl = reward)."""


def _full(rollout: Rollout, batches: list[MicroBatch], parts: list[torch.Tensor]) -> torch.Tensor:
    """Micro-batch tensors [b, T_k] put back in the rollout's rows and width [B, T]."""
    out = torch.zeros(rollout.completion_mask.shape, dtype=torch.float32, device=rollout.completion_ids.device)
    for mb, part in zip(batches, parts):
        out[mb.rows, : part.shape[1]] = part.float()
    return out


@torch.no_grad()
def assign_credit(critic: Critic | None, policy_model, autocast, rollout: Rollout, batches: list[MicroBatch],
                  rewards: torch.Tensor, ref_logps: list, cfg: Config, beta: float, world: World,
                  idle: int = 0) -> Credit:
    """V_old, the token rewards (with the KL when it goes in the reward), GAE, whitening; the critic's metrics.
    `critic` None values every state at 0 (`rlino equivalence`'s reference rows). `idle`: forwards more per model,
    results dropped (sharded models: every rank runs as many)."""
    c = cfg.critic
    mask = rollout.completion_mask.float()
    if critic is None:
        values = torch.zeros_like(mask)
    else:
        critic.eval()
        with autocast():
            values = _full(rollout, batches, [critic(*mb.tensors) for mb in batches]) * mask
            for _ in range(idle):
                critic(*batches[0].tensors)
    kl, kl_sum = None, 0.0
    if beta > 0 and c.kl == "reward" and ref_logps[0] is not None:
        policy_model.eval()  # no dropout: π_old is the sampling policy (the update sets train mode again)
        with autocast():
            old = [token_logprobs(policy_model, *mb.tensors, temperature=cfg.sampling.temperature)[0]
                   for mb in batches]
            for _ in range(idle):
                token_logprobs(policy_model, *batches[0].tensors, temperature=cfg.sampling.temperature)
        old_logp, ref_logp = _full(rollout, batches, old), _full(rollout, batches, ref_logps)
        kl = (old_logp - ref_logp) * mask  # k1, per token, as classic RLHF PPO puts it in the reward
        delta = ref_logp - old_logp
        kl_sum = float(((torch.exp(delta) - delta - 1) * mask).sum())  # the k3 metric the other rows log
    token_r = token_rewards(rewards.to(mask.device), mask, kl, beta)
    advantages, returns = gae(token_r, values, mask, c.gamma, c.lam)
    n, a1, a2, r1, r2, e1, e2, v1 = world.sum_floats(
        float(mask.sum()), float(advantages.sum()), float((advantages ** 2).sum()), float(returns.sum()),
        float((returns ** 2).sum()), float(((returns - values) * mask).sum()),
        float((((returns - values) * mask) ** 2).sum()), float(values.sum()))
    mean_a, var_a = _mean_var(n, a1, a2)
    var_r, var_e = _mean_var(n, r1, r2)[1], _mean_var(n, e1, e2)[1]
    metrics = {"critic/value_mean": v1 / max(n, 1.0), "critic/advantage_mean": mean_a,
               "critic/advantage_std": math.sqrt(var_a), "critic/return_mean": r1 / max(n, 1.0),
               "critic/explained_variance": 1.0 - var_e / var_r if var_r > 0 else 0.0}
    if c.whiten:
        advantages = (advantages - mean_a) / math.sqrt(var_a + 1e-8) * mask
    return Credit(advantages, returns, values, metrics, kl_sum)


def _mean_var(n: float, s1: float, s2: float) -> tuple[float, float]:
    """Mean and unbiased variance from a count, a sum and a sum of squares (0 for fewer than two)."""
    if n < 2:
        return (s1 / n if n else 0.0), 0.0
    mean = s1 / n
    return mean, max(s2 - n * mean * mean, 0.0) / (n - 1)


def critic_pass(critic: Critic, autocast, mb: MicroBatch, credit: Credit, cfg: Config,
                num_tokens: float) -> tuple[torch.Tensor, float]:
    """Forward and backward of the value loss on one micro-batch: (its share of the loss, clip-frac × tokens)."""
    critic.train()
    mask = mb.completion_mask
    width = mask.shape[1]
    with autocast():
        values = critic(*mb.tensors)
    loss, frac = value_loss(values, credit.old_values[mb.rows, :width], credit.returns[mb.rows, :width], mask,
                            cfg.critic.value_clip, num_tokens=num_tokens)
    if torch.isfinite(loss):
        loss.backward()
    elif is_sharded(critic):
        zero_backward(values)
    return loss.detach(), float(frac) * float(mask.sum())


def critic_optimizer_step(critic: Critic, optimizer, scheduler, max_grad_norm: float, world: World) -> float:
    """Sum the critic's gradients over ranks, clip by global norm, AdamW step, schedule step; the norm before."""
    world.sum_grads_(critic.parameters())
    limit = max_grad_norm if max_grad_norm > 0 else float("inf")
    norm = as_float(torch.nn.utils.clip_grad_norm_(critic.parameters(), limit))
    if math.isfinite(norm):
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
