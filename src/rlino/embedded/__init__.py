"""The embedded models: built here rather than downloaded, so tests and CPU smoke runs work offline.

- `embedded:tiny`: a small randomly initialised Qwen2-architecture model over the byte tokenizer (`byte_qwen2.py`).
- `embedded:countdown`: a small model warm-started on Countdown solver traces (`countdown_base.py`, whose traces
  come from `countdown_traces.py`); the build of the default recipe with seed 0 ships with the package
  (`countdown/`), other seeds and recipes are built once and cached.

`load_model` (in `models.py`) calls `load_embedded` for any `embedded:NAME`; this package never imports that module.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from rlino.embedded.byte_qwen2 import byte_qwen2
from rlino.embedded.countdown_base import base_model_dir
from rlino.errors import RlinoError

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)
"""`embedded:tiny`'s `Qwen2Config` sizes (the vocabulary comes from the byte tokenizer)."""
NAMES = ("tiny", "countdown")


def _base_seed(short: str) -> tuple[str, int]:
    """`countdown@3` -> ("countdown", 3); a name without `@` builds with seed 0."""
    if "@" not in short:
        return short, 0
    short, _, raw = short.partition("@")
    if short != "countdown" or not raw.isdigit():
        raise RlinoError(f"embedded:{short}@{raw}: only embedded:countdown takes a base seed, as "
                         "embedded:countdown@N with N a non-negative integer")
    return short, int(raw)


def load_embedded(name: str, seed: int = 0,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """`embedded:NAME` and its tokenizer, in `dtype` on the CPU.

    `tiny` is drawn from `seed` (same seed, same weights). `countdown` is the default recipe's base model built with
    seed 0, whatever `seed` is (a run's seed does not pick another base); `countdown@B` is the one built with seed B
    (`compare.base_seeds`). Seed 0 of the default recipe is the shipped build; another is built on first use and
    cached.
    """
    short = name.removeprefix("embedded:")
    short, base_seed = _base_seed(short)
    if short == "tiny":
        model, tokenizer = byte_qwen2(seed, **TINY)
        return model.to(dtype=dtype), tokenizer
    if short == "countdown":
        folder = base_model_dir(base_seed)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), tokenizer
        except (OSError, ValueError) as e:
            raise RlinoError(f"could not load the embedded:countdown model at {folder} (reinstall rlino for the "
                             f"shipped one; `rlino base --seed {base_seed} --rebuild` rebuilds a cached one): "
                             f"{str(e).splitlines()[0]}") from None
    raise RlinoError(f"unknown embedded model 'embedded:{short}'; available: "
                     + ", ".join(f"embedded:{n}" for n in NAMES))
