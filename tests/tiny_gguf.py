"""A tiny Llama checkpoint written as a GGUF file with the gguf package's own writer (float32 tensors, a byte-level
GPT-2-style vocabulary of 256 bytes, one merge and two ChatML specials, a ChatML chat template): a GGUF file that
builds in a second, for the tests of `rlino.gguf` that do not need a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HIDDEN, LAYERS, INTERMEDIATE, HEADS, KV_HEADS = 16, 2, 32, 2, 1


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte (its byte-level BPE alphabet), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_tiny_gguf(path: str | Path, architecture: str = "llama", seed: int = 0) -> Path:
    """Write the tiny checkpoint to `path` (under `architecture`'s name: another name makes a file transformers
    cannot read) and return the path."""
    import gguf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), architecture)
    tokens = byte_symbols() + ["ab", "<|im_start|>", "<|im_end|>"]
    w.add_name("rlino tiny test llama")
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(INTERMEDIATE)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * 257 + [3, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(257)
    w.add_eos_token_id(258)
    w.add_pad_token_id(258)
    w.add_chat_template(CHATML)
    rng = np.random.default_rng(seed)
    kv = HIDDEN // HEADS * KV_HEADS
    shapes = {"token_embd.weight": (len(tokens), HIDDEN), "output_norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        shapes.update({f"blk.{i}.attn_norm.weight": (HIDDEN,), f"blk.{i}.attn_q.weight": (HIDDEN, HIDDEN),
                       f"blk.{i}.attn_k.weight": (kv, HIDDEN), f"blk.{i}.attn_v.weight": (kv, HIDDEN),
                       f"blk.{i}.attn_output.weight": (HIDDEN, HIDDEN), f"blk.{i}.ffn_norm.weight": (HIDDEN,),
                       f"blk.{i}.ffn_gate.weight": (INTERMEDIATE, HIDDEN),
                       f"blk.{i}.ffn_up.weight": (INTERMEDIATE, HIDDEN),
                       f"blk.{i}.ffn_down.weight": (HIDDEN, INTERMEDIATE)})
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
