"""LoRA through PEFT: train low-rank adapters on a loaded model, export merged full weights, resume from an adapter.

With `model.lora.rank > 0` the trainer calls `attach_lora` right after loading the policy. PEFT injects the adapters
into the model in place, so the trainer keeps working with the same Hugging Face model object (sampling, evaluation
and the training forward see the adapters); only the adapter parameters require gradients and go into the optimizer.

A checkpoint of a LoRA run is still a plain Hugging Face model folder, the merged full weights W + (alpha/r)·B·A that
`from_pretrained` loads with no PEFT installed, plus the adapter alone in a subfolder:

    checkpoints/step-NNNNNN/
        config.json, generation_config.json, model.safetensors, tokenizer files   merged full weights
        adapter/adapter_config.json, adapter/adapter_model.safetensors            the PEFT adapter
        trainer_state.pt                                                          optimizer, scheduler, RNG, step

Resuming reloads the base model from `model.name_or_path`, wraps it again and loads the adapter's weights, so a
resumed run continues from exactly the weights an uninterrupted one holds (the merged weights are only an export;
merging and un-merging in place would not restore the base weights bit for bit).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from rlino.checks import check_lora
from rlino.config import LoraConfig
from rlino.errors import RlinoError

ADAPTER_DIR = "adapter"
"""Subfolder of a checkpoint holding the PEFT adapter (adapter_config.json, adapter_model.safetensors)."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "default"


def lora_alpha(cfg: LoraConfig) -> float:
    """The configured alpha, or 2 × rank when unset."""
    return float(cfg.alpha) if cfg.alpha is not None else 2.0 * cfg.rank


def _peft():
    try:
        import peft
    except ImportError:
        raise RlinoError("model.lora.rank > 0 needs the `peft` package: pip install peft") from None
    return peft


class _AdaptersDisabled:
    """The KL reference of a LoRA run: the policy's own modules with every adapter switched off.

    The base weights are frozen and the adapters start at B = 0, so this is exactly the initial model (the KL at
    step 1 is 0) without keeping a second full copy in memory. It is a plain callable, not an `nn.Module`, so the
    policy's parameters are not registered twice (and nothing can freeze them through it). Like the separate
    reference model, it runs in eval mode.
    """

    def __init__(self, peft_model: Any):
        self._peft = peft_model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model = self._peft.get_base_model()
        was_training = model.training
        model.eval()
        try:
            with self._peft.disable_adapter():
                return model(*args, **kwargs)
        finally:
            model.train(was_training)


class LoraPolicy:
    """A policy model with PEFT LoRA adapters injected; `model` is the (same) Hugging Face model object."""

    def __init__(self, peft_model: Any, cfg: LoraConfig):
        self.peft_model = peft_model
        self.cfg = cfg

    @property
    def model(self) -> torch.nn.Module:
        return self.peft_model.get_base_model()

    def reference(self) -> _AdaptersDisabled:
        return _AdaptersDisabled(self.peft_model)

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The base model's state dict with every adapted weight replaced by W + (alpha/r)·B·A, under the base
        model's own key names; the model in memory is not changed."""
        from peft.tuners.lora import LoraLayer

        merged: dict[str, torch.Tensor] = {}
        for key, tensor in self.model.state_dict().items():
            parts = key.split(".")
            if any(p.startswith("lora_") for p in parts):
                continue
            merged[".".join(p for p in parts if p != "base_layer")] = tensor
        for name, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and ADAPTER_NAME in module.scaling:
                base = module.get_base_layer().weight
                merged[f"{name}.weight"] = base + module.get_delta_weight(ADAPTER_NAME).to(base.dtype)
        return merged

    def save(self, tokenizer: Any, folder: str | Path) -> None:
        """Write merged full weights as a plain Hugging Face folder, and the adapter into `folder/adapter/`."""
        folder = Path(folder)
        self.model.save_pretrained(folder, state_dict=self.merged_state_dict())
        tokenizer.save_pretrained(folder)
        self.peft_model.save_pretrained(folder / ADAPTER_DIR, save_embedding_layers=False)

    def load_adapter(self, checkpoint: str | Path) -> None:
        """Load the adapter weights saved in `checkpoint/adapter/` into this (freshly wrapped) model."""
        from peft import get_peft_model_state_dict, set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(checkpoint) / ADAPTER_DIR
        if not (folder / ADAPTER_WEIGHTS).is_file():
            raise RlinoError(f"{checkpoint} has no LoRA adapter ({ADAPTER_DIR}/{ADAPTER_WEIGHTS}): it was not "
                             f"written by a LoRA run, so it cannot be resumed with model.lora.rank > 0")
        saved = json.loads((folder / "adapter_config.json").read_text())
        live = self.peft_model.peft_config[ADAPTER_NAME]
        for key, ours in (("r", live.r), ("lora_alpha", live.lora_alpha), ("lora_dropout", live.lora_dropout),
                          ("target_modules", live.target_modules)):
            theirs = saved.get(key)
            same = (set(theirs or []) == set(ours)) if key == "target_modules" else theirs == ours
            if not same:
                raise RlinoError(f"{checkpoint}: the adapter was trained with {key}={theirs!r}, the config now asks "
                                 f"for {key}={ours!r}; resume with the run's own model.lora settings")
        device = next(self.model.parameters()).device
        weights = load_file(str(folder / ADAPTER_WEIGHTS), device=str(device))
        expected = set(get_peft_model_state_dict(self.peft_model, save_embedding_layers=False))
        if set(weights) != expected:
            missing, unexpected = sorted(expected - set(weights))[:3], sorted(set(weights) - expected)[:3]
            raise RlinoError(f"{folder}: adapter weights do not match the model (missing {missing}, "
                             f"unexpected {unexpected})")
        set_peft_model_state_dict(self.peft_model, weights)


def attach_lora(model: torch.nn.Module, cfg: LoraConfig, *, seed: int = 0,
                base_name: str | None = None) -> LoraPolicy | None:
    """Inject LoRA adapters into `model` in place (None, and nothing changed, when `cfg.rank` is 0).

    The adapters' random initialisation (A; B starts at 0) is seeded by `seed` and leaves the global RNG as it was.
    Every base parameter is frozen; only the adapters require gradients.
    """
    check_lora(cfg)
    if cfg.rank == 0:
        return None
    peft = _peft()
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    config = peft.LoraConfig(r=cfg.rank, lora_alpha=lora_alpha(cfg), lora_dropout=cfg.dropout,
                             target_modules=targets, bias="none", task_type="CAUSAL_LM")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
        # PEFT reads transformers' deprecated `is_gradient_checkpointing`; the FutureWarning is not the user's to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)
        try:
            peft_model = peft.get_peft_model(model, config)
        except ValueError as e:  # e.g. "Target modules {...} not found in the base model"
            raise RlinoError(f"model.lora: {str(e).splitlines()[0]}") from None
    if base_name:  # recorded in adapter/adapter_config.json (set after wrapping: PEFT resets it from the model)
        peft_model.peft_config[ADAPTER_NAME].base_model_name_or_path = base_name
    return LoraPolicy(peft_model, cfg)


def resume_lora(policy: LoraPolicy | None, checkpoint: str | Path) -> bool:
    """Load a checkpoint's adapter into `policy`; False when neither side uses LoRA (load the full weights then).

    A checkpoint with an adapter resumed without LoRA (or the reverse) is an error: the optimizer state holds the
    adapter's parameters in one case and every weight in the other.
    """
    has_adapter = (Path(checkpoint) / ADAPTER_DIR).is_dir()
    if policy is None:
        if has_adapter:
            raise RlinoError(f"{checkpoint} was written by a LoRA run (it has {ADAPTER_DIR}/); resume it with its "
                             f"model.lora settings (the run's config.toml has them), not with model.lora.rank = 0")
        return False
    policy.load_adapter(checkpoint)
    return True
