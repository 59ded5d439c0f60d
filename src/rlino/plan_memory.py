"""The arithmetic of `rlino plan`: parameters and the bytes a run holds, from a model's `config.json` alone.

Every figure is a product of shapes, read off what rlino's step keeps alive (`step.py`, `rollout.py`, `engine.py`):

    static     policy weights (+ a reference copy when β > 0 without LoRA) (+ the critic's backbone for ppo)
               + gradients + AdamW's two moments, of the trainable parameters, in model.dtype
               (gradients are freed only by the next update's zero_grad, so they are resident while sampling too)
    sampling   KV cache  2 · layers · kv_heads · head_dim · batch · (prompt + max_new_tokens) · bytes
               + the lean decoder's copy of the prefilled prompt cache + per decode step the logits and the
               counter-based Gumbel noise ([batch, vocab] int64 hashes)
    training   per micro-batch of b responses, S = prompt + max_new_tokens tokens, N = b·S:
               saved activations per layer 6h + 4·heads·head_dim + 4·intermediate (+ the [b,1,S,S] mask) per token
               (measured with saved-tensor hooks on transformers' Qwen2 layer, SDPA attention), or with gradient
               checkpointing one h per token per layer plus one layer recomputed; and the vocabulary terms that
               dominate at 150k tokens: the logits [b, S, V] and the per-row fp32 log-softmax [T, V] that
               `token_logprobs` keeps for the backward pass
    peak       base + static + max(sampling, training)

On N ranks each rank samples and trains ⌈prompts / N⌉ · G rows. Under `train.sharding = "fsdp"` each rank holds
1/N of the static state (FSDP2 shards every parameter, gradient and AdamW moment on dim 0), plus what FSDP gathers:
the whole policy while sampling (`rlino.sharding.gathered`, in the compute dtype), and during a micro-batch's
forward and backward the root group (embeddings, head, final norm) and two decoder layers (the running one and the
prefetched one) in the compute dtype, and one layer's full gradient before its reduce-scatter.

The base is a stated constant: the Python process with torch and transformers imported (CPU) or the CUDA context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rlino.errors import RlinoError

GIB = 1024 ** 3
CPU_BASE_BYTES = 346100 * 1024
"""Peak resident set of a process that imports torch, transformers and rlino's trainer and loads a small task,
before any model (338 MiB, measured on the reference machine: torch 2.13 CPU, transformers 5.24)."""
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
"""The CUDA context and kernels a process holds on the GPU before its first tensor (typical, stated)."""
FAMILY = ("qwen2", "qwen3", "llama", "mistral")
"""Architectures whose parameters are counted from shapes; others are counted on the meta device (plan.py)."""


@dataclass(frozen=True)
class Arch:
    """The shapes of a decoder-only transformer, read from its config.json."""

    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False


def arch_from_config(cfg: dict) -> Arch:
    """The shapes of a Hugging Face config.json (as a dict); an error naming a missing key."""
    cfg = cfg.get("text_config", cfg) if "hidden_size" not in cfg else cfg
    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        arch = dict(model_type=str(cfg.get("model_type", "?")), vocab=int(cfg["vocab_size"]), hidden=hidden,
                    layers=int(cfg["num_hidden_layers"]), heads=heads,
                    kv_heads=int(cfg.get("num_key_value_heads") or heads),
                    head_dim=int(cfg.get("head_dim") or hidden // heads),
                    intermediate=int(cfg.get("intermediate_size") or 4 * hidden),
                    tied=bool(cfg.get("tie_word_embeddings", True)))
    except KeyError as e:
        raise RlinoError(f"config.json has no {e.args[0]}: cannot size the model") from None
    kind = arch["model_type"]
    if kind == "qwen2":
        arch.update(qkv_bias=True)
    elif kind in ("qwen3", "llama"):
        bias = bool(cfg.get("attention_bias", False))
        arch.update(qkv_bias=bias, o_bias=bias, mlp_bias=bool(cfg.get("mlp_bias", False)), qk_norm=kind == "qwen3")
    return Arch(**arch)


def projections(a: Arch) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer of one decoder layer, by module name."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    return {"q_proj": (a.hidden, q), "k_proj": (a.hidden, kv), "v_proj": (a.hidden, kv), "o_proj": (q, a.hidden),
            "gate_proj": (a.hidden, a.intermediate), "up_proj": (a.hidden, a.intermediate),
            "down_proj": (a.intermediate, a.hidden)}


def count_params(a: Arch) -> int:
    """Exact parameter count of a Qwen2 / Qwen3 / Llama / Mistral causal LM (tied embeddings counted once)."""
    shapes = projections(a)
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    layer = sum(i * o for i, o in shapes.values()) + 2 * a.hidden  # linears and the two RMSNorms
    layer += (q + 2 * kv) * a.qkv_bias + a.hidden * a.o_bias + (2 * a.intermediate + a.hidden) * a.mlp_bias
    layer += 2 * a.head_dim * a.qk_norm
    head = 0 if a.tied else a.vocab * a.hidden
    return a.vocab * a.hidden + a.layers * layer + a.hidden + head


def lora_params(a: Arch, rank: int, targets: list[str] | str) -> int:
    """Adapter parameters: r · (in + out) per adapted linear layer (`all-linear`: every projection, not the head)."""
    shapes = projections(a)
    names = list(shapes) if isinstance(targets, str) else [n for n in shapes if any(n.endswith(t) or t.endswith(n)
                                                                                    for t in targets)]
    return a.layers * sum(rank * (shapes[n][0] + shapes[n][1]) for n in names)


@dataclass(frozen=True)
class Setup:
    """What of a run sizes its memory (read from the config by plan.py)."""

    params: int
    trainable: int
    param_bytes: int
    """Bytes of a parameter, gradient and AdamW moment (model.dtype)."""
    train_bf16: bool
    sample_bf16: bool
    reference: bool
    """A second full copy of the weights (β > 0 without LoRA)."""
    critic_params: int
    gen_batch: int
    micro_batch: int
    prompt_tokens: int
    new_tokens: int
    group_size: int
    checkpointing: bool
    gpu: bool
    ranks: int = 1
    """Processes of the torchrun launch (the rows are already each rank's share)."""
    sharded: bool = False
    """train.sharding = "fsdp" on more than one rank: the static state is split over the ranks."""

    @property
    def shards(self) -> int:
        return self.ranks if self.sharded else 1

    @property
    def compute_bytes(self) -> int:
        """Bytes of a weight FSDP gathers: bf16 under bf16 compute (MixedPrecisionPolicy), else model.dtype."""
        return 2 if self.train_bf16 else self.param_bytes


def kv_cache_bytes(a: Arch, batch: int, seq: int, nbytes: int) -> int:
    """Keys and values of every layer for `batch` sequences of `seq` tokens."""
    return 2 * a.layers * a.kv_heads * a.head_dim * batch * seq * nbytes


def sampling_bytes(a: Arch, s: Setup) -> dict[str, int]:
    """The sampling phase beyond the static state: KV cache and the decode loop's [batch, vocab] tensors."""
    kvb = 2 if s.sample_bf16 else s.param_bytes
    b, p, seq = s.gen_batch, s.prompt_tokens, s.prompt_tokens + s.new_tokens
    kv = kv_cache_bytes(a, b, seq, kvb)
    prefill_copy = kv_cache_bytes(a, b, p, kvb)  # the prefilled cache stays referenced beside the lean buffers
    # per decode step: logits [b, V], their fp32 scaled copy and noise, and the int64 hash intermediates
    decode = b * a.vocab * (kvb + 3 * 4 + 4 * 8)
    unique = max(1, -(-b // s.group_size))  # a group's G rows share one prefill
    prefill = unique * p * (4 * a.intermediate + 6 * a.hidden + p) * 4
    out = {"kv_cache": kv, "sampling_transient": prefill_copy + max(decode, prefill)}
    if s.sharded:  # sampling runs on the whole policy, gathered once
        out["gathered_weights"] = s.params * s.compute_bytes
    return out


def activation_bytes(a: Arch, s: Setup, b: int, checkpointing: bool) -> int:
    """Tensors one micro-batch's forward keeps for the backward pass, vocabulary terms aside."""
    seq = s.prompt_tokens + s.new_tokens
    n = b * seq
    per_token = 6 * a.hidden + 4 * a.heads * a.head_dim + 4 * a.intermediate + a.heads + 2
    if s.train_bf16:  # norms and the residual stay fp32, the projections' outputs are bf16
        full = n * (4 * 4 * a.hidden + 2 * (5 * a.hidden + 4 * a.heads * a.head_dim + 4 * a.intermediate)
                    + 4 * (a.heads + 2) + 2 * seq)
    else:
        full = n * (per_token + seq) * s.param_bytes
    if checkpointing:  # each layer's input, and one layer's activations recomputed during the backward pass
        return a.layers * n * a.hidden * (2 if s.train_bf16 else s.param_bytes) + full
    return a.layers * full + n * (3 * a.hidden + 2 * a.head_dim) * 4


def vocab_bytes(a: Arch, s: Setup, b: int) -> int:
    """The logits [b, S, V] (bf16 under autocast, else model.dtype) alive beside the fp32 log-softmax [T, V] of every
    row, and one row's scaled copy and entropy terms; the backward pass holds about as much (their gradients)."""
    seq, t = s.prompt_tokens + s.new_tokens, s.new_tokens
    logits = b * seq * a.vocab * (2 if s.train_bf16 else s.param_bytes)
    return logits + b * t * a.vocab * 4 + 3 * t * a.vocab * 4


def training_bytes(a: Arch, s: Setup, micro_batch: int | None = None,
                   checkpointing: bool | None = None) -> dict[str, int]:
    """One micro-batch's forward-backward beyond the static state."""
    b = s.micro_batch if micro_batch is None else micro_batch
    ckpt = s.checkpointing if checkpointing is None else checkpointing
    out = {"activations": activation_bytes(a, s, b, ckpt), "logits": vocab_bytes(a, s, b)}
    if s.sharded:  # FSDP's gathered root and layers (bf16 under bf16 compute: autocast then casts nothing)
        root, layer = root_and_layer_params(a, s.params)
        out["gathered_layers"] = (root + 2 * layer) * s.compute_bytes + layer * s.param_bytes
    elif s.train_bf16:  # autocast keeps a bf16 copy of every weight it casts for the step
        out["autocast_weight_copies"] = 2 * s.params
    return out


def root_and_layer_params(a: Arch, params: int) -> tuple[int, int]:
    """Parameters of FSDP's root group (embeddings, an untied head, the final norm) and of one decoder layer."""
    root = a.vocab * a.hidden * (1 if a.tied else 2) + a.hidden
    return root, -(-(params - root) // a.layers)


def static_bytes(s: Setup) -> dict[str, int]:
    """What stays resident from the first update on, in both phases (each rank's 1/N under FSDP)."""
    pb, n = s.param_bytes, s.shards
    out = {"weights": s.params * pb, "reference": s.params * pb if s.reference else 0,
           "gradients": s.trainable * pb, "optimizer": 2 * s.trainable * pb}
    if s.critic_params:
        out["critic"] = 4 * s.critic_params * pb  # weights, gradients, AdamW's two moments
    return {key: -(-value // n) for key, value in out.items()}


def optimizer_step_bytes(a: Arch, s: Setup) -> int:
    """AdamW's temporaries during its step, after the backward pass has freed the activations. On CUDA, torch's
    default (foreach) AdamW takes the square root of every second moment at once: one list the size of the trained
    parameters (and of the critic's, stepped apart). On CPU it goes tensor by tensor: one temporary the size of the
    largest trained tensor (the embedding or an MLP matrix), or of a LoRA adapter."""
    if s.gpu:
        return -(-max(s.trainable, s.critic_params) * s.param_bytes // s.shards)
    largest = max(a.vocab, a.intermediate) * a.hidden if s.trainable == s.params else 0
    return -(-max(largest, s.critic_params and max(a.vocab, a.intermediate) * a.hidden) * s.param_bytes // s.shards)


def estimate(a: Arch, s: Setup) -> dict:
    """Every term in bytes, the peak of each phase and the overall peak (plus the stated base)."""
    static, sampling, training = static_bytes(s), sampling_bytes(a, s), training_bytes(a, s)
    base = CUDA_CONTEXT_BYTES if s.gpu else CPU_BASE_BYTES
    phase = {"sampling": base + sum(static.values()) + sum(sampling.values()),
             "training": base + sum(static.values()) + sum(training.values()),
             "optimizer": base + sum(static.values()) + optimizer_step_bytes(a, s)}
    other = training_bytes(a, s, checkpointing=not s.checkpointing)
    return {"setup": asdict(s), "base": base, "static": static, "sampling": sampling, "training": training,
            "training_other_checkpointing": sum(other.values()), "phase_peak": phase,
            "peak": max(phase.values()), "peak_phase": max(phase, key=phase.get)}
