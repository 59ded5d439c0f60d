"""The sampler and the training log-probs against independent oracles: a plain, unpadded, one-row forward pass.

On a model that depends on positions (the `sharp` fixture), with prompts of mixed lengths (left padding), a
temperature other than 1 and top-p < 1, every sampled token must be the one that Gumbel-max picks over the plain
forward's logits, every response must end at (and include) its first end-of-sequence token, and `token_logprobs`
must equal `log_softmax(logits / T)` of that plain forward: the log-probs that make the ratio exactly 1 on the first
update.
"""

import copy

import pytest
import torch

from rlino.rollout import gumbel_noise, row_keys, sample, token_logprobs, top_p_filter

PROMPTS = ["3 5 7 -> 22\n", "1 2 -> 3\n", "12 9 4 8 -> 100\n", "7 ->\n"]  # 4 different lengths: left padding
T, TOP_P, MAX_NEW, SEED, STEP = 0.6, 0.9, 20, 5, 3


def nucleus(probs: torch.Tensor, top_p: float) -> set[int]:
    """The smallest set of most likely tokens whose mass reaches top_p, by a plain loop."""
    kept, mass = set(), 0.0
    for i in sorted(range(len(probs)), key=lambda j: -float(probs[j])):
        if mass >= top_p:
            break
        kept.add(i)
        mass += float(probs[i])
    return kept


@torch.no_grad()
def plain_logits(model, ids: list[int]) -> torch.Tensor:
    """Next-token logits [len(ids), V] of one unpadded row: no attention mask, no position ids, no cache."""
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def oracle_response(model, prompt_ids, key, eos_ids, *, temperature, top_p, max_new_tokens):
    """Tokens Gumbel-max picks with the sampler's public noise over plain-forward logits, up to the first EOS
    (included). Also returns the smallest margin between the best and second-best candidate (ties are ambiguous)."""
    out, margin = [], float("inf")
    for t in range(max_new_tokens):
        scaled = plain_logits(model, prompt_ids + out)[-1] / temperature
        allowed = sorted(nucleus(scaled.softmax(-1), top_p))
        noise = gumbel_noise(key.view(1), t, scaled.shape[0])[0].float()
        scores = (scaled + noise)[allowed]
        best2 = scores.topk(min(2, len(allowed)))
        if len(allowed) > 1:
            margin = min(margin, float(best2.values[0] - best2.values[1]))
        out.append(allowed[int(best2.indices[0])])
        if out[-1] in eos_ids:
            break
    return out, margin


@pytest.fixture(scope="module")
def batch(sharp):
    """A sampled batch on the sharp model, with three extra end-of-sequence ids so that some responses end early."""
    model, tok = sharp
    model = copy.deepcopy(model)
    first = sample(model, tok, PROMPTS, list(range(4)), seed=SEED, step=STEP, temperature=T, top_p=TOP_P,
                   max_new_tokens=MAX_NEW)
    counts = torch.bincount(first.completion_ids[first.completion_mask.bool()], minlength=len(tok))
    extra = counts.topk(3).indices.tolist()  # frequent tokens: as EOS they end some responses early
    model.generation_config.eos_token_id = [tok.eos_token_id, *extra]
    prompts = [p for p in PROMPTS for _ in range(3)]
    rollout = sample(model, tok, prompts, list(range(len(prompts))), seed=SEED, step=STEP, temperature=T,
                     top_p=TOP_P, max_new_tokens=MAX_NEW, batch_size=5)
    return model, tok, prompts, rollout, [tok.eos_token_id, *extra]


def test_sharp_model_depends_on_positions_and_padding(sharp):
    """The fixture can see position and padding bugs (the plain tiny model cannot)."""
    model, tok = sharp
    ids = torch.tensor([tok("3 5 7 -> 22\n(3 + 5) * 7", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = model(input_ids=ids).logits.log_softmax(-1)
        pos0 = model(input_ids=ids, position_ids=torch.zeros_like(ids)).logits.log_softmax(-1)
        padded = torch.cat([torch.full((1, 4), tok.pad_token_id), ids], dim=1)
        attended = model(input_ids=padded, position_ids=torch.arange(-4, ids.shape[1]).clamp(min=0)[None]).logits
    assert (ref - pos0).abs().max() > 0.5
    assert (ref - attended[:, 4:].log_softmax(-1)).abs().max() > 0.5


def test_every_sampled_token_is_gumbel_max_over_a_plain_forward(batch):
    """Positions, the KV cache, left padding, temperature, top-p and dropping finished rows, all at once."""
    model, tok, prompts, rollout, eos_ids = batch
    keys = row_keys(SEED, STEP, torch.arange(len(prompts)))
    assert rollout.prompt_mask.sum(dim=1).unique().numel() == len(PROMPTS)  # really left-padded
    ended = 0
    for i, prompt in enumerate(prompts):
        expected, margin = oracle_response(model, tok(prompt, add_special_tokens=False)["input_ids"], keys[i],
                                           eos_ids, temperature=T, top_p=TOP_P, max_new_tokens=MAX_NEW)
        assert margin > 1e-4, "an ambiguous tie in the oracle: change the seed"
        n = int(rollout.completion_mask[i].sum())
        got = rollout.completion_ids[i, :n].tolist()
        assert got == expected, f"row {i}"
        ends = expected[-1] in eos_ids
        ended += ends
        assert bool(rollout.truncated[i]) == (not ends)
        assert (rollout.completion_mask[i, n:] == 0).all() and (rollout.completion_mask[i, :n] == 1).all()
    assert 0 < ended < len(prompts)  # both ends of a response are exercised: an EOS and the length cap


@pytest.mark.parametrize("micro_batch", [12, 5])
def test_token_logprobs_equal_log_softmax_of_a_plain_forward_per_row(batch, micro_batch):
    """`token_logprobs` on left-padded micro-batches = log_softmax(logits / T) of each unpadded row (and entropy)."""
    model, tok, prompts, rollout, _ = batch
    checked = 0
    for mb in rollout.micro_batches(micro_batch):
        with torch.no_grad():
            logp, entropy = token_logprobs(model, *mb.tensors, temperature=T, with_entropy=True)
        for j, i in enumerate(mb.rows.tolist()):
            prompt = tok(prompts[i], add_special_tokens=False)["input_ids"]
            n = int(rollout.completion_mask[i].sum())
            response = rollout.completion_ids[i, :n].tolist()
            logits = plain_logits(model, prompt + response)[len(prompt) - 1: len(prompt) - 1 + n] / T
            expected = logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]
            torch.testing.assert_close(logp[j, :n], expected, rtol=0, atol=2e-5)
            ent = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
            torch.testing.assert_close(entropy[j, :n], ent, rtol=0, atol=2e-5)
            checked += n
    assert checked == int(rollout.completion_mask.sum())


@pytest.mark.parametrize("top_p,kept", [(0.4, {0}), (0.7, {0, 1}), (0.81, {0, 1, 2}), (0.96, {0, 1, 2, 3}),
                                        (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p, kept):
    """On p = (0.5, 0.3, 0.15, 0.05) in shuffled order: the boundary token that makes the mass reach top_p stays."""
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    rank = {1: 0, 3: 1, 0: 2, 2: 3}  # index -> rank by probability
    out = top_p_filter(probs.log()[None], top_p)[0]
    assert {rank[i] for i in range(4) if out[i] > float("-inf")} == kept
    finite = out > float("-inf")
    assert torch.equal(out[finite], probs.log()[finite])  # kept logits are untouched


def test_gumbel_max_draws_from_softmax_of_logits_over_t():
    """The counter-keyed noise is Gumbel: across rows, and across positions of one row, token frequencies match
    softmax(logits / T) within 4 standard errors (the hash is fixed, so this is deterministic, not flaky)."""
    from rlino.rollout import choose_tokens

    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    p = (logits / T).softmax(-1)
    n = 20000
    keys = row_keys(0, 1, torch.arange(n))
    across_rows = choose_tokens(logits.expand(n, -1), keys, 3, T, 1.0)
    across_positions = torch.cat([choose_tokens(logits[None], keys[:1], t, T, 1.0) for t in range(4000)])
    for tokens in (across_rows, across_positions):
        freq = torch.bincount(tokens, minlength=6).double() / len(tokens)
        se = (p * (1 - p) / len(tokens)).sqrt()
        assert ((freq - p).abs() <= 4 * se + 1e-4).all(), (freq, p)
    nucleus_only = choose_tokens(logits.expand(n, -1), keys, 3, T, 0.8)
    assert set(nucleus_only.unique().tolist()) == nucleus(p, 0.8)
