"""PPO mini-batches (`method.mini_batches`): the update takes one optimizer step per part of the step's groups, each
normalised by its own counts, with π_old the policy that sampled the batch. Oracle: the same steps written out by
hand with plain forwards, `token_loss` and the optimizer (not the update's plumbing)."""

import copy
import dataclasses

import pytest
import torch

from rlino.config import Config
from rlino.distributed import World
from rlino.errors import RlinoError
from rlino.objectives import METHODS, response_weights, token_loss
from rlino.rollout import sample, token_logprobs
from rlino.step import Batch, Clock, Policy, Scored, update

PROMPTS = ["3 5 7 -> 22\n", "1 2 -> 3\n", "9 9 9 9 -> 81\n"]
G, T, LR = 4, 0.7, 0.5


def batch_of(sharp):
    model, tok = sharp
    prompts = [p for p in PROMPTS for _ in range(G)]
    rollout = sample(model, tok, prompts, list(range(len(prompts))), seed=1, step=1, temperature=T, top_p=1.0,
                     max_new_tokens=12, batch_size=12)
    rewards = ((rollout.completion_ids * rollout.completion_mask).sum(dim=1) % 2 == 0).float()  # a coin-flip verifier
    assert 0 < rewards.mean() < 1
    return rollout, rewards


def cfg_for():
    cfg = Config()
    cfg.train.group_size, cfg.train.micro_batch_size, cfg.train.max_grad_norm = G, 5, 0.0
    cfg.sampling.temperature, cfg.sampling.max_new_tokens = T, 12
    return cfg


def by_update(sharp, method, rollout, rewards):
    model = copy.deepcopy(sharp[0])
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    policy = Policy(model, sharp[1], None, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    batch = Batch(items=PROMPTS, rows=[p for p in PROMPTS for _ in range(G)], rollout=rollout)
    scored = Scored(rewards, response_weights(rewards, G, method))
    stats = update(policy, batch, scored, cfg_for(), method, World(), Clock(), step=1)
    return model, stats


def by_hand(sharp, method, rollout, rewards, parts):
    """For each part (row indices): zero the gradient, the part's token_loss with its own normalisers and π_old
    taken before any step, backward, one SGD step."""
    model = copy.deepcopy(sharp[0])
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    r = rollout
    tensors = lambda rows: (r.prompt_ids[rows], r.prompt_mask[rows], r.completion_ids[rows], r.completion_mask[rows])  # noqa: E731
    with torch.no_grad():
        old = token_logprobs(model, *tensors(torch.arange(len(rewards))), temperature=T)[0]
    w = response_weights(rewards, G, method)
    for _ in range(method.epochs_per_batch):
        for rows in parts:
            rows = torch.tensor(rows)
            opt.zero_grad()
            logp = token_logprobs(model, *tensors(rows), temperature=T)[0]
            mask = r.completion_mask[rows]
            token_loss(logp, mask, w[rows], method, old_logp=old[rows], num_responses=len(rows),
                       num_tokens=float(mask.sum()), max_new_tokens=12).loss.backward()
            opt.step()
    return model


def max_diff(a, b):
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name", ["nsr", "w_reinforce", "grpo_no_kl"])
def test_mini_batches_are_optimizer_steps_on_parts_with_the_sampling_policy_as_pi_old(sharp, name):
    rollout, rewards = batch_of(sharp)
    method = dataclasses.replace(METHODS[name], mini_batches=2)
    parts = [list(range(0, 4)) + list(range(8, 12)), list(range(4, 8))]  # prompt p in part p mod 2
    model, stats = by_update(sharp, method, rollout, rewards)
    assert max_diff(model, by_hand(sharp, method, rollout, rewards, parts)) < 1e-6
    assert stats.sums["clip"] > 0  # the second part's ratio moved far enough for the clip to bind
    # and the parts matter: one step on the whole batch, or the second part's π_old taken after the first step, differ
    whole = by_hand(sharp, dataclasses.replace(method, mini_batches=1), rollout, rewards, [list(range(12))])
    assert max_diff(model, whole) > 1e-3
    unclipped = by_hand(sharp, dataclasses.replace(method, clip=False), rollout, rewards, parts)
    assert max_diff(model, unclipped) > 1e-4  # the clip acted on the second part


def test_one_mini_batch_is_one_step_on_the_whole_batch(sharp):
    """The rows without mini-batches (every row but psr, nsr, w_reinforce): one optimizer step on all groups."""
    rollout, rewards = batch_of(sharp)
    method = METHODS["grpo_no_kl"]
    model, stats = by_update(sharp, method, rollout, rewards)
    assert method.mini_batches == 1 and stats.sums["clip"] == 0
    assert max_diff(model, by_hand(sharp, method, rollout, rewards, [list(range(12))])) < 1e-6


def test_epochs_and_mini_batches_compose(sharp):
    rollout, rewards = batch_of(sharp)
    method = dataclasses.replace(METHODS["nsr"], mini_batches=3, epochs_per_batch=2)
    model, _ = by_update(sharp, method, rollout, rewards)
    parts = [list(range(0, 4)), list(range(4, 8)), list(range(8, 12))]
    assert max_diff(model, by_hand(sharp, method, rollout, rewards, parts)) < 1e-6


def test_more_parts_than_prompts_is_a_clear_error(sharp):
    rollout, rewards = batch_of(sharp)
    with pytest.raises(RlinoError, match="method.mini_batches = 4 needs at least as many prompts a step"):
        by_update(sharp, dataclasses.replace(METHODS["nsr"], mini_batches=4), rollout, rewards)
