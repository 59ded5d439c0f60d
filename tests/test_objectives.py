"""The objective's math on real tensors: advantages, aggregations, clipping, KL, accumulation, equivalence."""

import dataclasses
import math

import pytest
import torch

from rlino.objectives import METHODS, aggregate, objective, response_weights, token_loss, token_weights_for_length


def method(name, **changes):
    return dataclasses.replace(METHODS[name], **changes)


@pytest.mark.parametrize("G,k", [(4, 1), (4, 2), (4, 3), (8, 1), (8, 5), (5, 2)])
@pytest.mark.parametrize("std", ["population", "sample"])
def test_group_advantages_closed_form(G, k, std):
    rewards = torch.tensor([1.0] * k + [0.0] * (G - k))
    w = response_weights(rewards, G, method("grpo", std=std, adv_eps=0.0))
    p = k / G
    scale = 1.0 if std == "population" else math.sqrt((G - 1) / G)
    assert torch.allclose(w[:k], torch.full((k,), math.sqrt((1 - p) / p) * scale), atol=1e-6)
    assert torch.allclose(w[k:], torch.full((G - k,), -math.sqrt(p / (1 - p)) * scale), atol=1e-6)


def test_zero_variance_groups_get_zero_weight_and_groups_are_independent():
    rewards = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0])
    w = response_weights(rewards, 4, METHODS["grpo"])
    assert torch.equal(w[:8], torch.zeros(8))
    assert w[8] > 0 and (w[9:] < 0).all()
    d = response_weights(rewards, 4, METHODS["dr_grpo"])
    assert torch.allclose(d[8:], torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_fixed_weights_and_neg_weight():
    r = torch.tensor([1.0, 0.0, 0.1, 1.0])  # 0.1: a format bonus, still wrong
    assert response_weights(r, 2, METHODS["fisft_pos_neg"]).tolist() == [1, -1, -1, 1]
    assert response_weights(r, 2, METHODS["fisft_pos"]).tolist() == [1, 0, 0, 1]
    assert response_weights(r, 2, METHODS["fisft_neg"]).tolist() == [0, -1, -1, 0]
    assert response_weights(r, 2, method("fisft_pos_neg", neg_weight=0.25)).tolist() == [1, -0.25, -0.25, 1]
    # GRPO's weights, by hand: each group (1, 0) and (0.1, 1) has mean m and sample std s; (r - m) / (s + 1e-4)
    s1, s2 = math.sqrt(0.5), math.sqrt(0.405)  # std of (1, 0) and of (0.1, 1) with n - 1 = 1
    expected = [0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4), -0.45 / (s2 + 1e-4), 0.45 / (s2 + 1e-4)]
    for name in ("fisft_adv", "grpo_no_kl", "grpo"):
        assert response_weights(r, 2, METHODS[name]).tolist() == pytest.approx(expected, rel=1e-6)


def test_rloo_leave_one_out_weights_by_hand():
    """RLOO: each response's reward minus the mean of the *other* responses of its prompt, written out per item."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    w = response_weights(rewards, 4, METHODS["rloo"])
    expected = [1 - (0 + 0 + 1) / 3, 0 - (1 + 0 + 1) / 3, 0 - (1 + 0 + 1) / 3, 1 - (1 + 0 + 0) / 3,  # (1, 0, 0, 1)
                0.0, 0.0, 0.0, 0.0,                                                            # all equal: no signal
                0.5 - 0.0, 0 - 0.5 / 3, 0 - 0.5 / 3, 0 - 0.5 / 3]                              # (0.5, 0, 0, 0)
    assert w.tolist() == pytest.approx(expected, abs=1e-6)
    # the literature's identity: leave-one-out = G / (G - 1) x the group-centred weight (Dr. GRPO's)
    assert torch.allclose(w, 4 / 3 * response_weights(rewards, 4, METHODS["dr_grpo"]), atol=1e-6)
    assert METHODS["rloo"].clip and METHODS["rloo"].beta == 0.0
    with pytest.raises(Exception, match="needs groups"):
        response_weights(torch.tensor([1.0, 0.0, 1.0]), 1, METHODS["rloo"])


def test_raft_pp_and_reinforce_rej_weights_by_hand():
    """Reinforce-Rej: +1 / −1 in groups with both outcomes, 0 in all-correct or all-wrong groups; RAFT++: +1 on
    correct responses only. Both with the clipped ratio, token-mean and a k3 KL of β = 0.001 (the authors' runs)."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.0, 0.0, 0.0])
    rej = response_weights(rewards, 4, METHODS["reinforce_rej"])
    assert rej.tolist() == [1, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0, 0, -1, 1, -1, -1]  # 0.1: a format bonus, wrong
    assert response_weights(rewards, 4, method("reinforce_rej", neg_weight=0.5)).tolist()[:4] == [1, -0.5, -0.5, 1]
    raft = response_weights(rewards, 4, METHODS["raft_pp"])
    assert raft.tolist() == [1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    for name in ("raft_pp", "reinforce_rej"):
        m = METHODS[name]
        assert (m.clip, m.clip_eps, m.aggregation, m.beta) == (True, 0.2, "token-mean", 0.001)


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # per response: (1+2+3)/3 = 2 and 4/1 = 4; mean over 2 responses = 3
    assert aggregate(per_token, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # all 4 tokens: (1+2+3+4)/4
    assert aggregate(per_token, mask, "token-mean").item() == pytest.approx(2.5)
    # sum 10 over 2 responses x 8 max tokens
    assert aggregate(per_token, mask, "seq-mean-token-sum-norm", max_new_tokens=8).item() == pytest.approx(10 / 16)
    # as one micro-batch of a larger step: the step's normalisers are used
    assert aggregate(per_token, mask, "seq-mean-token-mean", num_responses=4).item() == pytest.approx(1.5)
    assert aggregate(per_token, mask, "token-mean", num_tokens=20).item() == pytest.approx(0.5)


def test_token_weight_curves_by_hand():
    lengths = torch.tensor([1, 10, 100])
    seq = token_weights_for_length(lengths, "seq-mean-token-mean", num_responses=4, num_tokens=200,
                                   max_new_tokens=100)
    assert torch.allclose(seq, torch.tensor([1 / 4, 1 / 40, 1 / 400]))
    tok = token_weights_for_length(lengths, "token-mean", num_responses=4, num_tokens=200, max_new_tokens=100)
    assert torch.allclose(tok, torch.full((3,), 1 / 200))
    dr = token_weights_for_length(lengths, "seq-mean-token-sum-norm", num_responses=4, num_tokens=200,
                                  max_new_tokens=100)
    assert torch.allclose(dr, torch.full((3,), 1 / 400))


def test_clipped_tokens_get_zero_gradient():
    old = torch.zeros(2, 3)
    # row 0 positive weight: ratios e^0.5 (above 1.2: clipped), 1.0, e^-0.5 (below 0.8: not clipped for w > 0)
    # row 1 negative weight: ratios e^0.5 (not clipped for w < 0), 1.0, e^-0.5 (clipped)
    logp = torch.tensor([[0.5, 0.0, -0.5], [0.5, 0.0, -0.5]], requires_grad=True)
    mask = torch.ones(2, 3)
    w = torch.tensor([1.0, -1.0])
    out = token_loss(logp, mask, w, METHODS["grpo_no_kl"], old_logp=old)
    out.loss.backward()
    g = logp.grad
    assert g[0, 0] == 0 and g[1, 2] == 0
    assert g[0, 1] != 0 and g[0, 2] != 0 and g[1, 0] != 0 and g[1, 1] != 0
    assert out.clip_frac.item() == pytest.approx(2 / 6)
    # one clipped above 1 + ε (w > 0), one below 1 − ε (w < 0)
    assert (out.clip_frac_high.item(), out.clip_frac_low.item()) == (pytest.approx(1 / 6), pytest.approx(1 / 6))
    # unclipped tokens: d/dlogp of -w * exp(logp - old) / (3 * 2)
    assert g[0, 1].item() == pytest.approx(-1 / 6)
    assert g[1, 0].item() == pytest.approx(math.exp(0.5) / 6, rel=1e-6)


@pytest.mark.parametrize("w", [1.5, -1.5])
@pytest.mark.parametrize("ratio", [0.7, 0.79, 0.81, 1.0, 1.19, 1.21, 1.27, 1.29, 1.5])
def test_clip_bounds_on_both_sides_of_one_by_hand(ratio, w):
    """PPO's clipped term −min(ρw, clip(ρ, 1−ε_low, 1+ε_high)·w) with ε_low = 0.2, ε_high = 0.28, one token:
    for w > 0 the gradient vanishes above 1 + ε_high (and never below 1); for w < 0 below 1 − ε_low (never above)."""
    m = method("grpo_no_kl", clip_eps=0.2, clip_eps_high=0.28)
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    out = token_loss(logp, torch.ones(1, 1), torch.tensor([w]), m, old_logp=torch.zeros(1, 1))
    out.loss.backward()
    clipped = ratio > 1.28 if w > 0 else ratio < 0.8
    bounded = min(max(ratio, 0.8), 1.28)
    assert out.loss.item() == pytest.approx(-min(ratio * w, bounded * w), rel=1e-6)
    assert logp.grad.item() == pytest.approx(0.0 if clipped else -w * ratio, rel=1e-6, abs=1e-12)
    assert out.clip_frac.item() == (1.0 if clipped else 0.0)
    # the side: above 1 + ε_high only for w > 0, below 1 − ε_low only for w < 0
    assert out.clip_frac_high.item() == (1.0 if clipped and w > 0 else 0.0)
    assert out.clip_frac_low.item() == (1.0 if clipped and w < 0 else 0.0)


def test_every_method_setting_reaches_the_resolved_method():
    """Each field of MethodConfig, set to a value different from every row's default, arrives in the Method."""
    from rlino.config import MethodConfig
    from rlino.objectives import resolve_method

    values = dict(weights="pos-neg", aggregation="token-mean", clip=False, clip_eps=0.13, clip_eps_high=0.31,
                  beta=0.07, epochs_per_batch=3, neg_weight=0.4, std="population", adv_eps=1e-3, term="nft",
                  pos_weight=0.3, mini_batches=3)
    fields = {f.name for f in dataclasses.fields(MethodConfig)} - {"name"}
    assert fields == set(values), "a new MethodConfig field: add a value here"
    for name in METHODS:
        resolved = resolve_method(MethodConfig(name=name, **values))
        assert {k: getattr(resolved, k) for k in values} == values, name
        for k in values:  # and each one alone, so no field depends on another being set
            if k == "term" and (METHODS[name].clip or METHODS[name].has_critic):
                continue  # an error there (test_nft_term_needs_no_clip_and_one_weight_per_response)
            if (k == "pos_weight" and METHODS[name].weights != "pos-neg") or (k == "mini_batches"
                                                                              and METHODS[name].has_critic):
                continue  # an error there (test_w_reinforce_settings_are_checked)
            one = resolve_method(MethodConfig(name=name, **{k: values[k]}))
            assert getattr(one, k) == values[k], (name, k)
    symmetric = resolve_method(MethodConfig(name="grpo", clip_eps=0.1))
    assert (symmetric.clip_eps, symmetric.clip_eps_high) == (0.1, 0.1)  # a symmetric row stays symmetric
    dapo = resolve_method(MethodConfig(name="dapo", clip_eps=0.1))
    assert (dapo.clip_eps, dapo.clip_eps_high) == (0.1, 0.28)  # an asymmetric row keeps its upper bound


def test_dapo_clip_higher_bounds():
    m = METHODS["dapo"]
    assert (m.clip_eps, m.clip_eps_high) == (0.2, 0.28)
    old = torch.zeros(1, 2)
    logp = torch.tensor([[math.log(1.25), math.log(1.3)]], requires_grad=True)  # 1.25 inside 1.28, 1.3 outside
    token_loss(logp, torch.ones(1, 2), torch.tensor([1.0]), m, old_logp=old).loss.backward()
    assert logp.grad[0, 0] != 0 and logp.grad[0, 1] == 0


def test_k3_kl_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0]])
    out = token_loss(logp, torch.ones(1, 2), torch.zeros(1), METHODS["grpo"], ref_logp=ref)
    # token 0: ref == logp -> 0; token 1: delta = 1 -> e - 1 - 1
    assert out.kl.item() == pytest.approx((math.e - 2) / 2)
    out.loss.backward()
    # d/dlogp [beta (e^(ref-logp) - (ref-logp) - 1)] = beta (1 - e^(ref-logp)), averaged over 2 tokens
    assert logp.grad[0, 0].item() == pytest.approx(0.0, abs=1e-7)
    assert logp.grad[0, 1].item() == pytest.approx(0.04 * (1 - math.e) / 2, rel=1e-6)


def test_fisft_adv_loss_equals_first_update_grpo_gradient_on_tensors():
    torch.manual_seed(0)
    logp = (-torch.rand(8, 6) * 3).requires_grad_(True)
    mask = (torch.rand(8, 6) > 0.2).long()
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1])
    grads = []
    for name in ("fisft_adv", "grpo_no_kl"):
        logp.grad = None
        objective(logp, mask, rewards, 4, METHODS[name]).loss.backward()
        grads.append(logp.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-7)


def test_nft_prompt_weight_is_the_miss_rate_by_hand():
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0.5])  # r̂ = 1/4, all correct, 1/2 (0.5 is not correct)
    w = response_weights(rewards, 4, METHODS["nft"])
    assert w.tolist() == pytest.approx([0.75] * 4 + [0.0] * 4 + [0.5] * 4)


def test_nft_term_by_hand():
    """log R = ±0.1 on a correct and a wrong response of a group with r̂ = 1/4."""
    from rlino.objectives import nft_term

    old = torch.zeros(2, 2)
    logp = torch.tensor([[0.1, -0.1], [0.1, -0.1]], requires_grad=True)
    term = nft_term(logp, old, torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.25]))
    r = math.exp(0.1), math.exp(-0.1)
    # correct: −log R. wrong: −log max((1 − R/4)/(3/4), 1): R > 1 gives −log 1 = 0, R < 1 gives −log((1 − R/4)/0.75)
    expected = [[-0.1, 0.1], [0.0, -math.log((1 - r[1] / 4) / 0.75)]]
    assert term.detach().tolist()[0] == pytest.approx(expected[0])
    assert term.detach().tolist()[1] == pytest.approx(expected[1])
    term.sum().backward()
    # gradients w.r.t. log π: correct −1; wrong −p'(R)·R / max(p, 1) with p'(R) = −(1/4)/(3/4): floored at 1, the
    # value is 1 but the gradient is still p's
    g_hi = (1 / 3) * r[0] / 1.0
    g_lo = (1 / 3) * r[1] / ((1 - r[1] / 4) / 0.75)
    assert logp.grad.tolist()[0] == pytest.approx([-1.0, -1.0])
    assert logp.grad.tolist()[1] == pytest.approx([g_hi, g_lo])


def test_nft_first_update_gradient_equals_dr_grpo_token_mean():
    """At R = 1 with ω = 1 − r̂: −(1 − r̂)∇log π on correct and +r̂∇log π on wrong responses, which is r − r̂ weights
    (Dr. GRPO's group-center) through the clipped ratio, under the same aggregation."""
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(8, 6, generator=g) * 2).requires_grad_(True)
    mask = torch.ones(8, 6)
    mask[2, 4:] = 0
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1])
    grads = []
    for m in (METHODS["nft"], method("dr_grpo", aggregation="token-mean")):
        logp.grad = None
        objective(logp, mask, rewards, 4, m).loss.backward()
        grads.append(logp.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-7) and grads[0].abs().sum() > 0


@pytest.mark.parametrize("changes", [dict(name="grpo", term="nft"), dict(name="ppo", term="nft", clip=False),
                                     dict(name="nft", term="sft")])
def test_nft_term_needs_no_clip_and_one_weight_per_response(changes):
    from rlino.config import MethodConfig
    from rlino.errors import RlinoError
    from rlino.objectives import resolve_method

    with pytest.raises(RlinoError, match="method.term"):
        resolve_method(MethodConfig(**changes))


def _clipped_loss_by_hand(logp, old, mask, weights, eps=0.2):
    """token-mean of −min(ρA, clip(ρ, 1 − ε, 1 + ε)A) over the real tokens, one token at a time in plain floats."""
    total, tokens = 0.0, 0
    for i in range(len(weights)):
        for t in range(len(mask[i])):
            if mask[i][t]:
                ratio = math.exp(logp[i][t] - old[i][t])
                total += -min(ratio * weights[i], min(max(ratio, 1 - eps), 1 + eps) * weights[i])
                tokens += 1
    return total / tokens


@pytest.mark.parametrize("name,pos,neg", [("psr", 1.0, 0.0), ("nsr", 0.0, -1.0), ("w_reinforce", 0.1, -1.0)])
def test_negative_reinforcement_rows_by_hand(name, pos, neg):
    """PSR, NSR and W-REINFORCE (Zhu et al. 2025, as their code runs them): raw outcome weights (no group
    normalisation, so all-correct and all-wrong groups keep theirs), the clipped ratio (ε = 0.2), token-mean, no KL,
    four PPO mini-batches; the loss equals a token-by-token hand computation with the ratio off 1 on both sides."""
    m = METHODS[name]
    assert (m.clip, m.clip_eps, m.clip_eps_high, m.aggregation, m.beta, m.mini_batches) == (
        True, 0.2, 0.2, "token-mean", 0.0, 4)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.3, 1.0])  # a group all correct, one all wrong; 0.3 wrong
    w = response_weights(rewards, 2, m)
    expected = [pos if r == 1.0 else neg for r in rewards.tolist()]
    assert w.tolist() == pytest.approx(expected, abs=1e-7)
    gen = torch.Generator().manual_seed(0)
    old = -torch.rand(8, 5, generator=gen) * 3
    logp = (old + (torch.rand(8, 5, generator=gen) - 0.5) * 0.8).requires_grad_()  # ρ in [0.67, 1.49]: both sides
    mask = torch.ones(8, 5)
    mask[1, 3:] = 0
    mask[6, 1:] = 0
    out = token_loss(logp, mask, w, m, old_logp=old, ref_logp=old - 1.0)  # a reference, but β = 0: no KL
    hand = _clipped_loss_by_hand(logp.tolist(), old.tolist(), mask.tolist(), expected)
    assert out.loss.item() == pytest.approx(hand, abs=1e-6)
    assert out.kl is None
    assert 0 < out.clip_frac.item() < 1 or name == "psr"
    # the gradient of a token: −A·ρ/N where the clip does not bind, 0 where it does
    out.loss.backward()
    n = mask.sum().item()
    for i, t in [(1, 0), (4, 2), (7, 4), (0, 1)]:
        ratio = math.exp(logp[i, t].item() - old[i, t].item())
        a = expected[i]
        bound = (a > 0 and ratio > 1.2) or (a < 0 and ratio < 0.8)
        assert logp.grad[i, t].item() == pytest.approx(0.0 if bound or a == 0 else -a * ratio / n, abs=1e-7)


def test_w_reinforce_lambda_and_the_settings_are_checked():
    """λ is a setting of its own row's weights: a value outside (0, 1], the setting given to a row whose weights do
    not read it, and an unknown row are each a clear error; inside the range it is the weight on correct responses."""
    from rlino.config import MethodConfig
    from rlino.errors import RlinoError
    from rlino.objectives import resolve_method

    half = resolve_method(MethodConfig(name="w_reinforce", pos_weight=0.5))
    assert response_weights(torch.tensor([1.0, 0.0]), 2, half).tolist() == [0.5, -1.0]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(RlinoError, match=r"method.pos_weight .* must be in \(0, 1\]"):
            resolve_method(MethodConfig(name="w_reinforce", pos_weight=bad))
    for row in ("grpo", "nsr", "psr", "fisft_neg", "nft"):
        with pytest.raises(RlinoError, match=f"method.pos_weight is W-REINFORCE's λ.*'{row}'"):
            resolve_method(MethodConfig(name=row, pos_weight=0.2))
    with pytest.raises(RlinoError, match="unknown method 'nsrr' .did you mean 'nsr'"):
        resolve_method(MethodConfig(name="nsrr"))
    with pytest.raises(RlinoError, match="method.mini_batches must be >= 1"):
        resolve_method(MethodConfig(name="nsr", mini_batches=0))
    with pytest.raises(RlinoError, match="mini_batches > 1 is not supported with a critic"):
        resolve_method(MethodConfig(name="ppo", mini_batches=2))
