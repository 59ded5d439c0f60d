"""Byte-level Qwen2 models: the byte tokenizer and the one builder of a randomly initialised Qwen2 model over it.

The tokenizer has one token per byte: a byte-level BPE vocabulary with no merges (which survives `AutoTokenizer`'s
conversion to `Qwen2Tokenizer`), token id = byte value for 0..255, then the special tokens. Every byte-level model of
the project (`embedded:tiny`, the `embedded:countdown` base before its warm-up, the benchmark models, the tests'
variants) comes from `byte_qwen2`, so they agree on the tokenizer, the tied embeddings and the special token ids.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

EOS = "<|endoftext|>"
SPECIAL_TOKENS = (EOS, "<|im_start|>", "<|im_end|>")


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer: token id = byte value for 0..255, then the special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_char = bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


def byte_qwen2(seed: int, **config) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerBase]:
    """A random Qwen2 model over the byte tokenizer, and the tokenizer; the same seed gives the same weights.

    `config` is `Qwen2Config` keyword arguments (sizes, `max_position_embeddings`, `initializer_range`, ...); the
    vocabulary comes from the tokenizer, the embeddings are tied, EOS is the pad token and there is no BOS. The
    weights are drawn from `torch.manual_seed(seed)` inside `fork_rng`, so the caller's RNG state is untouched.
    """
    tokenizer = byte_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    qwen2 = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True, eos_token_id=eos, pad_token_id=eos,
                        bos_token_id=None, **config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(qwen2)
    return model, tokenizer
