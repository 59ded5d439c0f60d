"""Loading and saving a causal LM and its tokenizer (a hub id, a local Hugging Face folder, a local `.gguf` file, or an
embedded model),
and the devices, dtypes and autocast they run in.

The embedded models (`embedded:tiny`, `embedded:countdown`) are built in `rlino.embedded`; they need no download,
so tests and CPU smoke runs work offline.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from rlino.checks import check_autocast
from rlino.embedded import load_embedded
from rlino.errors import RlinoError
from rlino.gguf import gguf_folder, is_gguf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise RlinoError(f"model.device: unknown device '{device}'") from None


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 products natively (AVX-512 BF16 or AMX), as oneDNN detects it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision(mode: str, device: torch.device) -> str:
    """What an autocast setting (`auto`, `bf16`, `off`) resolves to on this device: "bf16" or "fp32".

    `auto` is bf16 on CUDA and fp32 on CPU, also on CPUs with native bf16 (docs/performance.md has the
    measurement behind that choice): a CPU run asks for bf16 by name."""
    check_autocast(mode)
    return "bf16" if mode == "bf16" or (mode == "auto" and device.type == "cuda") else "fp32"


def autocast(mode: str, device: torch.device):
    """A fresh autocast context for `precision(mode, device)`: bf16 autocast, or a no-op (fp32)."""
    enabled = precision(mode, device) == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def precision_note(train_mode: str, sample_mode: str, device: torch.device) -> str:
    """One line on the precision a run resolved to, and on the hardware's bf16 when it goes unused."""
    train, sample = precision(train_mode, device), precision(sample_mode, device)
    note = (f"precision on {device.type}: training {train} (model.autocast={train_mode}), sampling and evaluation "
            f"{sample} (autocast {sample_mode})")
    if device.type == "cpu" and cpu_has_bf16() and "fp32" in (train, sample):
        note += "; this CPU has native bf16: --set model.autocast=bf16 uses it (see docs/performance.md)"
    return note


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise RlinoError(f"model.dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    return DTYPES[dtype]


def looks_local(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _load_pretrained(name_or_path: str,
                     torch_dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """A hub id or a local Hugging Face folder, with clear errors for a file, a missing folder or a failed load."""
    if is_gguf(name_or_path):  # a plain folder built once from the file (rlino.gguf)
        name_or_path = str(gguf_folder(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists() and not path.is_dir():
        raise RlinoError(f"model.name_or_path: '{name_or_path}' is a file; give a Hugging Face model folder or a "
                         f".gguf file")
    if not path.exists() and looks_local(name_or_path):
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
    return model, tokenizer


def load_model(name_or_path: str, *, dtype: str = "float32", device: str = "auto",
               seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (hub id, local folder, `.gguf` file or `embedded:NAME`), in `dtype` on
    `device`."""
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    if name_or_path.startswith("embedded:"):
        model, tokenizer = load_embedded(name_or_path, seed=seed, dtype=torch_dtype)
    else:
        model, tokenizer = _load_pretrained(name_or_path, torch_dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device=dev, dtype=torch_dtype)
    return model, tokenizer


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, folder: str | Path,
               state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write a plain Hugging Face model folder that `from_pretrained` loads (from `state_dict` when given: the
    gathered weights of a sharded model)."""
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
