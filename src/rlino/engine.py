"""A lean decode step for Llama-family models (`sampling.engine = "lean"`), with the model's own forward as fallback.

Sampling spends most of its time in the decode loop, one token per call, where a 1M-parameter model's arithmetic
is tiny and the cost is dispatch: transformers' modules, hooks, mask building and cache bookkeeping around every
small op. This step does the same computation as a Qwen2 / Llama / Mistral decoder layer (RMSNorm, rotary
embedding, grouped-query attention through `scaled_dot_product_attention`, SwiGLU MLP) straight on the model's
weights, with keys and values in buffers allocated once for the whole response:

    x = embed(token)
    for each layer:  h = rmsnorm(x);  q, k, v = proj(h);  rotate q, k;  append k, v;
                     x += o_proj(attention(q, K, V, mask));  x += down(silu(gate(rmsnorm(x))) * up(rmsnorm(x)))
    logits = lm_head(rmsnorm(x))

The prompt is still prefilled by the model's own forward (so the first token's logits are the reference path's),
and its cache is copied into the buffers. The step is not bit-identical to transformers' forward: the same
operations run in a different order (measured: |Δ logit| ≤ 2e-5 in fp32 on the embedded model), so a near-tie
in the Gumbel argmax can go the other way; the guarantees that do not depend on the floating-point order hold
exactly (counter-keyed noise, samples independent of the batch layout, a resumed run samples what an uninterrupted
one samples). A LoRA policy (PEFT's adapters on the projections) is covered by merging each active adapter into the
step's copy of its projection, W + s·B·A, once per sampling call (PEFT adds s·B(A(x)) to W·x: the same map in
another order); adapters PEFT computes otherwise (DoRA and other variants, a bias on B, dropout at sampling time)
are not. Models it does not cover (other architectures, scaled rotary embeddings, sliding windows, biases in the
MLP, those adapters) fall back to the model's forward, with a one-line notice.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

ARCHITECTURES = ("qwen2", "llama", "mistral")


def unsupported(model) -> str | None:
    """Why the lean step cannot serve this model, or None when it can."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in ARCHITECTURES:
        return f"architecture '{kind}' (the lean step covers {', '.join(ARCHITECTURES)})"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(model, "lm_head"):
        return "a model without .model.layers and .lm_head"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation '{config.hidden_act}'"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return f"rotary scaling '{rope.get('rope_type', rope.get('type'))}'"
    if getattr(config, "use_sliding_window", False) or (kind == "mistral" and getattr(config, "sliding_window", None)):
        return "a sliding attention window"
    if type(model.lm_head) is not torch.nn.Linear:
        return "a wrapped output head"
    for layer in layers:
        for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                  layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            if type(m) is not torch.nn.Linear and (reason := _adapter_unsupported(m, model.training)):
                return reason
        if any(_linear(m).bias is not None for m in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)):
            return "biases in the MLP"
    return None


def _linear(m) -> torch.nn.Linear:
    """The plain linear layer of a projection: itself, or a PEFT LoRA layer's base layer."""
    return m if type(m) is torch.nn.Linear else m.base_layer


def _adding(m) -> list[str]:
    """The adapters a PEFT LoRA layer adds to its base layer's output now (none when merged in or disabled)."""
    return [] if m.merged or m.disable_adapters else [name for name in m.active_adapters if name in m.lora_A]


def _adapter_unsupported(m, training: bool) -> str | None:
    """Why a wrapped projection cannot be merged into the step's weights (None: a plain PEFT LoRA layer)."""
    if type(getattr(m, "base_layer", None)) is not torch.nn.Linear or not hasattr(m, "lora_A"):
        return f"wrapped projections ({type(m).__name__})"
    for name in _adding(m):
        if name in getattr(m, "lora_variant", {}) or m.lora_B[name].bias is not None:
            return "LoRA variants (DoRA, a bias on B)"
        if training and not isinstance(m.lora_dropout[name], torch.nn.Identity):
            return "LoRA dropout at sampling time"
    return None


def projection(m) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A projection's weight and bias as the step applies them: a plain linear layer's own, or a PEFT LoRA layer's
    base weight with its active adapters merged in (W + s·B·A, a new tensor; the module is left as it is)."""
    if type(m) is torch.nn.Linear:
        return m.weight, m.bias
    weight = m.base_layer.weight
    for name in _adding(m):
        a, b = m.lora_A[name].weight, m.lora_B[name].weight
        weight = weight + m.scaling[name] * (b.to(weight.dtype) @ a.to(weight.dtype))
    return weight, m.base_layer.bias


_warned: set[str] = set()


def notice_fallback(reason: str) -> None:
    """Say once per reason that sampling falls back to the model's own forward."""
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"sampling.engine = 'lean' does not cover {reason}; sampling with the model's own forward",
                      stacklevel=3)


class LeanDecoder:
    """The decode loop's state: the model's weights and a key/value buffer per layer, filled from a prefilled cache."""

    def __init__(self, model, cache, capacity: int):
        inner, config = model.model, model.config
        self.layers = inner.layers
        self.embed, self.norm, self.head = inner.embed_tokens.weight, inner.norm, model.lm_head
        attn = self.layers[0].self_attn
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.inv_freq, self.rope_scale = inner.rotary_emb.inv_freq, inner.rotary_emb.attention_scaling
        # per layer, q/k/v and gate/up as one matrix each: two products where the modules make five
        self.qkv, self.o, self.gate_up, self.down = [], [], [], []
        for layer in self.layers:
            a, mlp = layer.self_attn, layer.mlp
            (q, qb), (k, kb), (v, vb) = projection(a.q_proj), projection(a.k_proj), projection(a.v_proj)
            self.qkv.append((torch.cat([q, k, v]), None if qb is None else torch.cat([qb, kb, vb])))
            self.o.append(projection(a.o_proj))
            self.gate_up.append(torch.cat([projection(mlp.gate_proj)[0], projection(mlp.up_proj)[0]]))
            self.down.append(projection(mlp.down_proj)[0])
        self.keys, self.values = [], []
        for layer in cache.layers:
            k, v = layer.keys, layer.values  # [B, KV, P, d]
            self.length = k.shape[-2]
            kbuf = k.new_empty(*k.shape[:-2], max(capacity, self.length), k.shape[-1])
            vbuf = v.new_empty(*v.shape[:-2], max(capacity, self.length), v.shape[-1])
            kbuf[..., : self.length, :], vbuf[..., : self.length, :] = k, v
            self.keys.append(kbuf)
            self.values.append(vbuf)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only these rows (finished rows dropped from the batch)."""
        self.keys = [k[keep] for k in self.keys]
        self.values = [v[keep] for v in self.values]

    @staticmethod
    def _rms(norm, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return norm.weight * x.to(dtype)

    def _rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return ((emb.cos() * self.rope_scale).to(dtype)[:, None], (emb.sin() * self.rope_scale).to(dtype)[:, None])

    def _rotate(self, z: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        return z * cos + torch.cat((-z[..., half:], z[..., :half]), dim=-1) * sin

    def _attention(self, i: int, h: torch.Tensor, cos, sin, mask: torch.Tensor) -> torch.Tensor:
        """One token's attention over the cache (q, k and v from one product; grouped-query heads by SDPA)."""
        b, d, kv = h.shape[0], self.head_dim, self.kv_heads
        q, k, v = F.linear(h, *self.qkv[i]).view(b, -1, d).split([self.heads, kv, kv], dim=1)
        q, k = self._rotate(q.unsqueeze(2), cos, sin), self._rotate(k.unsqueeze(2), cos, sin)  # [b, heads, 1, d]
        end = self.length + 1
        self.keys[i][..., self.length: end, :] = k
        self.values[i][..., self.length: end, :] = v.unsqueeze(2)
        o = F.scaled_dot_product_attention(q, self.keys[i][..., :end, :], self.values[i][..., :end, :],
                                           attn_mask=mask, scale=self.scaling, enable_gqa=self.heads != kv)
        return F.linear(o.transpose(1, 2).reshape(b, 1, -1), *self.o[i])

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Logits [b, V] after one more token per row: `tokens` [b], `positions` [b, 1], `attention` [b, S + 1]
        (1 for the real prompt tokens and every generated one, the new token included)."""
        x = F.embedding(tokens[:, None], self.embed)
        cos, sin = self._rotary(positions, x.dtype)
        mask = attention.bool()[:, None, None, :]  # [b, 1, 1, S]
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, self._rms(layer.input_layernorm, x), cos, sin, mask)
            gate, up = F.linear(self._rms(layer.post_attention_layernorm, x), self.gate_up[i]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, self.down[i])
        self.length += 1
        return self.head(self._rms(self.norm, x[:, -1]))
