"""Sampling and gradients on the real embedded model: layout-independent sampling, the F-ISFT/GRPO equivalence,
and gradient accumulation equal to one big batch."""

import copy
import dataclasses

import pytest
import torch

from rlino.objectives import METHODS, response_weights, token_loss
from rlino.rollout import sample, token_logprobs

PROMPTS = ["3 5 7 -> 22\n", "1 2 -> 3\n", "9 9 9 9 -> 81\n"]  # three lengths: left padding
T = 0.7


def fresh_batch(tiny, G=4, seed=0, max_new_tokens=16):
    model, tok = tiny
    prompts = [p for p in PROMPTS for _ in range(G)]
    rollout = sample(model, tok, prompts, list(range(len(prompts))), seed=seed, step=1, temperature=T, top_p=1.0,
                     max_new_tokens=max_new_tokens, batch_size=5)
    # A stand-in verifier with reward variance inside groups (the random tiny model solves nothing):
    # a response is "correct" when the sum of its token ids is even.
    rewards = ((rollout.completion_ids * rollout.completion_mask).sum(dim=1) % 2 == 0).float()
    return rollout, rewards


def grads_of(model, fn):
    model.zero_grad(set_to_none=True)
    fn().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def rel_diff(a, b):
    return float((a - b).norm() / b.norm())


def test_sampling_does_not_depend_on_batch_size_or_neighbours(tiny):
    model, tok = tiny
    prompts = [p for p in PROMPTS for _ in range(3)]
    kw = dict(seed=3, step=7, temperature=1.0, top_p=0.95, max_new_tokens=12)
    a = sample(model, tok, prompts, list(range(9)), batch_size=9, **kw)
    b = sample(model, tok, prompts, list(range(9)), batch_size=2, **kw)
    c = sample(model, tok, prompts[4:6], [4, 5], batch_size=1, **kw)
    assert a.texts == b.texts
    assert a.texts[4:6] == c.texts
    assert len(set(a.texts)) > 3  # really random
    d = sample(model, tok, prompts, list(range(9)), batch_size=9, **{**kw, "step": 8})
    assert d.texts != a.texts


def test_greedy_matches_transformers_generate(sharp):
    """Greedy decoding of left-padded prompts of mixed lengths equals `generate` on each prompt alone, token for
    token up to and including the first end-of-sequence token (on a model that depends on positions)."""
    model, tok = sharp
    model = copy.deepcopy(model)
    first = sample(model, tok, PROMPTS, [0, 1, 2], seed=0, step=0, temperature=0.0, top_p=1.0, max_new_tokens=12)
    # make a token that greedy decoding produces mid-response an end-of-sequence token, so both ends are checked
    model.generation_config.eos_token_id = [tok.eos_token_id, int(first.completion_ids[1, 5])]
    r = sample(model, tok, PROMPTS, [0, 1, 2], seed=0, step=0, temperature=0.0, top_p=1.0, max_new_tokens=12)
    stopped = 0
    for i, p in enumerate(PROMPTS):
        ids = tok(p, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        expected = out[0, ids["input_ids"].shape[1]:].tolist()
        ends = [k for k, t in enumerate(expected) if t in model.generation_config.eos_token_id]
        expected = expected[: ends[0] + 1] if ends else expected
        stopped += bool(ends)
        got = r.completion_ids[i][r.completion_mask[i].bool()].tolist()
        assert got == expected, i
        assert bool(r.truncated[i]) == (not ends)
    assert 0 < stopped < len(PROMPTS)


def test_fisft_adv_and_grpo_no_kl_gradients_equal_on_a_fresh_batch(tiny):
    model, _ = tiny
    rollout, rewards = fresh_batch(tiny)
    assert 0 < rewards.mean() < 1
    grads = {}
    for name in ("fisft_adv", "grpo_no_kl", "fisft_pos_neg"):
        m = METHODS[name]
        w = response_weights(rewards, 4, m)

        def loss(w=w, m=m):
            logp, _ = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                     rollout.completion_mask, temperature=T)
            return token_loss(logp, rollout.completion_mask, w, m).loss

        grads[name] = grads_of(model, loss)
    assert grads["grpo_no_kl"].norm() > 1e-4
    assert rel_diff(grads["fisft_adv"], grads["grpo_no_kl"]) <= 1e-5
    assert rel_diff(grads["fisft_pos_neg"], grads["grpo_no_kl"]) > 1e-2  # fixed ±1 weights are not the same update


def hand_loss(model, tok, rollout, w, m, ref_shift, L):
    """The step's loss written out by hand from each row's own unpadded forward pass (no token_logprobs, no
    aggregate, no token_loss): ℓ_it = −w_i log π_it + β k3_it, at ratio 1 (the first update), then the aggregation.
    The reference log-probs are the row's own minus `ref_shift`, so the KL term has a gradient."""
    n = len(w)
    per_row, lengths = [], []
    for i in range(n):
        prompt = rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
        k = int(rollout.completion_mask[i].sum())
        response = rollout.completion_ids[i, :k]
        logits = model(input_ids=torch.tensor([prompt + response.tolist()])).logits[0, len(prompt) - 1:-1] / T
        logp = logits.log_softmax(-1).gather(-1, response[:, None])[:, 0]
        delta = (logp.detach() - ref_shift) - logp
        per_row.append(-w[i] * logp + m.beta * (delta.exp() - delta - 1))
        lengths.append(k)
    if m.aggregation == "seq-mean-token-mean":
        return sum(row.sum() / k for row, k in zip(per_row, lengths)) / n
    if m.aggregation == "token-mean":
        return sum(row.sum() for row in per_row) / sum(lengths)
    return sum(row.sum() for row in per_row) / (n * L)


@pytest.mark.parametrize("aggregation", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("name", ["grpo", "fisft_pos_neg"])
def test_micro_batched_gradient_equals_the_hand_written_loss(sharp, aggregation, name):
    """Micro-batches of 5 and of the whole batch (left padding, trimmed per micro-batch, step-wide normalisers) give
    the gradient of the loss written out by hand on unpadded rows."""
    model, tok = sharp
    rollout, rewards = fresh_batch(sharp, max_new_tokens=20)
    assert 0 < rewards.mean() < 1
    m = dataclasses.replace(METHODS[name], aggregation=aggregation)
    w = response_weights(rewards, 4, m)
    n_resp, n_tok = len(rewards), float(rollout.completion_mask.sum())
    with torch.no_grad():
        ref = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                             rollout.completion_mask, temperature=T)[0] - 0.1

    def total(micro):
        loss = 0.0
        for mb in rollout.micro_batches(micro):
            logp, _ = token_logprobs(model, *mb.tensors, temperature=T)
            width = mb.completion_mask.shape[1]
            out = token_loss(logp, mb.completion_mask, w[mb.rows], m, ref_logp=ref[mb.rows, :width],
                             num_responses=n_resp, num_tokens=n_tok, max_new_tokens=20)
            loss = loss + out.loss
        return loss

    oracle = grads_of(model, lambda: hand_loss(model, tok, rollout, w, m, 0.1, 20))
    assert oracle.norm() > 0
    for micro in (len(rewards), 5):
        assert rel_diff(grads_of(model, lambda micro=micro: total(micro)), oracle) <= 1e-5, micro


def test_a_step_raises_the_likelihood_of_positives_and_lowers_negatives(tiny):
    """The update goes the right way: one SGD step on fisft_pos_neg weights moves each response's log-likelihood."""
    model = copy.deepcopy(tiny[0])
    rollout, rewards = fresh_batch((model, tiny[1]))
    m = METHODS["fisft_pos_neg"]
    w = response_weights(rewards, 4, m)

    def seq_logp():
        logp, _ = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                 rollout.completion_mask)
        return (logp * rollout.completion_mask).sum(dim=1)

    before = seq_logp().detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    logp, _ = token_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                             rollout.completion_mask)
    token_loss(logp, rollout.completion_mask, w, m).loss.backward()
    opt.step()
    after = seq_logp().detach()
    ok = rewards.bool()
    assert (after - before)[ok].mean() > 0 > (after - before)[~ok].mean()
