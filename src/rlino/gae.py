"""Credit per token from a learned critic (`ppo`): token rewards, generalised advantage estimation, the value loss.

The outcome methods give every token of a response the same advantage (`objectives.spread_evenly`); PPO with a
critic gives token t the advantage of its own state, A_t = Σ_k (γλ)^k δ_{t+k}. Pure tensor math over right-padded
responses [B, T] with a 0/1 mask; the critic model itself is `rlino.critic`.
"""

from __future__ import annotations

import torch


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  beta: float = 0.0) -> torch.Tensor:
    """Per-token rewards [B, T] of an outcome-reward response, as RLHF's PPO sees them:

        r_it = −β · kl_it  +  r_i · [t is the response's last token]        (kl_it = log π_old − log π_ref, k1)

    Without a KL term the whole reward sits on the last token and every other token's reward is 0."""
    mask = mask.to(torch.float32)
    out = torch.zeros_like(mask)
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    out[torch.arange(mask.shape[0], device=mask.device), last] = rewards.to(out.dtype) * (mask.sum(dim=1) > 0)
    if kl is not None and beta > 0:
        out = out - beta * kl.to(out.dtype) * mask
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses [B, T]: (advantages, returns).

        δ_t = r_t + γ V_{t+1} − V_t          (V after the response's last token is 0: the episode ends there)
        A_t = δ_t + γ λ A_{t+1}               (A beyond the last token is 0)
        R_t = A_t + V_t                       (the value target)

    λ = γ = 1 with the reward on the last token only: A_t = r − V_t (Monte Carlo return minus the value);
    λ = 0: the one-step TD error. Padding positions get 0."""
    mask = mask.to(values.dtype)
    values = values * mask
    adv = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    T = values.shape[1]
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
    return adv, (adv + values) * mask


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float, num_tokens: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's clipped value loss, token-mean over the step (`num_tokens`, default this batch's): (loss,
    clip_frac).

        ℓ_t = ½ · max( (V_t − R_t)²,  (V_old,t + clip(V_t − V_old,t, −ε_v, ε_v) − R_t)² )      (ε_v = 0: no clip)

    The clip keeps the new value within ε_v of the value the advantages were computed with (PPO's value clipping,
    as in verl and TRL); clip_frac is the fraction of tokens where the clipped term is the larger one."""
    mask = mask.to(values.dtype)
    unclipped = (values - returns) ** 2
    if clip > 0:
        clipped_v = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (clipped_v - returns) ** 2
        per_token = 0.5 * torch.maximum(unclipped, clipped)
        frac = ((clipped > unclipped).to(values.dtype) * mask).sum().detach() / mask.sum().clamp(min=1)
    else:
        per_token, frac = 0.5 * unclipped, torch.zeros((), dtype=values.dtype)
    total = mask.sum() if num_tokens is None else num_tokens
    return (per_token * mask).sum() / max(float(total), 1.0), frac
