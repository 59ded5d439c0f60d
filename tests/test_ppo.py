"""PPO with a critic: GAE, token rewards and the value loss by hand; the per-token generalisation of the objective
leaves every outcome row bit-identical; the critic's model and its bad inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlino.config import load_config
from rlino.critic import Critic, backbone_of, build_critic
from rlino.errors import RlinoError
from rlino.gae import gae, token_rewards, value_loss
from rlino.objectives import METHODS, response_weights, spread_evenly, token_loss
from rlino.trainer import validate

MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
VALUES = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.4, 7.0]])  # 7.0 sits on padding: it must not count


def test_token_rewards_put_the_outcome_on_the_last_token_and_the_kl_on_every_token():
    r = token_rewards(torch.tensor([1.0, 0.0]), MASK)
    assert r.tolist() == [[0, 0, 1], [0, 0, 0]]
    r = token_rewards(torch.tensor([1.0, 1.0]), MASK, kl=torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]]), beta=0.5)
    assert torch.allclose(r, torch.tensor([[-0.05, -0.1, 1 - 0.15], [-0.2, 1 - 0.25, 0.0]]))


def test_gae_by_hand():
    """γ = 0.9, λ = 0.8 on two right-padded responses, each δ and A written out."""
    rewards = token_rewards(torch.tensor([1.0, 0.0]), MASK)
    adv, ret = gae(rewards, VALUES, MASK, gamma=0.9, lam=0.8)
    # row 0: δ2 = 1 − 0.9 = 0.1; δ1 = 0 + 0.9·0.9 − 0.2 = 0.61; δ0 = 0.9·0.2 − 0.5 = −0.32
    a2 = 0.1
    a1 = 0.61 + 0.72 * a2
    a0 = -0.32 + 0.72 * a1
    # row 1 (length 2; the value on the padding is ignored): δ1 = 0 − 0.4; δ0 = 0.9·0.4 − 0.1 = 0.26
    b1 = -0.4
    b0 = 0.26 + 0.72 * b1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.9], [b0 + 0.1, b1 + 0.4, 0.0]]), atol=1e-6)


def test_gae_with_lambda_and_gamma_one_is_the_return_minus_the_value():
    adv, ret = gae(token_rewards(torch.tensor([1.0, 0.0]), MASK), VALUES, MASK, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.8, 0.1], [-0.1, -0.4, 0.0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[1.0, 1, 1], [0, 0, 0]]), atol=1e-6)


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    rewards = torch.tensor([[0.0, 0.3, 1.0], [0.2, 0.0, 0.0]])
    adv, _ = gae(rewards, VALUES, MASK, gamma=0.5, lam=0.0)
    expected = [[0.0 + 0.5 * 0.2 - 0.5, 0.3 + 0.5 * 0.9 - 0.2, 1.0 - 0.9], [0.2 + 0.5 * 0.4 - 0.1, -0.4, 0.0]]
    assert torch.allclose(adv, torch.tensor(expected), atol=1e-6)


def test_value_loss_clips_by_hand():
    old = torch.tensor([[0.0, 0.0]])
    ret = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[0.5, -0.5]], requires_grad=True)
    loss, frac = value_loss(new, old, ret, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped (0.5−1)² = 0.25, clipped (0.2−1)² = 0.64 → 0.64 (clipped: no gradient)
    # token 1: unclipped (−0.5−1)² = 2.25, clipped (−0.2−1)² = 1.44 → 2.25 (the gradient of the unclipped term)
    assert float(loss.detach()) == pytest.approx(0.5 * (0.64 + 2.25) / 2)
    assert float(frac) == pytest.approx(0.5)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([0.0, 0.5 * (-0.5 - 1.0)])  # ½·2(V − R) / 2 tokens
    loss0, _ = value_loss(new.detach(), old, ret, torch.ones(1, 2), clip=0.0, num_tokens=4)
    assert float(loss0) == pytest.approx(0.5 * (0.25 + 2.25) / 4)  # the step's token count normalises


def _old_token_loss(logp, mask, w, m, old, ref, n, t, L):
    """The objective as written before per-token advantages (w_i [B] broadcast over tokens), kept as the oracle."""
    w = w.to(logp.dtype).unsqueeze(1)
    if m.clip:
        ratio = torch.exp(logp - old)
        per = -torch.minimum(ratio * w, ratio.clamp(1 - m.clip_eps, 1 + m.clip_eps_high) * w)
    else:
        per = -w * logp
    if m.beta > 0:
        d = ref - logp
        per = per + m.beta * (torch.exp(d) - d - 1)
    mask = mask.to(per.dtype)
    if m.aggregation == "seq-mean-token-mean":
        return ((per * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / n
    if m.aggregation == "token-mean":
        return (per * mask).sum() / t
    return (per * mask).sum() / (n * L)


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if not m.has_critic])
def test_per_token_advantages_leave_every_outcome_row_bit_identical(name):
    g = torch.Generator().manual_seed(3)
    logp = (-torch.rand(8, 5, generator=g) * 3).requires_grad_(True)
    old = (logp + 0.3 * torch.randn(8, 5, generator=g)).detach()
    ref = (logp + 0.2 * torch.randn(8, 5, generator=g)).detach()
    mask = torch.ones(8, 5)
    mask[1, 3:] = 0
    mask[6, 1:] = 0
    m = METHODS[name]
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 1])
    w = response_weights(rewards, 4, m)
    kw = dict(old_logp=old, ref_logp=ref, num_responses=8, num_tokens=float(mask.sum()), max_new_tokens=5,
              correct=rewards, rate=torch.tensor([0.5] * 4 + [0.75] * 4))
    losses, grads = [], []
    for weights in (w, spread_evenly(w, logp), None):
        logp.grad = None
        if weights is None and m.term != "policy-gradient":
            break  # (nft's own term has its own hand-computed test)
        loss = token_loss(logp, mask, weights, m, **kw).loss if weights is not None else \
            _old_token_loss(logp, mask, w, m, old, ref, 8, float(mask.sum()), 5)
        loss.backward()
        losses.append(loss.detach())
        grads.append(logp.grad.clone())
    assert torch.equal(losses[0], losses[1]) and torch.equal(grads[0], grads[1])  # [B] and [B, T] the same bits
    if len(losses) == 3:
        assert torch.equal(losses[0], losses[2]) and torch.equal(grads[0], grads[2])  # and as before
    assert grads[0].abs().sum() > 0


def test_per_token_advantages_weight_each_token():
    logp = torch.zeros(1, 3, requires_grad=True)
    adv = torch.tensor([[2.0, -1.0, 0.5]])
    token_loss(logp, torch.ones(1, 3), adv, dataclasses.replace(METHODS["ppo"], clip=False)).loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-2 / 3, 1 / 3, -0.5 / 3])  # −A_t / Σ tokens (token-mean)


def test_the_critic_reads_values_where_the_policy_reads_log_probs(sharp):
    """V_t comes from the hidden state at the position of the logits of token t, left padding and positions handled:
    a left-padded prompt of 2 and 3 response tokens against a plain forward of the unpadded sequence."""
    model, _ = sharp
    critic = Critic(*backbone_of(model, "sharp"))
    torch.nn.init.normal_(critic.head.weight, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    prompt, prompt_mask = torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]])
    with torch.no_grad():
        values = critic(prompt, prompt_mask, ids[:, 2:], torch.ones(1, 3, dtype=torch.long))
        hidden = model.model(input_ids=ids).last_hidden_state  # a plain forward of the backbone
        expected = critic.head(hidden[:, 1:4]).squeeze(-1)
    assert torch.allclose(values, expected, atol=1e-5)


def test_a_fresh_critic_values_every_state_at_zero():
    critic = build_critic("embedded:tiny", dtype="float32", device="cpu", seed=0)
    ids = torch.tensor([[5, 6, 7]])
    assert critic(ids[:, :1], torch.ones(1, 1), ids[:, 1:], torch.ones(1, 2)).abs().sum() == 0


def test_a_model_without_a_backbone_is_a_clear_error():
    class Head(torch.nn.Module):
        base_model_prefix = ""

    with pytest.raises(RlinoError, match="cannot build a critic on 'odd'"):
        backbone_of(Head(), "odd")


@pytest.mark.parametrize("overrides,message", [
    (["critic.lam=1.5"], r"critic.lam must be in \[0, 1\]"),
    (["critic.gamma=-0.1"], r"critic.gamma must be in \[0, 1\]"),
    (["critic.kl=both"], "critic.kl must be 'reward' or 'loss'"),
    (["critic.learning_rate=0"], "critic.learning_rate must be > 0"),
    (["method.name=grpo", "critic.lam=0.9"], "critic.lam set, but method 'grpo' has no critic"),
    (["method.name=fisft_pos", "critic.warmup_steps=2"], "critic.warmup_steps set, but method 'fisft_pos'"),
    (["critic.warmup_steps=5", "train.steps=5"], "critic.warmup_steps .5. must be < train.steps"),
])
def test_bad_critic_settings_are_errors_before_anything_loads(overrides, message):
    cfg = load_config(None, ["method.name=ppo", *overrides])
    with pytest.raises(RlinoError, match=message):
        validate(cfg)


def test_gae_weights_outside_a_critic_step_are_an_error():
    with pytest.raises(RlinoError, match="from a critic"):
        response_weights(torch.ones(4), 4, METHODS["ppo"])


def test_position_profile_by_hand():
    from rlino.step import position_profile

    weight = torch.tensor([[1.0, 2, 3, 4, 5, 6], [2, 2, 2, 2, 0, 0], [4, -1, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    thirds, corr = position_profile(weight, mask)
    # row 0: t = 0,1 | 2,3 | 4,5. Row 1 (L = 4): ⌊3t/4⌋ = 0, 0, 1, 2. Row 2 (L = 2): ⌊3t/2⌋ = 0, 1; no last third.
    assert thirds[0].tolist() == pytest.approx([1.5, 3.5, 5.5])
    assert thirds[1].tolist() == pytest.approx([2, 2, 2])
    assert thirds[2, :2].tolist() == pytest.approx([4, -1]) and torch.isnan(thirds[2, 2])
    assert float(corr[0]) == pytest.approx(1.0)  # a straight line in t
    assert torch.isnan(corr[1]) and torch.isnan(corr[2])  # flat; under 3 tokens
    _, c = position_profile(torch.tensor([[3.0, 1, 2, 0]]), torch.ones(1, 4))
    assert float(c[0]) == pytest.approx(-0.8)  # Σ(t − 1.5)(w − 1.5) = −2.25 + 0.25 + 0.25 − 2.25 = −4; both Σ² = 5


def test_a_critic_model_that_cannot_load_stops_before_training(tmp_path):
    from pathlib import Path

    from rlino.trainer import train

    smoke = str(Path(__file__).parents[1] / "configs" / "smoke.toml")
    with pytest.raises(RlinoError, match="model folder not found: /no/such/critic"):
        train(smoke, ["method.name=ppo", "critic.model=/no/such/critic"], out=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
