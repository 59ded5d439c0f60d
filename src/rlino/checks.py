"""Checks of a config that need nothing but the config: ranges and choices, named by their keys.

`check_config` runs before anything is loaded (the trainer adds the checks that need the method row, the task or the
tokenizer). The config module holds the keys and their types; this one what values they may take.
"""

from __future__ import annotations

import dataclasses

from rlino.config import Config, CriticConfig, LoraConfig
from rlino.errors import RlinoError
from rlino.trackers import check_report_to

AUTOCAST_MODES = ("auto", "bf16", "off")
LR_SCHEDULES = ("constant", "linear", "cosine")
ENGINES = ("auto", "hf", "lean")
SHARDINGS = ("none", "fsdp")
ALL_LINEAR = "all-linear"


def check_autocast(mode: str, key: str = "model.autocast") -> None:
    if mode not in AUTOCAST_MODES:
        raise RlinoError(f"{key} must be one of {', '.join(AUTOCAST_MODES)}, got '{mode}'")


def check_lora(cfg: LoraConfig) -> None:
    """Check the `[model.lora]` settings (without importing PEFT)."""
    if cfg.rank < 0:
        raise RlinoError(f"model.lora.rank must be >= 0 (0 = no LoRA), got {cfg.rank}")
    if cfg.alpha is not None and cfg.alpha <= 0:
        raise RlinoError(f"model.lora.alpha must be > 0 (or unset: 2 × rank), got {cfg.alpha}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise RlinoError(f"model.lora.dropout must be in [0, 1), got {cfg.dropout}")
    targets = cfg.target_modules
    if isinstance(targets, str):
        if targets != ALL_LINEAR:
            raise RlinoError(f"model.lora.target_modules must be a list of module names or '{ALL_LINEAR}', "
                             f"got '{targets}'")
    elif not targets or not all(t.strip() for t in targets):
        raise RlinoError(f"model.lora.target_modules must name at least one module, got {targets!r}")


def check_config(cfg: Config) -> None:
    """Every range and choice of the run settings that can be checked before anything is loaded."""
    t, s, e = cfg.train, cfg.sampling, cfg.eval
    for key, value in (("train.steps", t.steps), ("train.prompts_per_step", t.prompts_per_step),
                       ("train.group_size", t.group_size), ("train.micro_batch_size", t.micro_batch_size),
                       ("sampling.max_new_tokens", s.max_new_tokens), ("sampling.batch_size", s.batch_size)):
        if value < 1:
            raise RlinoError(f"{key} must be >= 1, got {value}")
    for key, value in (("train.save_every", t.save_every), ("train.warmup_steps", t.warmup_steps),
                       ("eval.every", e.every), ("eval.num_items", e.num_items), ("eval.max_new_tokens",
                       e.max_new_tokens), ("train.keep_checkpoints", t.keep_checkpoints)):
        if value < 0:
            raise RlinoError(f"{key} must be >= 0, got {value}")
    if t.learning_rate <= 0:
        raise RlinoError(f"train.learning_rate must be > 0, got {t.learning_rate}")
    if t.lr_schedule not in LR_SCHEDULES:
        raise RlinoError(f"train.lr_schedule must be constant, linear or cosine, got '{t.lr_schedule}'")
    if s.temperature <= 0:
        raise RlinoError(f"sampling.temperature must be > 0 for training (0 would sample G identical responses), "
                         f"got {s.temperature}")
    if s.engine not in ENGINES:
        raise RlinoError(f"sampling.engine must be one of {', '.join(ENGINES)}, got '{s.engine}'")
    if not 0 < s.top_p <= 1 or not 0 < e.top_p <= 1:
        raise RlinoError("sampling.top_p and eval.top_p must be in (0, 1]")
    check_autocast(cfg.model.autocast)
    if s.autocast != "model":
        check_autocast(s.autocast, "sampling.autocast (or `model`)")
    check_lora(cfg.model.lora)
    check_sharding(cfg)
    check_critic(cfg.critic)
    check_report_to(t.report_to)
    check_chat_template(cfg.task.chat_template)


def check_sharding(cfg: Config) -> None:
    """train.sharding: a known choice, and not with LoRA (its trained state is small; its frozen base is shared)."""
    if cfg.train.sharding not in SHARDINGS:
        raise RlinoError(f"train.sharding must be one of {', '.join(SHARDINGS)}, got '{cfg.train.sharding}'")
    if cfg.train.sharding == "fsdp" and cfg.model.lora.rank > 0:
        raise RlinoError(f"train.sharding = 'fsdp' is for full fine-tuning; with LoRA (model.lora.rank = "
                         f"{cfg.model.lora.rank}) use train.sharding = 'none' (data parallel: the adapters and their "
                         f"AdamW state are small, and PEFT's adapters inside FSDP2 units are not supported here)")


def check_chat_template(value: object) -> None:
    if not (isinstance(value, bool) or value == "auto"):
        raise RlinoError(f"task.chat_template must be false, true or \"auto\", got {value!r}")


CRITIC_KL = ("reward", "loss")


def check_critic(c: CriticConfig) -> None:
    """Ranges of the [critic] settings (whether the method has a critic is the trainer's check)."""
    for key, value in (("critic.gamma", c.gamma), ("critic.lam", c.lam)):
        if not 0.0 <= value <= 1.0:
            raise RlinoError(f"{key} must be in [0, 1], got {value}")
    if c.learning_rate is not None and c.learning_rate <= 0:
        raise RlinoError(f"critic.learning_rate must be > 0 (or unset: 10 × train.learning_rate), "
                         f"got {c.learning_rate}")
    if c.warmup_steps < 0 or c.value_clip < 0:
        raise RlinoError("critic.warmup_steps and critic.value_clip must be >= 0")
    if c.kl not in CRITIC_KL:
        raise RlinoError(f"critic.kl must be 'reward' or 'loss', got '{c.kl}'")


def changed_critic_keys(cfg: Config) -> list[str]:
    """The [critic] keys set to something other than their defaults (an error on a method without a critic)."""
    default = CriticConfig()
    return [f"critic.{f.name}" for f in dataclasses.fields(CriticConfig)
            if getattr(cfg.critic, f.name) != getattr(default, f.name)]
