"""The objective: every method is one row over three independent choices.

    loss = aggregate_t,i(  ℓ_it  )
    ℓ_it = − A_it · ρ̃_it  +  β · KL_t           (ρ̃: clipped importance ratio, or log π when there is no ratio)
    A_it = w_i                                  (the outcome methods: `spread_evenly`, the paper's assumption 2)
    ℓ_it = w_i · nft_it   +  β · KL_t           (the `nft` per-token term instead of −A·ρ̃: `nft_term`)

1. weights w_i, one per response, from the group's rewards (`response_weights`), spread evenly over the response's
   tokens; or, for `ppo`, advantages A_it per token from a learned critic (`rlino.gae`);
2. aggregation over tokens and responses (`aggregate`);
3. regularisers: the PPO-style clipped ratio ρ_it = π_θ/π_old and the k3 KL estimate to a frozen reference;
4. the per-token term: the policy-gradient one above, or NFT's implicit-negative-policy likelihood (`nft_term`).

Everything here is a pure function over tensors: per-token log-probs [B, T], a 0/1 mask [B, T], rewards [B]
(responses of one prompt adjacent, `group_size` of them), and optionally the sampling-time and reference log-probs.
Nothing here knows about models, tokenizers or files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from rlino.errors import RlinoError, did_you_mean

WEIGHTS = ("group-norm", "group-center", "leave-one-out", "pos-neg-mixed", "miss-rate", "pos-neg", "pos", "neg",
           "gae")
TERMS = ("policy-gradient", "nft")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")
GROUP_WEIGHTS = ("group-norm", "group-center", "leave-one-out", "pos-neg-mixed", "miss-rate")  # need group_size >= 2
NFT_EPS = 1.0
"""ε of NFT's max_v(·, ε) on the implicit negative policy's ratio (the paper's and its code's default)."""
NFT_LOG_RATIO_CAP = 10.0
"""log R is capped here before exp (NFT's code; not in the paper): no overflow, no gradient beyond it."""


@dataclass(frozen=True)
class Method:
    """One fully resolved row of the methods table."""

    name: str
    weights: str
    aggregation: str
    clip: bool
    clip_eps: float = 0.2
    clip_eps_high: float = 0.2
    beta: float = 0.0
    epochs_per_batch: int = 1
    neg_weight: float = 1.0
    pos_weight: float = 1.0
    mini_batches: int = 1
    std: str = "sample"
    adv_eps: float = 1e-4
    term: str = "policy-gradient"

    @property
    def needs_groups(self) -> bool:
        return self.weights in GROUP_WEIGHTS

    @property
    def has_critic(self) -> bool:
        """Whether the advantages come from a learned value function (GAE), not from the rewards alone."""
        return self.weights == "gae"


# The named methods. `fisft_adv` and `grpo_no_kl` differ only in the ratio: on the first update of a fresh batch
# (ratio = 1) their gradients are equal, which is the paper's claim made exact.
METHODS: dict[str, Method] = {
    "grpo": Method("grpo", "group-norm", "seq-mean-token-mean", clip=True, beta=0.04),
    "grpo_no_kl": Method("grpo_no_kl", "group-norm", "seq-mean-token-mean", clip=True),
    "dr_grpo": Method("dr_grpo", "group-center", "seq-mean-token-sum-norm", clip=True),
    "dapo": Method("dapo", "group-norm", "token-mean", clip=True, clip_eps_high=0.28),
    "fisft_pos_neg": Method("fisft_pos_neg", "pos-neg", "seq-mean-token-mean", clip=False),
    "fisft_pos": Method("fisft_pos", "pos", "seq-mean-token-mean", clip=False),
    "fisft_neg": Method("fisft_neg", "neg", "seq-mean-token-mean", clip=False),
    "fisft_adv": Method("fisft_adv", "group-norm", "seq-mean-token-mean", clip=False),
    # RLOO, REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740): the baseline of a
    # response is the mean reward of the other G − 1 responses of its prompt. The paper treats a whole response as
    # one action (REINFORCE on the summed log-prob); this row is the form verl and AReaL implement, the same
    # clipped token-level objective as grpo_no_kl with the leave-one-out advantage and no std: w_i = G/(G−1)·(r_i − r̄).
    "rloo": Method("rloo", "leave-one-out", "seq-mean-token-mean", clip=True),
    # RAFT++ and Reinforce-Rej (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning: from Rejection Sampling
    # to Reinforce", arXiv 2504.11343), as the authors' code (RLHFlow/Minimal-RL) runs them: the clipped ratio
    # (ε = 0.2), token-mean aggregation, a k3 KL loss with β = 0.001. RAFT++: rejection sampling with the ratio, the
    # reward on correct responses only (their −1 for wrong is set to 0). Reinforce-Rej: the raw ±1 reward, with the
    # prompts whose responses are all correct or all wrong dropped.
    "raft_pp": Method("raft_pp", "pos", "token-mean", clip=True, beta=0.001),
    "reinforce_rej": Method("reinforce_rej", "pos-neg-mixed", "token-mean", clip=True, beta=0.001),
    # PPO with a learned critic (Schulman et al. 2017, arXiv 1707.06347; GAE: Schulman et al. 2016, arXiv
    # 1506.02438), as verl and TRL run it for LLMs: the outcome reward on the last token, a value head on a copy of the
    # policy's backbone, per-token advantages by GAE (γ = 1, λ = 0.95, whitened), the clipped ratio, token-mean. The
    # one row that does not make the paper's assumption 2: its advantage differs from token to token. Its settings
    # are the [critic] section of the config.
    "ppo": Method("ppo", "gae", "token-mean", clip=True),
    # NFT, Negative-aware Fine-Tuning (Chen et al. 2025, "Bridging Supervised Learning and Reinforcement Learning in
    # Math Reasoning", arXiv 2505.18116), as NVlabs/NFT runs it: the likelihood of correct responses and of wrong ones
    # under the implicit negative policy (`nft_term`), each prompt weighted by ω = 1 − r̂ (its default,
    # `normalize=1`), prompts whose responses all agree dropped, no clip, no KL. Aggregation: the paper's token-mean
    # (the authors' code divides each mini-batch's token sum by a constant 1000 instead).
    "nft": Method("nft", "miss-rate", "token-mean", clip=False, term="nft"),
    # PSR, NSR and W-REINFORCE (Zhu et al. 2025, "The Surprising Effectiveness of Negative Reinforcement in LLM
    # Reasoning", arXiv 2506.01347), as TianHongZXY/RLVR-Decomposed runs them (verl/trainer/ppo/core_algos.py,
    # `compute_psr_nsr_outcome_advantage`, and its MATH scripts): the advantage is the raw outcome, no group
    # normalisation: PSR +1 on correct responses and 0 on wrong, NSR 0 and −1, W-REINFORCE λ = 0.1
    # (`positive_advantage_weight`) and −1; verl's PPO clipped loss (ε = 0.2 both sides) with token-mean aggregation
    # (`masked_mean` over the mini-batch's tokens); no KL (kl_coef 0, use_kl_loss false); one epoch over four PPO
    # mini-batches per sampled batch (256 of 1,024 prompts), so from the second the ratio moves and the clip acts.
    # Left out: their entropy bonus of 0.001 (rlino has no entropy term).
    "psr": Method("psr", "pos", "token-mean", clip=True, mini_batches=4),
    "nsr": Method("nsr", "neg", "token-mean", clip=True, mini_batches=4),
    "w_reinforce": Method("w_reinforce", "pos-neg", "token-mean", clip=True, pos_weight=0.1, mini_batches=4),
}
POS_WEIGHTS = ("pos-neg",)
"""The weights that read `pos_weight` (W-REINFORCE's λ on correct responses)."""


def resolve_method(cfg) -> Method:
    """Turn a `MethodConfig` (a row name plus optional overrides) into a concrete `Method`.

    `cfg` is read by attribute (name, weights, aggregation, clip, clip_eps, clip_eps_high, beta, epochs_per_batch,
    mini_batches, neg_weight, pos_weight, std, adv_eps), so this module needs nothing of the config module."""
    if cfg.name not in METHODS:
        raise RlinoError(f"unknown method '{cfg.name}'{did_you_mean(cfg.name, METHODS)}; "
                         f"valid: {', '.join(METHODS)}")
    row = METHODS[cfg.name]
    changes = {k: getattr(cfg, k) for k in ("weights", "aggregation", "clip", "clip_eps", "beta", "term",
                                            "pos_weight", "mini_batches") if getattr(cfg, k, None) is not None}
    if cfg.clip_eps_high is not None:
        changes["clip_eps_high"] = cfg.clip_eps_high
    elif cfg.clip_eps is not None and row.clip_eps_high == row.clip_eps:
        changes["clip_eps_high"] = cfg.clip_eps  # a symmetric row stays symmetric
    changes.update(epochs_per_batch=cfg.epochs_per_batch, neg_weight=cfg.neg_weight, std=cfg.std,
                   adv_eps=cfg.adv_eps)
    method = dataclasses.replace(row, **changes)
    _validate(method)
    if getattr(cfg, "pos_weight", None) is not None and method.weights not in POS_WEIGHTS:
        raise RlinoError(f"method.pos_weight is W-REINFORCE's λ, read only by the weights 'pos-neg' (w_reinforce, "
                         f"fisft_pos_neg); method '{method.name}' uses weights '{method.weights}', which ignore it")
    return method


def _validate(m: Method) -> None:
    if m.weights not in WEIGHTS:
        raise RlinoError(f"method.weights: unknown '{m.weights}'{did_you_mean(m.weights, WEIGHTS)}; "
                         f"valid: {', '.join(WEIGHTS)}")
    if m.aggregation not in AGGREGATIONS:
        raise RlinoError(f"method.aggregation: unknown '{m.aggregation}'{did_you_mean(m.aggregation, AGGREGATIONS)}"
                         f"; valid: {', '.join(AGGREGATIONS)}")
    if m.term not in TERMS:
        raise RlinoError(f"method.term: unknown '{m.term}'{did_you_mean(m.term, TERMS)}; valid: {', '.join(TERMS)}")
    if m.term == "nft" and (m.clip or m.has_critic):
        raise RlinoError("method.term 'nft' has its own ratio (no clip) and takes one weight per response: set "
                         "method.clip = false and weights other than 'gae'")
    if m.std not in ("sample", "population"):
        raise RlinoError(f"method.std must be 'sample' or 'population', got '{m.std}'")
    if m.beta < 0 or m.clip_eps < 0 or m.clip_eps_high < 0 or m.neg_weight < 0 or m.adv_eps < 0:
        raise RlinoError("method.beta, clip_eps, clip_eps_high, neg_weight and adv_eps must be >= 0")
    if m.epochs_per_batch < 1:
        raise RlinoError(f"method.epochs_per_batch must be >= 1, got {m.epochs_per_batch}")
    if m.mini_batches < 1:
        raise RlinoError(f"method.mini_batches must be >= 1, got {m.mini_batches}")
    if m.mini_batches > 1 and m.has_critic:
        raise RlinoError("method.mini_batches > 1 is not supported with a critic (weights 'gae'): its advantages are "
                         "whitened over the whole step; use method.epochs_per_batch")
    if not 0 < m.pos_weight <= 1:
        raise RlinoError(f"method.pos_weight (W-REINFORCE's λ, the weight on correct responses) must be in (0, 1], "
                         f"got {m.pos_weight}: λ = 0 is the nsr row, and above 1 positives outweigh negatives, "
                         f"which is not W-REINFORCE")


def is_correct(rewards: torch.Tensor) -> torch.Tensor:
    """A response is correct when its reward is 1 (a format bonus below 1 does not make it correct)."""
    return rewards >= 1.0 - 1e-6


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B / G] True for each group whose responses all got the same reward (every group-relative weight is 0)."""
    groups = rewards.view(-1, group_size)
    return groups.max(dim=1).values == groups.min(dim=1).values


def response_weights(rewards: torch.Tensor, group_size: int, method: Method) -> torch.Tensor:
    """Per-response weight w_i [B] from rewards [B] laid out as consecutive groups of `group_size`.

    group-norm:   (r_i − mean_g r) / (std_g r + eps)       GRPO's advantage (zero for all-equal groups)
    group-center: r_i − mean_g r                            Dr. GRPO's advantage
    leave-one-out: r_i − mean_{j≠i} r_j = G/(G−1)·(r_i − mean_g r)   RLOO's advantage
    pos-neg-mixed: pos-neg, and 0 in groups whose responses are all correct or all wrong   Reinforce-Rej
    miss-rate:    1 − r̂ (r̂: the group's fraction correct), 0 where all agree   NFT's prompt weight ω
    pos-neg:      +pos_weight if correct, −neg_weight if wrong   F-ISFT+− (1, 1); W-REINFORCE (λ, 1)
    pos:          +1 if correct, 0 if wrong                 F-ISFT+ (rejection-sampling fine-tuning)
    neg:          0 if correct, −neg_weight if wrong        F-ISFT−
    gae:          per token, from a critic (`rlino.gae`): not a function of the rewards alone
    """
    r = rewards.float()
    if method.has_critic:
        raise RlinoError(f"method '{method.name}' (weights 'gae') takes its advantages from a critic, per token: "
                         f"see rlino.gae")
    if method.weights in GROUP_WEIGHTS:
        if group_size < 2 or r.numel() % group_size:
            raise RlinoError(f"method '{method.name}' needs groups: got {r.numel()} rewards for group_size "
                             f"{group_size}")
        g = r.view(-1, group_size)
        centred = g - g.mean(dim=1, keepdim=True)
        if method.weights == "group-center":
            return centred.reshape(-1)
        if method.weights == "leave-one-out":  # r_i minus the mean of the other G − 1 rewards of the group
            return (g - (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)).reshape(-1)
        ok = is_correct(g).float()
        mixed = (ok.max(dim=1, keepdim=True).values > ok.min(dim=1, keepdim=True).values).float()
        if method.weights == "pos-neg-mixed":  # ±1, kept only where the group's outcomes differ
            return ((ok - method.neg_weight * (1 - ok)) * mixed).reshape(-1)
        if method.weights == "miss-rate":  # the same 1 − r̂ for every response of a mixed group
            return ((1 - ok.mean(dim=1, keepdim=True)) * mixed).expand_as(g).reshape(-1)
        std = g.std(dim=1, keepdim=True, unbiased=method.std == "sample")
        return (centred / (std + method.adv_eps)).reshape(-1)
    ok = is_correct(r).float()
    if method.weights == "pos-neg":
        return method.pos_weight * ok - method.neg_weight * (1 - ok)
    if method.weights == "pos":
        return ok
    if method.weights == "neg":
        return -method.neg_weight * (1 - ok)
    raise RlinoError(f"unknown weights '{method.weights}'")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, *, num_responses: int | None = None,
              num_tokens: float | None = None, max_new_tokens: int | None = None) -> torch.Tensor:
    """Reduce per-token losses [B, T] to a scalar.

    seq-mean-token-mean:      1/N Σ_i 1/|o_i| Σ_t ℓ_it        (GRPO; per-token weight shrinks with length)
    token-mean:               1/Σ_i|o_i| Σ_i Σ_t ℓ_it          (DAPO; every token counts the same)
    seq-mean-token-sum-norm:  1/(N·L_max) Σ_i Σ_t ℓ_it         (Dr. GRPO; a constant normaliser)

    N and Σ|o_i| default to this batch's own; pass the whole step's counts when this batch is one micro-batch of
    the step, so that micro-batch losses add up to the step's loss (gradient accumulation = one big batch).
    """
    mask = mask.to(per_token.dtype)
    n = per_token.shape[0] if num_responses is None else num_responses
    if mode == "seq-mean-token-mean":
        lengths = mask.sum(dim=1).clamp(min=1)
        return ((per_token * mask).sum(dim=1) / lengths).sum() / n
    if mode == "token-mean":
        total = mask.sum() if num_tokens is None else num_tokens
        return (per_token * mask).sum() / max(float(total), 1.0)
    if mode == "seq-mean-token-sum-norm":
        if max_new_tokens is None:
            raise RlinoError("aggregation 'seq-mean-token-sum-norm' needs max_new_tokens")
        return (per_token * mask).sum() / (n * max_new_tokens)
    raise RlinoError(f"unknown aggregation '{mode}'")


def token_weights_for_length(lengths: torch.Tensor, mode: str, *, num_responses: int, num_tokens: float,
                             max_new_tokens: int) -> torch.Tensor:
    """The weight each token of a response of the given length gets under an aggregation (per unit of w_i).

    Read off `aggregate` itself (∂ aggregate / ∂ ℓ_it by autograd on responses of these lengths), so each
    aggregation is defined once, by its reduction.
    """
    lengths = lengths.long().clamp(min=1)
    mask = torch.arange(int(lengths.max()) if lengths.numel() else 1).unsqueeze(0) < lengths.unsqueeze(1)
    per_token = torch.zeros(mask.shape, dtype=torch.float64, requires_grad=True)
    aggregate(per_token, mask, mode, num_responses=num_responses, num_tokens=num_tokens,
              max_new_tokens=max_new_tokens).backward()
    return per_token.grad[:, 0].float()


@dataclass
class LossOutput:
    loss: torch.Tensor
    """The scalar to call backward on."""
    kl: torch.Tensor | None
    """Mean k3 KL estimate over the batch's tokens (detached), when a reference was given."""
    clip_frac: torch.Tensor | None
    """Fraction of tokens whose gradient the clip removed (detached), when the ratio is clipped."""
    clip_frac_low: torch.Tensor | None = None
    """Of those, the fraction clipped below (ρ < 1 − ε_low: negative weights)."""
    clip_frac_high: torch.Tensor | None = None
    """Of those, the fraction clipped above (ρ > 1 + ε_high: positive weights; DAPO's clip-higher acts here)."""


def group_rate(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B] r̂ of each response's group: the fraction of the group's responses that are correct."""
    ok = is_correct(rewards).float().view(-1, group_size)
    return ok.mean(dim=1, keepdim=True).expand_as(ok).reshape(-1)


def nft_term(logp: torch.Tensor, old_logp: torch.Tensor, correct: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """NFT's per-token term [B, T] (Chen et al. 2025, eq. 10), before the prompt weight w_i = ω:

        correct response:  −log R_t                                   R_t = π_θ(o_t) / π_old(o_t)
        wrong response:    −log max_v( (1 − r̂ R_t) / (1 − r̂), ε )     the implicit negative policy's ratio

    max_v clamps the value at ε = NFT_EPS but keeps the gradient of its argument (as the authors' code does); r̂ is
    kept inside [0.02, 0.98] (their numerical guard: a group with every response correct would divide by 0; its
    weight is 0 anyway). At R = 1 with ω = 1 − r̂ the gradient is −(1 − r̂)·∇log π for a correct response and
    +r̂·∇log π for a wrong one: Dr. GRPO's, r − r̂ (`rlino equivalence` measures it)."""
    log_ratio = (logp - old_logp).clamp(max=NFT_LOG_RATIO_CAP)
    r_hat = rate.to(logp.dtype).clamp(0.02, 0.98).unsqueeze(1)
    negative = (1 - r_hat * torch.exp(log_ratio)) / (1 - r_hat)
    floored = negative + (negative.clamp(min=NFT_EPS) - negative).detach()
    ok = correct.to(logp.dtype).unsqueeze(1)
    return -(ok * log_ratio + (1 - ok) * torch.log(floored))


def spread_evenly(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The paper's assumption 2, as one line: the response's weight w_i is every one of its tokens' advantage.

        A[i, t] = w_i   for every token t of response i      ([B] -> [B, T], the shape of `like`)
    """
    return weights.to(like.dtype).unsqueeze(1).expand_as(like)


def token_loss(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, method: Method, *,
               old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
               num_responses: int | None = None, num_tokens: float | None = None,
               max_new_tokens: int | None = None, correct: torch.Tensor | None = None,
               rate: torch.Tensor | None = None) -> LossOutput:
    """The loss for per-token log-probs `logp` [B, T] under per-response weights `weights` [B] (spread evenly over
    each response's tokens) or per-token advantages [B, T] (a critic's).

    With clipping (GRPO family):  ℓ_it = −min(ρ_it A_it, clip(ρ_it, 1−ε_low, 1+ε_high) A_it),  ρ_it = exp(logp − old)
    Without (F-ISFT family):      ℓ_it = −A_it · logp_it        (weighted log-likelihood of the model's own samples)
    KL (β > 0):                   ℓ_it += β (exp(ref − logp) − (ref − logp) − 1)   (k3, unbiased and ≥ 0)

    NFT (term 'nft'):             ℓ_it = w_i · nft_term_it      (needs each row's `correct` and group `rate`)

    `old_logp` defaults to `logp.detach()` (the first update on a fresh batch: ρ = 1, and ∇ρ = ∇log π, so the
    clipped loss has the same gradient as the weighted log-likelihood).
    """
    w = weights.to(logp.dtype) if weights.dim() == 2 else spread_evenly(weights, logp)  # A_it
    old = logp.detach() if old_logp is None else old_logp
    clip_frac = clip_low = clip_high = None
    if method.term == "nft":
        if correct is None or rate is None:
            raise RlinoError("the 'nft' term needs each response's correctness and its group's rate")
        per_token = w * nft_term(logp, old, correct, rate)
    elif method.clip:
        ratio = torch.exp(logp - old)
        clipped = ratio.clamp(1 - method.clip_eps, 1 + method.clip_eps_high)
        per_token = -torch.minimum(ratio * w, clipped * w)
        # a token is clipped when the clipped term is the smaller one and differs from the unclipped one
        was_clipped = (clipped * w < ratio * w) & (clipped != ratio)
        m = mask.bool()
        n = m.sum().clamp(min=1)
        clip_frac = (was_clipped & m).sum().float().detach() / n
        clip_low = (was_clipped & m & (ratio < 1)).sum().float().detach() / n
        clip_high = (was_clipped & m & (ratio > 1)).sum().float().detach() / n
    else:
        per_token = -w * logp
    kl = None
    if ref_logp is not None and method.beta > 0:
        delta = ref_logp - logp
        kl_tok = torch.exp(delta) - delta - 1
        per_token = per_token + method.beta * kl_tok
        kl = ((kl_tok * mask).sum() / mask.sum().clamp(min=1)).detach()
    loss = aggregate(per_token, mask, method.aggregation, num_responses=num_responses, num_tokens=num_tokens,
                     max_new_tokens=max_new_tokens)
    return LossOutput(loss, kl, clip_frac, clip_low, clip_high)


def objective(logp: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor, group_size: int, method: Method, *,
              old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
              max_new_tokens: int | None = None) -> LossOutput:
    """The whole step's loss in one call: weights from the rewards, then `token_loss` (a one-batch convenience)."""
    weights = response_weights(rewards, group_size, method)
    return token_loss(logp, mask, weights, method, old_logp=old_logp, ref_logp=ref_logp,
                      max_new_tokens=max_new_tokens, correct=is_correct(rewards), rate=group_rate(rewards, group_size))
