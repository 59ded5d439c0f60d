"""`rlino plan CONFIG`: the memory a run needs, from its config and the model's config.json (no weights loaded).

The arithmetic is in `plan_memory`; this module reads the run (or every arm of a compare config), finds the model's
config.json (a local folder, the Hugging Face cache, or an embedded model), prints the table and, given
`--gpu-memory`, says whether it fits and which settings to change when it does not.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import torch

from rlino.compare import load_run_or_compare
from rlino.config import Config, sampling_autocast
from rlino.errors import RlinoError
from rlino.gguf import gguf_config, is_gguf
from rlino.models import looks_local, precision, resolve_dtype
from rlino.objectives import resolve_method
from rlino.plan_memory import (
    FAMILY,
    GIB,
    Arch,
    Setup,
    arch_from_config,
    count_params,
    estimate,
    lora_params,
)

DEFAULT_PROMPT_TOKENS = 256
"""Prompt length assumed without --prompt-tokens (the paper's GSM8K and Countdown prompts are 100-250 tokens)."""


def parse_memory(text: str) -> int:
    """`24GiB`, `24G`, `80` (GiB), `80GB` (10^9 bytes) or `512MiB` as bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(gib|gb|g|mib|mb|m|tib|tb|t)?\s*", text.lower())
    if not m:
        raise RlinoError(f"--gpu-memory: expected a size such as 24GiB, 80GB or 80 (GiB), got '{text}'")
    unit = {None: GIB, "gib": GIB, "g": GIB, "gb": 10 ** 9, "mib": 2 ** 20, "m": 2 ** 20, "mb": 10 ** 6,
            "tib": 1024 * GIB, "t": 1024 * GIB, "tb": 10 ** 12}[m.group(2)]
    return int(float(m.group(1)) * unit)


def load_runs(path: str, overrides: list[str]) -> list[tuple[str, Config]]:
    """(name, config) of the run, or of every arm of a compare config (a `[compare]` table)."""
    shared, arms = load_run_or_compare(path, overrides)
    return [(arm.name, arm.config(shared)) for arm in arms] or [(shared.method.name, shared)]


def _embedded_config(name: str) -> dict:
    from rlino.embedded import TINY
    from rlino.embedded.byte_qwen2 import SPECIAL_TOKENS
    from rlino.embedded.countdown_base import RECIPE

    short = name.removeprefix("embedded:").partition("@")[0]
    if short == "tiny":
        sizes = dict(TINY)
    elif short == "countdown":
        sizes = dict(hidden_size=RECIPE.hidden_size, intermediate_size=RECIPE.intermediate_size,
                     num_hidden_layers=RECIPE.num_layers, num_attention_heads=RECIPE.num_heads,
                     num_key_value_heads=RECIPE.num_kv_heads)
    else:
        raise RlinoError(f"unknown embedded model '{name}'")
    return {"model_type": "qwen2", "vocab_size": 256 + len(SPECIAL_TOKENS), "tie_word_embeddings": True, **sizes}


def model_config(name_or_path: str) -> dict:
    """The model's config.json as a dict: from a local folder, the Hugging Face cache (or hub), a `.gguf` file's
    metadata, or an embedded model's sizes."""
    if name_or_path.startswith("embedded:"):
        return _embedded_config(name_or_path)
    if is_gguf(name_or_path):
        return gguf_config(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() or looks_local(name_or_path):
        file = path / "config.json"
        if not file.is_file():
            raise RlinoError(f"no config.json at {file}: model.name_or_path must be a Hugging Face model folder "
                             f"(only config.json is read)")
        return json.loads(file.read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(name_or_path, "config.json")).read_text())
    except Exception as e:  # offline without a cached copy, unknown repo, no network
        raise RlinoError(f"could not read config.json of '{name_or_path}' ({type(e).__name__}); point "
                         f"model.name_or_path at a local folder holding it: --set model.name_or_path=DIR") from None


def meta_param_count(raw: dict) -> int:
    """Parameters of any transformers causal LM, instantiated on the meta device (no memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**raw)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def param_count(arch: Arch, raw: dict) -> int:
    return count_params(arch) if arch.model_type in FAMILY else meta_param_count(raw)


def setup_for(cfg: Config, arch: Arch, params: int, gpu: bool, prompt_tokens: int, ranks: int = 1) -> Setup:
    """What sizes the run's memory on one rank of `ranks` (each samples and trains its share of the prompts)."""
    method = resolve_method(cfg.method)
    lora = cfg.model.lora
    adapters = lora_params(arch, lora.rank, lora.target_modules) if lora.rank else 0

    def bf16(mode: str) -> bool:
        return precision(mode, torch.device("cuda" if gpu else "cpu")) == "bf16"

    critic = 0
    if method.has_critic:
        critic_arch = arch_from_config(model_config(cfg.critic.model)) if cfg.critic.model else arch
        head = 0 if critic_arch.tied else critic_arch.vocab * critic_arch.hidden
        critic = count_params(critic_arch) - head + critic_arch.hidden + 1
    rows = -(-cfg.train.prompts_per_step // ranks) * cfg.train.group_size  # this rank's share
    return Setup(params=params + adapters, trainable=adapters or params,
                 param_bytes=resolve_dtype(cfg.model.dtype).itemsize,
                 train_bf16=bf16(cfg.model.autocast), sample_bf16=bf16(sampling_autocast(cfg)),
                 reference=method.beta > 0 and not lora.rank, critic_params=critic,
                 gen_batch=min(cfg.sampling.batch_size, rows), micro_batch=min(cfg.train.micro_batch_size, rows),
                 prompt_tokens=prompt_tokens, new_tokens=cfg.sampling.max_new_tokens,
                 group_size=cfg.train.group_size, checkpointing=cfg.train.gradient_checkpointing, gpu=gpu,
                 ranks=ranks, sharded=cfg.train.sharding == "fsdp" and ranks > 1)


def _largest(lo: int, hi: int, fits) -> int:
    """The largest value in [lo, hi] for which `fits` holds (lo when none does); fits is monotone decreasing."""
    best = lo
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def advice(arch: Arch, s: Setup, budget: int) -> tuple[list[tuple[str, float]], bool]:
    """The settings to change, in the order tried (least intrusive first), each with the peak after it (GiB), and
    whether the run then fits. A change is kept only when it lowers the peak."""
    steps: list[tuple[str, float]] = []

    def peak(x: Setup) -> int:
        return estimate(arch, x)["peak"]

    def phase(x: Setup, name: str) -> int:
        return estimate(arch, x)["phase_peak"][name]

    fsdp = ("train.sharding=fsdp", lambda x: None if x.sharded or x.ranks < 2 or x.trainable != x.params
             else replace(x, sharded=True))
    knobs = [
        ("train.gradient_checkpointing=true", lambda x: None if x.checkpointing else replace(x, checkpointing=True)),
        ("train.micro_batch_size", lambda x: replace(x, micro_batch=_largest(
            1, x.micro_batch, lambda b: phase(replace(x, micro_batch=b), "training") <= budget))),
        ("sampling.batch_size", lambda x: replace(x, gen_batch=_largest(
            1, x.gen_batch, lambda b: phase(replace(x, gen_batch=b), "sampling") <= budget))),
        ("model.autocast=bf16", lambda x: None if x.train_bf16 else replace(x, train_bf16=True, sample_bf16=True)),
        fsdp,
        ("model.lora.rank=16", lambda x: None if x.trainable != x.params or x.sharded else replace(
            x, trainable=lora_params(arch, 16, "all-linear"), reference=False)),
        ("model.dtype=bfloat16", lambda x: None if x.param_bytes == 2 else replace(x, param_bytes=2)),
    ]
    if base_and_static(arch, s) > budget:  # no smaller batch helps: the state itself must be split (or shrunk)
        knobs.insert(0, knobs.pop(knobs.index(fsdp)))
    for name, turn in knobs:
        if peak(s) <= budget:
            break
        new = turn(s)
        if new is None or peak(new) >= peak(s):
            continue
        if name == "train.micro_batch_size":
            name = f"{name}={new.micro_batch}"
        elif name == "sampling.batch_size":
            name = f"{name}={new.gen_batch}"
        s = new
        steps.append((name, peak(s) / GIB))
    return steps, peak(s) <= budget


def base_and_static(arch: Arch, s: Setup) -> int:
    est = estimate(arch, s)
    return est["base"] + sum(est["static"].values())


def plan(config: str, overrides: list[str] | None = None, *, device: str | None = None,
         gpu_memory: str | None = None, prompt_tokens: int | None = None, world_size: int = 1) -> dict:
    """The plan of every run in `config` (one, or a compare's arms), worst arm first, as a JSON-ready dict; the
    memory of one rank of `world_size`."""
    if world_size < 1:
        raise RlinoError(f"--world-size must be >= 1, got {world_size}")
    runs = load_runs(config, list(overrides or []))
    budget = parse_memory(gpu_memory) if gpu_memory is not None else None
    if prompt_tokens is not None and prompt_tokens < 1:
        raise RlinoError(f"--prompt-tokens must be >= 1, got {prompt_tokens}")
    out = []
    for name, cfg in runs:
        target = device or ("cpu" if cfg.model.device == "cpu" else "cuda")
        raw = model_config(cfg.model.name_or_path)
        arch = arch_from_config(raw)
        s = setup_for(cfg, arch, param_count(arch, raw), target != "cpu", prompt_tokens or DEFAULT_PROMPT_TOKENS,
                      world_size)
        est = estimate(arch, s)
        rows = cfg.train.prompts_per_step * cfg.train.group_size
        est.update(run=name, world_size=world_size, sharding=cfg.train.sharding, model=cfg.model.name_or_path,
                   arch=arch.__dict__, device=target,
                   prompt_tokens_assumed=prompt_tokens is None, dtype=cfg.model.dtype,
                   responses_per_step=rows, tokens_per_step=rows * (s.prompt_tokens + s.new_tokens),
                   response_tokens_per_step=rows * s.new_tokens)
        if budget is not None:
            steps, fits_after = advice(arch, s, budget)
            est.update(budget=budget, fits=est["peak"] <= budget, advice=[{"set": k, "peak_gib": round(v, 2)}
                                                                          for k, v in steps],
                       fits_after_advice=fits_after)
        out.append(est)
    out.sort(key=lambda e: -e["peak"])
    return {"config": str(config), "runs": out}


def _gib(n: float) -> str:
    return f"{n / GIB:8.2f}"


def render(result: dict) -> str:
    """The plan as a readable table (the worst arm in full, the other arms' peaks in one line each)."""
    e = result["runs"][0]
    s, a = e["setup"], e["arch"]
    prec = lambda bf16: "bf16 autocast" if bf16 else "no autocast"  # noqa: E731
    prompt = f"{s['prompt_tokens']} prompt" + (" (assumed; --prompt-tokens N)" if e["prompt_tokens_assumed"] else "")
    lines = [f"rlino plan: {result['config']}" + (f" (arm '{e['run']}', the largest)" if len(result["runs"]) > 1
                                                  else "") + f", on {e['device']}",
             f"model        {e['model']} ({a['model_type']}, {a['layers']} layers, hidden {a['hidden']}, vocab "
             f"{a['vocab']}{', tied' if a['tied'] else ''})",
             f"parameters   {s['params']:,} ({s['trainable']:,} trained), {e['dtype']}; "
             f"training {prec(s['train_bf16'])}, sampling {prec(s['sample_bf16'])}",
             *([f"ranks        {s['ranks']}, " + ("FSDP: static state per rank is 1/" + str(s['ranks'])
                                                  if s['sharded'] else "data parallel: every rank holds it all")
                + f"; memory of one rank ({-(-e['responses_per_step'] // s['ranks'])} rows or fewer)"]
               if s['ranks'] > 1 else []),
             f"tokens/step  {e['responses_per_step']} responses x ({prompt} + {s['new_tokens']} new) = "
             f"{e['tokens_per_step']:,} ({e['response_tokens_per_step']:,} response tokens)",
             "", f"{'':47}{'GiB':>8}"]
    labels = {"weights": "policy weights", "reference": "reference model", "gradients": "gradients",
              "optimizer": "AdamW state (2 moments)", "critic": "critic (weights, grads, AdamW)",
              "kv_cache": f"KV cache ({s['gen_batch']} seqs x {s['prompt_tokens'] + s['new_tokens']})",
              "sampling_transient": "decode / prefill transients",
              "activations": f"activations (micro-batch {s['micro_batch']}"
                             f"{', checkpointed' if s['checkpointing'] else ''})",
              "logits": "logits + fp32 log-softmax", "autocast_weight_copies": "autocast bf16 weight copies",
              "gathered_weights": "FSDP: whole policy gathered", "gathered_layers": "FSDP: root + 2 layers gathered"}
    for section in ("static", "sampling", "training"):
        for i, (key, value) in enumerate(e[section].items()):
            lines.append(f"{section if i == 0 else '':13}{labels[key]:<34}{_gib(value)}")
    other = "with" if not s["checkpointing"] else "without"
    lines += [f"{'':13}{'(these three ' + other + ' checkpointing:':<34}{_gib(e['training_other_checkpointing'])})",
              f"{'base':13}{'CUDA context' if e['device'] != 'cpu' else 'python + torch + transformers':<34}"
              f"{_gib(e['base'])}",
              f"{'peak':13}{'sampling phase':<34}{_gib(e['phase_peak']['sampling'])}",
              f"{'':13}{'training phase':<34}{_gib(e['phase_peak']['training'])}",
              f"{'':13}{'optimizer step (AdamW temporaries)':<34}{_gib(e['phase_peak']['optimizer'])}",
              f"{'':13}{'run peak (' + e['peak_phase'] + ')':<34}{_gib(e['peak'])}"]
    for other_run in result["runs"][1:]:
        lines.append(f"{'':13}{'arm ' + other_run['run']:<34}{_gib(other_run['peak'])}")
    if "budget" in e:
        lines += ["", _verdict(e)]
    return "\n".join(lines)


def _verdict(e: dict) -> str:
    budget = e["budget"] / GIB
    if e["fits"]:
        return f"fits in {budget:.1f} GiB ({e['peak'] / GIB:.1f} GiB needed, {budget - e['peak'] / GIB:.1f} to spare)"
    steps = "".join(f"\n  --set {a['set']:<36} -> {a['peak_gib']:.1f} GiB" for a in e["advice"])
    more = "" if e["setup"]["sharded"] else ", or more GPUs with train.sharding=fsdp (plan with --world-size N)"
    tail = "" if e["fits_after_advice"] else f"\n  still does not fit: a larger GPU{more}, or shorter max_new_tokens"
    return (f"does NOT fit in {budget:.1f} GiB ({e['peak'] / GIB:.1f} GiB needed, {e['peak_phase']} phase); "
            f"turn:{steps}{tail}")


def to_json(result: dict) -> str:
    return json.dumps(copy.deepcopy(result), indent=2)
