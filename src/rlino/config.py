"""The typed run configuration: seven sections of plain values with documented defaults.

A config is a TOML file whose tables are the sections below; any key can be overridden from the command line with
`--set section.key=value` (the value is read as TOML, and as a plain string when it is not valid TOML). A section can
hold a nested table (`[model.lora]`, overridden as `--set model.lora.rank=8`). Unknown keys and wrong types are errors
that name the key, the expected type and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from rlino.errors import RlinoError, did_you_mean
from rlino.files import read_toml
from rlino.typed import Mismatch, coerce, type_name

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""The attention and MLP projections of Qwen2/Llama-style models: the default `model.lora.target_modules`."""


@dataclass
class LoraConfig:
    rank: int = 0
    """LoRA rank r; 0 (the default) trains every weight. > 0 trains rank-r adapters (PEFT) on `target_modules`."""
    alpha: float | None = None
    """LoRA scale numerator: the update is (alpha / rank) · B·A. Unset: 2 × rank (a scale of 2 at every rank)."""
    dropout: float = 0.0
    """Dropout on the adapters' input during training (0 keeps the update deterministic given the batch)."""
    target_modules: list[str] | str = field(default_factory=lambda: list(LORA_TARGETS))
    """Module names (suffixes) that get adapters, or `all-linear` (every linear layer but the output head, as PEFT
    reads it). Default: `LORA_TARGETS`."""


@dataclass
class ModelConfig:
    name_or_path: str = "embedded:tiny"
    """A hub id, a local Hugging Face model folder, or `embedded:tiny` (a small random model built locally)."""
    dtype: str = "float32"
    """Parameter dtype: `float32` (the default everywhere, and the only one exactness is tested in), `bfloat16`,
    `float16`."""
    device: str = "auto"
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:N`."""
    autocast: str = "auto"
    """Mixed precision of the forward/backward passes (and of sampling, unless sampling.autocast says otherwise):
    `auto` (bf16 autocast on CUDA, none on CPU, also where the CPU has native bf16: docs/performance.md), `bf16`,
    or `off`. Parameters, optimizer state and the loss stay in `dtype`."""
    add_bos: bool | None = None
    """Unset: prompts get a BOS token where the tokenizer's own rule puts one (raw text) or as the chat template
    writes it. `true`: exactly one BOS token first; `false`: none. For tokenizers whose rule is wrong."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """The `[model.lora]` table: train low-rank adapters instead of every weight (rank 0, the default, = no LoRA)."""


@dataclass
class TaskConfig:
    name: str = "countdown"
    """`countdown`, `gsm8k`, or a custom task as `package.module:factory`."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the task (e.g. `num_numbers`, `prompt_template`); each task documents its own."""
    chat_template: bool | str = False
    """How prompts reach the model: `false` (raw text, the paper's setting), `true` (the tokenizer's chat template,
    a user turn with the generation prompt added), or `"auto"` (the template when the tokenizer has one)."""
    system_prompt: str = ""
    """A system turn before each prompt (needs the chat template; empty = none)."""


@dataclass
class MethodConfig:
    name: str = "grpo"
    """A row of the methods table: grpo, grpo_no_kl, dr_grpo, dapo, fisft_pos_neg, fisft_pos, fisft_neg, fisft_adv,
    rloo, raft_pp, reinforce_rej, ppo, nft, psr, nsr, w_reinforce (README, "Methods"; details in docs/guide.md)."""
    weights: str | None = None
    """Override the row's weights: group-norm, group-center, leave-one-out, pos-neg-mixed, miss-rate, pos-neg, pos,
    neg, or gae (per token from a critic, configured in [critic]). Unset: the row's."""
    aggregation: str | None = None
    """Override the row's aggregation: seq-mean-token-mean, token-mean, seq-mean-token-sum-norm. Unset: the row's."""
    clip: bool | None = None
    """Override whether the loss goes through the clipped importance ratio. Unset: the row's."""
    clip_eps: float | None = None
    """Lower (and, unless clip_eps_high is set, upper) clip range. Unset: the row's (0.2)."""
    clip_eps_high: float | None = None
    """Upper clip range (DAPO's clip-higher). Unset: the row's (clip_eps, or 0.28 for dapo)."""
    beta: float | None = None
    """KL coefficient to the frozen reference model (k3 estimator). Unset: the row's (0.04 for grpo, else 0)."""
    epochs_per_batch: int = 1
    """Passes over each sampled batch; > 1 makes the importance ratio move away from 1."""
    mini_batches: int | None = None
    """PPO mini-batches: each pass splits the step's prompt groups into this many parts, one optimizer step each
    (verl's train_batch_size / ppo_mini_batch_size); > 1 makes the ratio move from the second part. Unset: the row's
    (4 for psr, nsr, w_reinforce as their authors ran them; 1 for the others)."""
    neg_weight: float = 1.0
    """Magnitude of the weight on wrong responses for the fixed-weight F-ISFT rows (pos-neg, neg)."""
    pos_weight: float | None = None
    """W-REINFORCE's λ, the weight on correct responses of the weights 'pos-neg', in (0, 1]. Unset: the row's (0.1
    for w_reinforce, 1 for fisft_pos_neg); an error on rows whose weights do not read it."""
    std: str = "sample"
    """Group std in the group-norm weights: `sample` (unbiased, as TRL and verl) or `population` (the paper's)."""
    adv_eps: float = 1e-4
    """Added to the group std so all-correct and all-wrong groups get weight 0 instead of 0/0."""
    term: str | None = None
    """Override the row's per-token term: `policy-gradient` (−A·ρ̃) or `nft` (NFT's). Unset: the row's."""


@dataclass
class CriticConfig:
    """The learned value function of methods with a critic (`ppo`); an error on any other method when changed."""

    model: str | None = None
    """Where the critic's backbone comes from: unset = a copy of the policy's initial model (model.name_or_path),
    or another hub id / folder / `embedded:NAME` with the same tokenizer. A linear value head sits on its last
    hidden state."""
    learning_rate: float | None = None
    """The critic's AdamW learning rate (its own optimizer; train.lr_schedule and warm-up apply). Unset:
    10 × train.learning_rate (verl's defaults are 1e-5 for the critic, 1e-6 for the actor)."""
    warmup_steps: int = 0
    """The first N steps train only the critic, the policy frozen (verl's critic_warmup)."""
    gamma: float = 1.0
    """Discount γ of GAE, in [0, 1]."""
    lam: float = 0.95
    """λ of GAE, in [0, 1]: 1 = Monte Carlo returns minus the value (no bias, most variance), 0 = one-step TD."""
    whiten: bool = True
    """Normalise the advantages to mean 0, std 1 over the step's tokens (verl's and TRL's default)."""
    value_clip: float = 0.5
    """ε_v of the clipped value loss (verl's cliprange_value); 0 turns the clip off."""
    kl: str = "reward"
    """Where the KL to the reference goes when method.beta > 0: `reward` (−β·kl per token in the reward, classic
    RLHF PPO) or `loss` (the k3 term in the loss, as the GRPO rows)."""


@dataclass
class TrainConfig:
    steps: int = 100
    """Optimizer steps (each on a freshly sampled batch, times epochs_per_batch)."""
    prompts_per_step: int = 8
    """Prompts drawn per step; a step samples prompts_per_step x group_size responses."""
    group_size: int = 8
    """Responses sampled per prompt (G)."""
    learning_rate: float = 1e-6
    """Peak learning rate of AdamW."""
    lr_schedule: str = "constant"
    """After warm-up: `constant`, `linear` (decay to 0) or `cosine` (decay to 0)."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to the peak learning rate over this many optimizer steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    """Gradient clipping by global L2 norm; 0 disables it."""
    sharding: str = "none"
    """Under torchrun with several processes: `none` (data parallel: every rank holds the whole model, gradients
    summed) or `fsdp` (PyTorch's FSDP2 per decoder layer: each rank holds 1/N of the weights, gradients and AdamW
    state of the policy, the reference and the critic; bf16 compute when training resolves to bf16). The same
    update either way; one process has nothing to shard. Not with LoRA."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them (less memory, about 30% more time)."""
    micro_batch_size: int = 16
    """Responses per forward/backward pass; the update does not depend on it (losses use whole-step normalisers)."""
    seed: int = 0
    """Seeds prompt order, sampling noise and model initialisation of embedded models."""
    save_every: int = 50
    """Checkpoint every N steps (and always at the last step); 0 saves only at the end."""
    keep_checkpoints: int = 2
    """Number of most recent checkpoints kept; 0 keeps all."""
    log_samples: int = 4
    """Responses per step written to samples.jsonl."""
    warn_zero_std_steps: int = 3
    """Warn when every group has zero reward variance for this many steps in a row."""
    report_to: list[str] = field(default_factory=list)
    """Trackers that get each step's metrics beside metrics.jsonl: any of `tensorboard`, `wandb`, `trackio`."""


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    """Sampling temperature; training log-probs are computed from logits / temperature, as in TRL and verl."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 256
    """Maximum response length in tokens; longer responses are truncated (and counted in truncated_frac)."""
    batch_size: int = 64
    """Sequences generated together; the responses sampled do not depend on it (noise is counter-based)."""
    engine: str = "auto"
    """The decode step of sampling and evaluation: `auto` (`lean` where it covers the model, else `hf`), `hf` (the
    model's own forward) or `lean` (`rlino.engine`, Qwen2 / Llama / Mistral; docs/performance.md)."""
    autocast: str = "model"
    """Mixed precision of sampling and held-out evaluation: `model` (the same as model.autocast), `auto`, `bf16` or
    `off`. A choice apart from training's because bf16 sampling changes which tokens are drawn (the sampler and the
    learner then see slightly different policies)."""


@dataclass
class EvalConfig:
    every: int = 50
    """Evaluate on held-out items every N steps (and at the last step); 0 disables evaluation."""
    num_items: int = 200
    """Held-out items evaluated (from the task's test split)."""
    temperature: float = 0.0
    """0 = greedy decoding; > 0 samples one response per item."""
    top_p: float = 1.0
    max_new_tokens: int = 0
    """0 = sampling.max_new_tokens."""
    log_samples: int = 5
    """Responses per evaluation written to eval_samples.jsonl (the first held-out items)."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _section_types() -> dict[str, dict[str, Any]]:
    hints = typing.get_type_hints(Config)
    return {name: typing.get_type_hints(cls) for name, cls in hints.items()}


def _is_section(expected: Any) -> bool:
    """Whether a key's type is itself a table of keys (a nested dataclass such as `model.lora`)."""
    return isinstance(expected, type) and dataclasses.is_dataclass(expected)


def _check_type(key: str, value: Any, expected: Any) -> Any:
    """Return `value` converted to `expected` where that is lossless (int -> float), else raise RlinoError."""
    try:
        return coerce(value, expected)
    except Mismatch:
        raise RlinoError(f"config key '{key}' expects {type_name(expected)}, got {type(value).__name__} "
                         f"{value!r}") from None


def _fill(target: Any, values: Any, prefix: str, where: str) -> None:
    """Set the keys of the dataclass `target` from a dict, recursing into nested sections (`model.lora`)."""
    if not isinstance(values, dict):
        raise RlinoError(f"{where}: '{prefix}' must be a table of keys, got {values!r}")
    hints = typing.get_type_hints(type(target))
    for key, value in values.items():
        full = f"{prefix}.{key}"
        if key not in hints:
            valid = [f"{prefix}.{k}" for k in hints]
            raise RlinoError(f"{where}: unknown config key '{full}'{did_you_mean(full, valid)}")
        if _is_section(hints[key]):
            _fill(getattr(target, key), value, full, where)
        else:
            setattr(target, key, _check_type(full, value, hints[key]))


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build a Config from nested dicts (a parsed TOML file), checking every key and type, nested tables too."""
    types_ = _section_types()
    cfg = Config()
    for section, values in data.items():
        if section not in types_:
            raise RlinoError(f"{where}: unknown config section '{section}'{did_you_mean(section, types_)}")
        _fill(getattr(cfg, section), values, section, where)
    return cfg


def parse_value(text: str) -> Any:
    """Read a `--set` value as TOML (so 1e-4, true, [1, 2] and "x" work), else keep it as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` (or `section.key.sub=value` for dict keys like task.options) to nested dicts."""
    for item in overrides:
        if "=" not in item:
            raise RlinoError(f"--set expects section.key=value, got '{item}'")
        path, _, raw = item.partition("=")
        parts = path.strip().split(".")
        if len(parts) < 2:
            raise RlinoError(f"--set expects section.key=value, got '{item}'")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RlinoError(f"--set {path}: '{part}' is not a table")
        node[parts[-1]] = parse_value(raw.strip())
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML config (or start from the defaults when `path` is None) and apply `--set` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        data, where = read_toml(path, missing="config file not found"), str(path)
    apply_overrides(data, overrides or [])
    return config_from_dict(data, where)


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Nested dicts of the config, unset optional keys left out (TOML has no null), so it loads back the same."""
    return _drop_none(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(tomli_w.dumps(config_to_dict(cfg)))


# ---- values derived from several keys -------------------------------------------------------------------------------

def eval_max_new_tokens(cfg: Config) -> int:
    """The response cap of held-out evaluation: eval.max_new_tokens, or sampling.max_new_tokens when it is 0."""
    return cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens


def sampling_autocast(cfg: Config) -> str:
    """The autocast mode of sampling and evaluation: sampling.autocast, or model.autocast when it says `model`."""
    return cfg.model.autocast if cfg.sampling.autocast == "model" else cfg.sampling.autocast
