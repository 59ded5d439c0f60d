"""Sampling responses from a causal LM, and the per-token log-probs of given responses.

Sampling is Gumbel-max with counter-based noise: the noise for a token is a hash of (seed, step, row id, position,
vocabulary index), so the responses a step samples depend on nothing else: not on the generation batch size, not
on which rows are generated together, not on any global RNG state. A resumed run samples exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlino.engine import LeanDecoder, notice_fallback, unsupported
from rlino.prompts import RAW, PromptFormat

MASK32 = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply) on int64 tensors; constants < 2^27 keep products below 2^63."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    return x ^ (x >> 16)


def row_keys(seed: int, step: int, row_ids: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per row from (seed, step, row id)."""
    h = _mix(torch.full_like(row_ids, ((seed & MASK32) * 0x3243F6B + 0x1B873593) & MASK32))
    h = _mix((h + (step & MASK32) * 0x27D4EB2) & MASK32)
    return _mix((h + (row_ids & MASK32)) & MASK32)


def gumbel_noise(keys: torch.Tensor, position: int, vocab_size: int) -> torch.Tensor:
    """Gumbel(0, 1) noise [B, V], a pure function of each row's key, the position and the vocabulary index."""
    h = _mix((keys + position * 0x5BD1E99) & MASK32)
    vocab = torch.arange(vocab_size, device=keys.device, dtype=torch.int64)
    x = _mix(_mix((h.unsqueeze(1) * 0x1000193 + vocab.unsqueeze(0)) & MASK32) ^ 0x2545F49)
    u = (x.double() + 0.5) / 2.0**32
    return -torch.log(-torch.log(u))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the smallest set of tokens whose probability mass reaches `top_p`."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= top_p  # mass before this token already reached top_p
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(logits: torch.Tensor, keys: torch.Tensor, position: int, temperature: float,
                  top_p: float) -> torch.Tensor:
    """The next token per row: argmax when temperature is 0, else Gumbel-max over logits / temperature."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scaled = top_p_filter(logits.float() / temperature, top_p)
    noise = gumbel_noise(keys, position, logits.shape[-1]).to(scaled.dtype)
    return (scaled + noise).argmax(dim=-1)


@dataclass
class MicroBatch:
    """Some rows of a rollout, cut to the padding they need: what one forward/backward pass sees."""

    rows: torch.Tensor
    """[b] indices of these rows in the rollout (and in its rewards and weights)."""
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prompt_ids, prompt_mask, completion_ids, completion_mask), in `token_logprobs`' order."""
        return self.prompt_ids, self.prompt_mask, self.completion_ids, self.completion_mask


@dataclass
class Rollout:
    prompt_ids: torch.Tensor
    """[B, P] left-padded prompt tokens."""
    prompt_mask: torch.Tensor
    """[B, P] 1 for real prompt tokens."""
    completion_ids: torch.Tensor
    """[B, T] response tokens, right-padded."""
    completion_mask: torch.Tensor
    """[B, T] 1 for response tokens, the end-of-sequence token included."""
    truncated: torch.Tensor
    """[B] True where the response hit max_new_tokens without an end-of-sequence token."""
    texts: list[str]
    """Decoded responses, special tokens removed."""

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def micro_batches(self, size: int, rows: torch.Tensor | None = None) -> list[MicroBatch]:
        """The rows (all, or the given indices) in micro-batches of at most `size`.

        Rows are grouped by response length and each micro-batch is cut to the padding its own rows need, so little
        compute goes to padding. This never changes the update: losses use the normalisers of the whole step (of its
        PPO mini-batch, `rlino.mini_batches`).
        """
        rows = torch.arange(len(self.lengths)) if rows is None else rows.cpu()
        order = rows[torch.argsort(self.lengths.cpu()[rows], stable=True)].to(self.completion_ids.device)
        out = []
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            pm, cm = self.prompt_mask[idx], self.completion_mask[idx]
            first = int((pm.sum(dim=0) > 0).long().argmax())
            last = max(int(cm.sum(dim=1).max()), 1)
            out.append(MicroBatch(idx, self.prompt_ids[idx, first:], pm[:, first:], self.completion_ids[idx, :last],
                                  cm[:, :last]))
        return out


def _eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return sorted(i for i in ids if i is not None)


def encode_prompts(tokenizer, prompts: list[str], device,
                   prompt_format: PromptFormat = RAW) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, each prompt encoded by `prompt_format` (raw text by default)."""
    encoded = [prompt_format.encode(tokenizer, p) for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        if e:
            ids[i, width - len(e):] = torch.tensor(e)
            mask[i, width - len(e):] = 1
    return ids.to(device), mask.to(device)


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` in 5.x: the name this model's forward takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _step(model, cache, cache_arg: str, **inputs):
    """One cached forward returning (cache, last-position logits)."""
    if cache is not None:
        inputs[cache_arg] = cache
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    new_cache = out.cache if hasattr(out, "cache") else out.past_key_values
    return new_cache, out.logits[:, -1]


@functools.cache
def _in_place_layer():
    """A transformers `DynamicLayer` that grows in place (None where this transformers has no cache layers)."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return None

    class InPlaceLayer(DynamicLayer):
        """Keys and values in a buffer allocated once for the whole response. A plain DynamicLayer concatenates
        each new token onto its cache, copying the whole cache of every layer at every token (a cost that grows
        with the response: 7% of the sampling time at 128 tokens, 15-17% at 512-1024 on a 2-core CPU, see
        docs/performance.md); this one writes the token into its slot and hands attention a view of the filled
        part, which holds the same values as the concatenated tensor: the logits are the same bit for bit."""

        @classmethod
        def from_layer(cls, layer, capacity: int):
            new = cls()
            new.device, new.is_initialized, new.length = layer.keys.device, True, layer.keys.shape[-2]
            new._k, new._v = (x.new_empty(*x.shape[:-2], max(capacity, new.length), x.shape[-1])
                              for x in (layer.keys, layer.values))
            new._k[..., : new.length, :] = layer.keys
            new._v[..., : new.length, :] = layer.values
            new._views()
            return new

        def _views(self):
            self.keys, self.values = self._k[..., : self.length, :], self._v[..., : self.length, :]

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.length + key_states.shape[-2]
            if end > self._k.shape[-2]:  # more tokens than planned: grow the buffers (not reached by `sample`)
                self._k, self._v = (torch.cat([x, x.new_empty(*x.shape[:-2], end, x.shape[-1])], dim=-2)
                                    for x in (self._k, self._v))
            self._k[..., self.length: end, :] = key_states
            self._v[..., self.length: end, :] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._k, self._v = self._k[indices, ...], self._v[indices, ...]
            self._views()

        def _unsupported(self, *args, **kwargs):
            raise NotImplementedError("rlino's in-place cache layer serves its sampler only")

        crop = batch_repeat_interleave = reorder_cache = reset = offload = prefetch = _unsupported

    return InPlaceLayer


def _grow_in_place(cache, capacity: int) -> None:
    """Swap the plain DynamicLayers of a prefilled cache for in-place ones with room for `capacity` positions."""
    cls, layers = _in_place_layer(), getattr(cache, "layers", None)
    if cls is None or not isinstance(layers, list):
        return
    for i, layer in enumerate(layers):
        if type(layer) is cls.__base__ and layer.is_initialized and getattr(layer.keys, "dim", lambda: 0)() == 4:
            layers[i] = cls.from_layer(layer, capacity)


class _Decoder:
    """The decode loop's next-token forward: the model's own (`hf`), or the lean step of `rlino.engine` (`lean`;
    `auto`: lean where it covers the model)."""

    def __init__(self, model, cache, cache_arg: str, engine: str, capacity: int):
        self.model, self.cache, self.cache_arg, self.lean = model, cache, cache_arg, None
        if engine in ("lean", "auto"):
            reason = unsupported(model) or (None if isinstance(getattr(cache, "layers", None), list)
                                            else "a cache without per-layer keys and values")
            if reason is None:
                self.lean = LeanDecoder(model, cache, capacity)
            elif engine == "lean":  # asked for by name: say why it is not used (`auto` falls back silently)
                notice_fallback(reason)
        if self.lean is None:
            _grow_in_place(cache, capacity)
        self.can_compact = self.lean is not None or hasattr(cache, "batch_select_indices")

    def select(self, keep: torch.Tensor) -> None:
        if self.lean is not None:
            self.lean.select(keep)
        else:
            self.cache.batch_select_indices(keep)

    def step(self, tokens: torch.Tensor, attention: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        if self.lean is not None:
            return self.lean.step(tokens, position, attention)
        self.cache, logits = _step(self.model, self.cache, self.cache_arg, input_ids=tokens.unsqueeze(1),
                                   attention_mask=attention, position_ids=position)
        return logits


def _prefill(model, cache_arg: str, prompt_ids, prompt_mask, position_ids, share_prompts: bool):
    """The prompts' cache and first logits. A group's G rows share one prompt: each distinct prompt is run once
    and its keys and values are copied to the rows that repeat it (where the cache can select rows)."""
    if share_prompts:
        unique, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask], dim=1), dim=0, return_inverse=True)
        if len(unique) < len(prompt_ids):
            width = prompt_ids.shape[1]
            cache, logits = _step(model, None, cache_arg, input_ids=unique[:, :width],
                                  attention_mask=unique[:, width:],
                                  position_ids=(unique[:, width:].cumsum(dim=1) - 1).clamp(min=0))
            if hasattr(cache, "batch_select_indices"):  # else a cache that cannot copy rows: prefill every row
                cache.batch_select_indices(inverse)
                return cache, logits[inverse]
    return _step(model, None, cache_arg, input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids)


@torch.no_grad()
def _generate(model, prompt_ids, prompt_mask, keys, *, eos_ids, pad_id, temperature, top_p, max_new_tokens,
              engine: str = "hf", share_prompts: bool = True):
    device = prompt_ids.device
    batch = prompt_ids.shape[0]
    eos = torch.tensor(eos_ids, device=device)
    position_ids = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
    cache_arg = _cache_argument(model)
    cache, logits = _prefill(model, cache_arg, prompt_ids, prompt_mask, position_ids, share_prompts)
    decoder = _Decoder(model, cache, cache_arg, engine, prompt_ids.shape[1] + max_new_tokens)
    attention, position = prompt_mask, position_ids[:, -1:]
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    active = torch.arange(batch, device=device)  # rows in the cache, in the cache's order
    running = torch.ones(batch, dtype=torch.bool, device=device)  # of those, the ones without an EOS yet
    length = 0
    for t in range(max_new_tokens):
        nxt = choose_tokens(logits, keys, t, temperature, top_p)
        tokens[active, t] = torch.where(running, nxt, pad_id)
        length = t + 1
        running = running & ~torch.isin(nxt, eos)
        if not bool(running.any()) or t == max_new_tokens - 1:
            break
        # drop finished rows from the batch once a tenth of it has finished (noise is keyed per row, so this
        # changes only the cost); finished rows that stay generate tokens that the mask below discards
        if decoder.can_compact and int(running.sum()) <= 0.9 * len(active):
            keep = running.nonzero().squeeze(1)
            decoder.select(keep)
            active, keys, nxt, attention, position, running = (
                x[keep] for x in (active, keys, nxt, attention, position, running))
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        position = position + 1
        logits = decoder.step(nxt, attention, position)
    completion = tokens[:, :length]
    is_eos = torch.isin(completion, eos)
    # a token is part of the response when no end-of-sequence token came strictly before it
    before = is_eos.long().cumsum(dim=1) - is_eos.long()
    mask = (before == 0).long()
    truncated = ~is_eos.any(dim=1)
    return completion.masked_fill(mask == 0, pad_id), mask, truncated


def sample(model, tokenizer, prompts: list[str], row_ids: list[int] | torch.Tensor, *, seed: int, step: int,
           temperature: float, top_p: float, max_new_tokens: int, batch_size: int = 64,
           engine: str = "hf", share_prompts: bool = True, prompt_format: PromptFormat = RAW) -> Rollout:
    """Sample one response per prompt (repeat a prompt G times for a group), keyed by `row_ids`.

    Row `i` gets noise keyed by (seed, step, row_ids[i]); the same key gives the same response whatever else is
    in the batch. `temperature` 0 decodes greedily. `engine`: the decode step, the model's own forward (`hf`) or
    `rlino.engine`'s lean step (`lean`, Llama-family models; others fall back to `hf` with a notice).
    Rows with the same prompt share one prefill; `share_prompts=False` prefills every row (the reference, in tests).
    `prompt_format`: raw text or the chat template, and the BOS rule (`rlino.prompts`).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device, prompt_format)
    keys = row_keys(seed, step, torch.as_tensor(row_ids, dtype=torch.int64, device=device))
    eos_ids, pad_id = _eos_ids(model, tokenizer), tokenizer.pad_token_id
    parts = []
    for start in range(0, len(prompts), batch_size):
        sl = slice(start, start + batch_size)
        # trim left padding this chunk does not need
        width = int(prompt_mask[sl].sum(dim=1).max())
        parts.append(_generate(model, prompt_ids[sl, -width:], prompt_mask[sl, -width:], keys[sl], eos_ids=eos_ids,
                               pad_id=pad_id, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               engine=engine, share_prompts=share_prompts))
    model.train(was_training)
    length = max(p[0].shape[1] for p in parts)
    completion = torch.cat([F.pad(p[0], (0, length - p[0].shape[1]), value=pad_id) for p in parts])
    mask = torch.cat([F.pad(p[1], (0, length - p[1].shape[1]), value=0) for p in parts])
    truncated = torch.cat([p[2] for p in parts])
    texts = [tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True) for row, m in zip(completion, mask)]
    return Rollout(prompt_ids, prompt_mask, completion, mask, truncated, texts)


def token_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                   completion_mask: torch.Tensor, temperature: float = 1.0,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(o_t | q, o_<t) for each response token [B, T], from logits / temperature; optionally the entropy.

    Computed with gradients when called with them enabled (the training forward); the entropy is always detached.
    """
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention = torch.cat([prompt_mask, completion_mask], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attention, position_ids=position_ids, use_cache=False).logits
    p = prompt_ids.shape[1]
    logits = logits[:, p - 1: p - 1 + completion_ids.shape[1]]
    scale = 1.0 / temperature if temperature > 0 else 1.0
    # row by row: a [T, V] log-softmax at a time instead of [B, T, V] (the vocabulary of real models is ~150k)
    logps, entropies = [], []
    for row_logits, row_ids in zip(logits, completion_ids):
        logp_all = (row_logits.float() * scale).log_softmax(dim=-1)
        logps.append(logp_all.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            with torch.no_grad():
                entropies.append(-(logp_all.exp() * logp_all).sum(dim=-1))
    return torch.stack(logps), (torch.stack(entropies) if with_entropy else None)
