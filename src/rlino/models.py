"""Loading a causal LM and its tokenizer: a hub id, a local Hugging Face folder, or an embedded model built here.

`embedded:tiny` is a small randomly initialised Qwen2-architecture model with a byte-level tokenizer (one token per
byte: a byte-level BPE vocabulary with no merges, which survives `AutoTokenizer`'s conversion to `Qwen2Tokenizer`).
It needs no download, so tests and CPU smoke runs work offline.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from rlino.errors import RlinoError

EOS = "<|endoftext|>"
SPECIAL_TOKENS = (EOS, "<|im_start|>", "<|im_end|>")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# name -> Qwen2Config keyword arguments (vocab size is set from the tokenizer)
EMBEDDED = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024),
}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise RlinoError(f"model.device: unknown device '{device}'") from None


AUTOCAST_MODES = ("auto", "bf16", "off")


def check_autocast(mode: str) -> None:
    if mode not in AUTOCAST_MODES:
        raise RlinoError(f"model.autocast must be one of {', '.join(AUTOCAST_MODES)}, got '{mode}'")


def autocast(mode: str, device: torch.device):
    """A fresh autocast context: bf16 for `bf16`, and for `auto` on CUDA; a no-op otherwise (fp32 on CPU)."""
    check_autocast(mode)
    enabled = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise RlinoError(f"model.dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    return DTYPES[dtype]


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


def build_embedded(name: str, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Build `embedded:NAME` deterministically from `seed` (same seed, same weights)."""
    if name not in EMBEDDED:
        raise RlinoError(f"unknown embedded model 'embedded:{name}'; available: "
                         + ", ".join(f"embedded:{n}" for n in [*EMBEDDED, "countdown"]))
    tokenizer = byte_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True, eos_token_id=eos, pad_token_id=eos,
                         bos_token_id=None, **EMBEDDED[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model, tokenizer


def _looks_local(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def load_model(name_or_path: str, *, dtype: str = "float32", device: str = "auto",
               seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (hub id, local folder or `embedded:NAME`), in `dtype` on `device`."""
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    if name_or_path == "embedded:countdown":  # warm-started on Countdown traces, built once and cached
        from rlino.base_model import base_model_dir

        name_or_path = str(base_model_dir())
    if name_or_path.startswith("embedded:"):
        model, tokenizer = build_embedded(name_or_path.split(":", 1)[1], seed)
    else:
        path = Path(name_or_path).expanduser()
        if path.exists() and not path.is_dir():
            raise RlinoError(f"model.name_or_path: '{name_or_path}' is a file; give a Hugging Face model folder")
        if not path.exists() and _looks_local(name_or_path):
            raise RlinoError(f"model folder not found: {name_or_path}")
        if path.is_dir() and not (path / "config.json").is_file():
            raise RlinoError(f"model folder {name_or_path} has no config.json: not a Hugging Face model folder")
        source = str(path) if path.is_dir() else name_or_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        except (OSError, ValueError) as e:
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
            raise RlinoError(f"could not load model '{name_or_path}'{offline}: not a local folder and not "
                             f"loadable from the hub: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device=dev, dtype=torch_dtype)
    return model, tokenizer


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> None:
    """Write a plain Hugging Face model folder that `from_pretrained` loads."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
