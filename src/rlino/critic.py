"""The critic of `ppo`: a value head on a causal LM's backbone, its values per response token, save and load.

    V(s_t) = head( h_t )      h_t: the backbone's last hidden state at the position that predicts response token t

so V_t is read at exactly the positions whose logits give log π(o_t | q, o_<t) (`rollout.token_logprobs`): the value
of the state in which token t is chosen. The backbone is the causal LM's own base model (`model.model` for Qwen2 and
Llama, `model.transformer` for GPT-2), loaded from model.name_or_path (a copy of the policy's initial weights) or from
critic.model; the head is one linear layer, initialised to 0 (V = 0 before training), as TRL's and verl's value heads
are a linear layer on the last hidden state.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_file
from safetensors.torch import save_model as save_safetensors

from rlino.errors import RlinoError
from rlino.models import load_model

CRITIC_FILE = "critic.safetensors"


class Critic(torch.nn.Module):
    """A backbone (a transformers base model) and a linear value head on its last hidden state."""

    def __init__(self, backbone: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                completion_mask: torch.Tensor) -> torch.Tensor:
        """Values [B, T] of the states before each response token (`token_logprobs`' inputs and alignment)."""
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention = torch.cat([prompt_mask, completion_mask], dim=1)
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.backbone(input_ids=ids, attention_mask=attention, position_ids=position_ids,
                               use_cache=False).last_hidden_state
        p = prompt_ids.shape[1]
        hidden = hidden[:, p - 1: p - 1 + completion_ids.shape[1]]
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


def backbone_of(model: torch.nn.Module, name: str) -> tuple[torch.nn.Module, int]:
    """The base model under a causal LM's output head, and its hidden size; a clear error when there is none."""
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None) if prefix else None
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text_config, "hidden_size", None) or getattr(text_config, "n_embd", None)
    if not isinstance(backbone, torch.nn.Module) or not isinstance(hidden, int):
        raise RlinoError(f"cannot build a critic on '{name}' ({type(model).__name__}): it has no base model under "
                         f"its output head (base_model_prefix '{prefix}') or no hidden_size in its config. Name a "
                         f"transformers causal LM as critic.model")
    return backbone, hidden


def build_critic(name_or_path: str, *, dtype: str, device: str, seed: int) -> Critic:
    """Load the causal LM `name_or_path` and put a value head on its backbone (its output head is dropped)."""
    model, _ = load_model(name_or_path, dtype=dtype, device=device, seed=seed)
    backbone, hidden = backbone_of(model, name_or_path)
    critic = Critic(backbone, hidden).to(device=next(backbone.parameters()).device,
                                         dtype=next(backbone.parameters()).dtype)
    del model
    return critic


def save_critic(critic: Critic, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """The critic's weights as one safetensors file (from `state_dict` when given: a sharded critic's, gathered)."""
    if state_dict is None:
        save_safetensors(critic, str(Path(folder) / CRITIC_FILE))
    else:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(Path(folder) / CRITIC_FILE))


def load_critic_(critic: Critic, folder: str | Path) -> None:
    path = Path(folder) / CRITIC_FILE
    if not path.is_file():
        raise RlinoError(f"checkpoint {folder} has no {CRITIC_FILE}: it was not written by a run with a critic")
    load_safetensors(critic, str(path))
