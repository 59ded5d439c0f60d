"""`rlino equivalence`: do two methods give the same gradient on the same batch?

The paper's claim made checkable: with β = 0, one update per freshly sampled batch (ratio = 1) and binary rewards,
GRPO's gradient equals that of a weighted supervised loss whose weights are GRPO's advantages (`fisft_adv`). This
samples real batches from a model, and for pairs of methods compares the two gradients (relative L2 difference
‖g_a − g_b‖ / ‖g_b‖ and cosine similarity), over several batches:

- `fisft_adv` vs `grpo_no_kl` on the first update: expected equal up to float error;
- `fisft_pos_neg` vs `grpo_no_kl`: how close fixed ±1 weights come (not expected equal);
- `grpo` vs `grpo_no_kl` after the policy moved: what the KL term changes (at the first update the policy is the
  reference, so the KL gradient is exactly 0);
- `fisft_adv` vs `grpo_no_kl` after k inner updates on the same batch: the ratio moves, the clip acts, and the match
  degrades;
- each method under each aggregation against its own default: how much is aggregation alone;
- `rloo` vs the group-centred weights × G/(G−1), and `nft` vs Dr. GRPO's r − r̂ weights under token-mean, on the
  first update: identities, expected equal;
- `ppo` with a critic that values every state at 0 and λ = γ = 1, unwhitened, vs the raw reward as the weight of
  every token (an identity: A_t = r − 0); then `ppo` as it runs (λ = 0.95, whitened) with a fresh critic and with a
  critic fitted on other sampled batches, vs `grpo_no_kl`: how far per-token credit moves the gradient.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

import torch

from rlino.config import Config
from rlino.credit import assign_credit
from rlino.critic import Critic, build_critic
from rlino.distributed import World
from rlino.errors import RlinoError
from rlino.evaluate import score_all
from rlino.gae import value_loss
from rlino.objectives import (
    AGGREGATIONS,
    METHODS,
    Method,
    group_rate,
    is_correct,
    response_weights,
    token_loss,
    zero_variance_groups,
)
from rlino.rollout import Rollout, sample, token_logprobs

INNER_STEPS = (1, 2, 4)
CRITIC_BATCHES = 4
"""Batches the `ppo` rows' critic is fitted on (sampled at steps CRITIC_FIRST_STEP, +1, ...: not the checked ones)."""
CRITIC_FIRST_STEP = 1001
CRITIC_FIT_EPOCHS = 25
EQUAL_TOL = 1e-5


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


def gradient(model, rollout: Rollout, rewards: torch.Tensor, group_size: int, method: Method, *, temperature: float,
             max_new_tokens: int, old_logp: torch.Tensor | None = None,
             ref_logp: torch.Tensor | None = None) -> torch.Tensor:
    """The flattened gradient of `method`'s loss on the whole batch (one forward, no micro-batching)."""
    model.zero_grad(set_to_none=True)
    logp, _ = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                             rollout.completion_mask, temperature=temperature)
    w = response_weights(rewards, group_size, method)
    token_loss(logp, rollout.completion_mask, w, method, old_logp=old_logp, ref_logp=ref_logp,
               max_new_tokens=max_new_tokens, correct=is_correct(rewards),
               rate=group_rate(rewards, group_size)).loss.backward()
    return _flat_grad(model)


def compare_grads(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.double(), b.double()  # float64: a cosine of float32 vectors can come out above 1
    rel = float((a - b).norm() / b.norm().clamp(min=1e-300))
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return {"rel_diff": rel, "cosine": cos}


def batch_checks(model, rollout: Rollout, rewards: torch.Tensor, cfg: Config,
                 critic: Critic | None = None) -> list[dict[str, Any]]:
    """Every comparison on one sampled batch; each row names the pair, the condition and the two numbers."""
    G, T, L = cfg.train.group_size, cfg.sampling.temperature, cfg.sampling.max_new_tokens
    kw = dict(temperature=T, max_new_tokens=L)
    rows = []

    def add(pair, condition, expected_equal, a, b):
        rows.append({"pair": pair, "condition": condition, "expected_equal": expected_equal, **compare_grads(a, b)})
        return rows[-1]

    base = {name: gradient(model, rollout, rewards, G, METHODS[name], **kw) for name in
            ("grpo_no_kl", "fisft_adv", "fisft_pos_neg", "fisft_pos")}
    add("fisft_adv vs grpo_no_kl", "first update (ratio = 1)", True, base["fisft_adv"], base["grpo_no_kl"])
    add("fisft_pos_neg vs grpo_no_kl", "first update", False, base["fisft_pos_neg"], base["grpo_no_kl"])
    add("fisft_pos vs grpo_no_kl", "first update", False, base["fisft_pos"], base["grpo_no_kl"])
    # RLOO's leave-one-out advantage is G/(G−1) times the group-centred one (Dr. GRPO's), so under the same
    # aggregation and ratio = 1 the gradients differ by exactly that factor
    centred = dataclasses.replace(METHODS["dr_grpo"], aggregation=METHODS["rloo"].aggregation)
    add("rloo vs dr_grpo weights × G/(G−1)", "first update (ratio = 1), same aggregation", True,
        gradient(model, rollout, rewards, G, METHODS["rloo"], **kw),
        gradient(model, rollout, rewards, G, centred, **kw) * (G / (G - 1)))
    # NFT at R = 1 with ω = 1 − r̂: −(1 − r̂)∇log π on correct, +r̂∇log π on wrong responses = r − r̂ weights
    add("nft vs dr_grpo weights [token-mean]", "first update (R = 1)", True,
        gradient(model, rollout, rewards, G, METHODS["nft"], **kw),
        gradient(model, rollout, rewards, G, dataclasses.replace(METHODS["dr_grpo"], aggregation="token-mean"), **kw))
    critic_rows(add, model, rollout, rewards, cfg, critic, base["grpo_no_kl"])
    for name in ("grpo_no_kl", "fisft_pos_neg"):
        for agg in AGGREGATIONS:
            if agg != METHODS[name].aggregation:
                m = dataclasses.replace(METHODS[name], aggregation=agg)
                add(f"{name} [{agg}] vs {name}", "first update: aggregation alone", False,
                    gradient(model, rollout, rewards, G, m, **kw), base[name])

    # inner updates on the same batch: the ratio pi/pi_old moves away from 1 and the clip starts to act
    with torch.no_grad():
        old, _ = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                rollout.completion_mask, temperature=T)
    moved = copy.deepcopy(model)
    opt = torch.optim.AdamW(moved.parameters(), lr=cfg.train.learning_rate, weight_decay=0.0)
    for k in range(1, max(INNER_STEPS) + 1):
        gradient(moved, rollout, rewards, G, METHODS["grpo_no_kl"], old_logp=old, **kw)  # leaves .grad set
        opt.step()
        if k in INNER_STEPS:
            no_kl = gradient(moved, rollout, rewards, G, METHODS["grpo_no_kl"], old_logp=old, **kw)
            adv = gradient(moved, rollout, rewards, G, METHODS["fisft_adv"], **kw)
            kl = gradient(moved, rollout, rewards, G, METHODS["grpo"], old_logp=old, ref_logp=old, **kw)
            add("fisft_adv vs grpo_no_kl", f"after {k} inner update(s) on the batch", False, adv, no_kl)
            add("grpo vs grpo_no_kl", f"after {k} inner update(s) (KL to the starting policy)", False, kl, no_kl)
    return rows


def critic_gradient(model, rollout: Rollout, rewards: torch.Tensor, cfg: Config, critic: Critic | None, *,
                    lam: float, whiten: bool) -> tuple[torch.Tensor, float]:
    """`ppo`'s gradient on the batch with its advantages as a step computes them (`credit.assign_credit`, one
    process, no KL; `critic` None: V ≡ 0), and the critic's explained variance of the returns on this batch."""
    settings = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, lam=lam, whiten=whiten))
    batches = rollout.micro_batches(len(rollout.texts))
    credit = assign_credit(critic, model, contextlib.nullcontext, rollout, batches, rewards, [None] * len(batches),
                           settings, 0.0, World())
    model.zero_grad(set_to_none=True)
    logp, _ = token_logprobs(model, *_tensors(rollout), temperature=cfg.sampling.temperature)
    token_loss(logp, rollout.completion_mask, credit.advantages, METHODS["ppo"],
               max_new_tokens=cfg.sampling.max_new_tokens).loss.backward()
    return _flat_grad(model), credit.metrics["critic/explained_variance"]


def _tensors(rollout: Rollout) -> tuple[torch.Tensor, ...]:
    return rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask


def critic_rows(add, model, rollout: Rollout, rewards: torch.Tensor, cfg: Config, critic: Critic | None,
                grpo_no_kl: torch.Tensor) -> None:
    """The `ppo` rows: the V ≡ 0, λ = γ = 1 identity with raw-reward weights, then ppo as it runs vs grpo_no_kl."""
    plain = dataclasses.replace(METHODS["fisft_pos"], clip=True, aggregation=METHODS["ppo"].aggregation)
    zero, _ = critic_gradient(model, rollout, rewards, dataclasses.replace(cfg, critic=dataclasses.replace(
        cfg.critic, gamma=1.0)), None, lam=1.0, whiten=False)
    add("ppo [V ≡ 0, λ = γ = 1, unwhitened] vs the reward as every token's weight", "first update (ratio = 1)",
        True, zero, gradient(model, rollout, rewards, cfg.train.group_size, plain, temperature=cfg.sampling.temperature,
                             max_new_tokens=cfg.sampling.max_new_tokens))
    fresh, _ = critic_gradient(model, rollout, rewards, cfg, None, lam=cfg.critic.lam, whiten=cfg.critic.whiten)
    add("ppo [a fresh critic: V ≡ 0] vs grpo_no_kl", "first update", False, fresh, grpo_no_kl)
    if critic is not None:
        fitted, explained = critic_gradient(model, rollout, rewards, cfg, critic, lam=cfg.critic.lam,
                                            whiten=cfg.critic.whiten)
        row = add(f"ppo [a critic fitted on {CRITIC_BATCHES} other batches] vs grpo_no_kl", "first update", False,
                  fitted, grpo_no_kl)
        row["explained_variance"] = explained  # how much of the returns' variance the critic predicts here


def fit_critic(cfg: Config, batches: list[tuple[Rollout, torch.Tensor]]) -> Critic:
    """A critic fitted by regression of every token's value on its Monte Carlo return (the outcome reward: γ = 1,
    no KL), CRITIC_FIT_EPOCHS passes over `batches` with AdamW at critic.learning_rate (default 10 × train's)."""
    critic = build_critic(cfg.critic.model or cfg.model.name_or_path, dtype="float32", device=cfg.model.device,
                          seed=cfg.train.seed)
    lr = cfg.critic.learning_rate or 10 * cfg.train.learning_rate
    opt = torch.optim.AdamW(critic.parameters(), lr=lr, weight_decay=0.0)
    critic.train()
    for _ in range(CRITIC_FIT_EPOCHS):
        for rollout, rewards in batches:
            mask = rollout.completion_mask.float()
            returns = rewards.float().unsqueeze(1) * mask
            values = critic(*_tensors(rollout))
            loss, _ = value_loss(values, values.detach(), returns, mask, clip=0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return critic.eval()


def run_equivalence(cfg: Config, *, batches: int = 3) -> dict[str, Any]:
    """Sample `batches` batches (train prompts of steps 1..batches) and run every check; aggregate per check."""
    from rlino.models import load_model
    from rlino.prompts import config_prompt_format
    from rlino.schedule import prompt_indices
    from rlino.tasks import load_task

    task = load_task(cfg.task.name, **cfg.task.options)
    items = task.items("train")
    model, tokenizer = load_model(cfg.model.name_or_path, dtype="float32", device=cfg.model.device,
                                  seed=cfg.train.seed)
    G = cfg.train.group_size
    fmt = config_prompt_format(cfg, tokenizer)

    def sampled(step: int) -> tuple[Rollout, torch.Tensor]:
        chosen = [items[i] for i in prompt_indices(step, cfg.train.prompts_per_step, len(items), cfg.train.seed)]
        rows = [it for it in chosen for _ in range(G)]
        rollout = sample(model, tokenizer, [it.prompt for it in rows], list(range(len(rows))), seed=cfg.train.seed,
                         step=step, temperature=cfg.sampling.temperature, top_p=cfg.sampling.top_p,
                         max_new_tokens=cfg.sampling.max_new_tokens, batch_size=cfg.sampling.batch_size,
                         prompt_format=fmt)
        return rollout, score_all(task, rollout.texts, rows)

    # the critic is fitted on batches of other steps than the checked ones, so its values are out of sample there
    critic = fit_critic(cfg, [sampled(CRITIC_FIRST_STEP + k) for k in range(CRITIC_BATCHES)])
    per_batch = []
    for step in range(1, 10 * batches + 1):
        if len(per_batch) == batches:
            break
        rollout, rewards = sampled(step)
        if bool(zero_variance_groups(rewards, G).all()):
            continue  # every advantage is 0: both gradients vanish and the batch tells nothing
        model.train()
        per_batch.append({"step": step, "reward_mean": float(rewards.mean()), "checks": batch_checks(
            model, rollout, rewards, cfg, critic)})
    if not per_batch:
        raise RlinoError(f"no sampled batch had reward variance within a group in {10 * batches} steps: every "
                         "gradient is 0; use a model that solves some prompts")
    summary = []
    for j, first in enumerate(per_batch[0]["checks"]):
        vals = [b["checks"][j] for b in per_batch]
        rel = [v["rel_diff"] for v in vals]
        cos = [v["cosine"] for v in vals]
        row = {k: first[k] for k in ("pair", "condition", "expected_equal")}
        row.update(rel_diff_mean=sum(rel) / len(rel), rel_diff_max=max(rel), cosine_mean=sum(cos) / len(cos))
        if "explained_variance" in first:
            row["explained_variance_mean"] = sum(v["explained_variance"] for v in vals) / len(vals)
        if first["expected_equal"]:
            row["agrees"] = row["rel_diff_max"] <= EQUAL_TOL
        summary.append(row)
    return {"model": cfg.model.name_or_path, "task": cfg.task.name, "batches": len(per_batch),
            "responses_per_batch": cfg.train.prompts_per_step * G, "tolerance": EQUAL_TOL, "summary": summary,
            "per_batch": per_batch}


CONDITIONS = ("Equality is expected for `fisft_adv` vs `grpo_no_kl` on the first update of a freshly sampled "
              "batch:\nβ = 0, ratio π/π_old = 1 (so the clip is inactive and ∇ρ = ∇log π), binary outcome rewards, "
              "and F-ISFT weights equal\nto GRPO's group advantages (zero-variance groups get weight 0 in both); "
              "for `rloo` vs the group-centred weights\n× G/(G−1) under the same aggregation (the leave-one-out "
              "identity); for `nft` vs r − r̂ weights under token-mean (NFT's\nstated equivalence, ω = 1 − r̂); and "
              "for `ppo` with V ≡ 0, λ = γ = 1 vs the reward as every token's weight. Every other row measures\n"
              "a difference; the fitted critic's rows give its explained variance of the returns on the checked "
              "batches (out of sample).")


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"Gradient comparison on {result['batches']} sampled batches of {result['responses_per_batch']} "
             f"responses ({result['model']}, {result['task']}).", "", CONDITIONS, "",
             "| pair | condition | rel. L2 diff (mean, max) | cosine | expected | agrees |",
             "|---|---|---|---|---|---|"]
    for r in result["summary"]:
        expected = f"equal (≤ {result['tolerance']:g})" if r["expected_equal"] else "different"
        agrees = ("yes" if r["agrees"] else "NO") if "agrees" in r else "—"
        pair = r["pair"] + (f" (critic's explained variance {r['explained_variance_mean']:.2f})"
                            if "explained_variance_mean" in r else "")
        lines.append(f"| {pair} | {r['condition']} | {r['rel_diff_mean']:.2e}, {r['rel_diff_max']:.2e} | "
                     f"{r['cosine_mean']:.6f} | {expected} | {agrees} |")
    return "\n".join(lines)
