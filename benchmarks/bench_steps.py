#!/usr/bin/env python
"""Step time of rlino against TRL's GRPOTrainer on the same work, and what each method's step costs.

    .venv-bench/bin/python benchmarks/bench_steps.py --threads 1    # both model sizes, ~7 min (docs/performance.md)
    .venv-bench/bin/python benchmarks/bench_steps.py --quick        # the ~1M model only, fewer rounds

TRL is a benchmark-only extra (`pip install -e .[bench]`); without it, pass `--no-trl` to run the rlino rows only.
`--threads` (torch threads per worker) defaults to every core; on a machine that other jobs keep busy, use 1.

The work of a step, the same for every contender: 4 prompts x 8 responses, 128 new tokens each, temperature 1.0,
top-p 1.0, on the CPU in fp32 (and, for the `bf16` rows, under bf16 autocast with fp32 weights and optimizer
state: TRL's `bf16=True`), one AdamW update (lr 1e-5, gradient clipping at 1.0) on all 32 responses in
micro-batches of 16, no gradient checkpointing, no vLLM. The models are random Qwen2-architecture models with the
byte tokenizer, built locally: `1m` (hidden 128, 4 layers, ~1.0M parameters) and `30m` (hidden 512, 8 layers,
~31.6M parameters). Their end-of-sequence logit is held ~100 below every other logit (see `never_stop_`), so no
contender stops a response early: every response is exactly 128 tokens, and the table shows the tokens each
contender really sampled.

Each contender runs in its own worker process (one per contender and model size, kept alive across rounds, so
imports and model loading are not timed and each process's peak RSS is its own). The parent interleaves them
step by step: for each round, each contender runs `steps` steps, in an order rotated every round; step times are
reported as medians over all timed steps and ratios as the median over rounds of the paired (same-round) ratio, so
that a background load that drifts during the run hits both sides of a ratio alike.

The split of a step (sample, score, ref/old log-probs, forward-backward, optimizer, other) is measured the same
way on both sides, by timing the library functions that do each part (wrappers installed in the worker; neither
library is changed):
  rlino  sample = rollout.sample, score = the verifier over the step's responses, ref = reference log-probs
         (no-grad token_logprobs), optimizer = clip_grad_norm_ + AdamW step + scheduler step,
         forward-backward = the rest of the update (policy forward, loss, backward);
  TRL    sample = GRPOTrainer._generate (tokenise, model.generate, decode), score = _calculate_rewards,
         ref = no-grad _get_per_token_logps_and_entropies, optimizer = _clip_grad_norm + optimizer.step,
         forward-backward = training_step minus _prepare_inputs; other = the rest of the step
         (advantages, padding, bookkeeping).

Model FLOPs: 2·N per token for a forward (prefill and sampled tokens), 6·N for forward+backward, with N the
parameter count (the tied embedding counted once, as the output projection); attention-score FLOPs are left out.
MFU = model FLOP/s over the matrix-multiply rate measured here (torch.mm, n = 1024 and 2048, the best), once against
the fp32 rate and once against the bf16 rate.

rlino's rows sample with the lean decode step (`sampling.engine = "lean"`) except `rlino grpo hf`, the model's own
forward; `hf generate` is `model.generate` with its dynamic cache, `hf generate static` with
`cache_implementation="static"`. The sampling ratios divide rlino's sampling time by `generate`'s time for the same
32 x 128 tokens in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ---- the work of one step (the same for every contender) ------------------------------------------------------
PROMPTS_PER_STEP = 4
GROUP_SIZE = 8
MAX_NEW_TOKENS = 128
MICRO_BATCH = 16
LEARNING_RATE = 1e-5
SEED = 0
NUM_ITEMS = 64
TEMPERATURE = 1.0
TOP_P = 1.0

SIZES: dict[str, dict[str, int]] = {
    "1m": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
               num_key_value_heads=2),
    "30m": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4),
}
EOS_MARGIN = 8.0
"""The end-of-sequence token's embedding is -EOS_MARGIN on the one hidden unit held constant (see never_stop_)."""


@dataclass(frozen=True)
class Contender:
    name: str
    side: str  # rlino, trl, generate
    method: str | None = None
    beta: float = 0.0
    precision: str = "fp32"  # fp32, or bf16 autocast (fp32 weights and optimizer state) for training and sampling
    engine: str = "lean"  # rlino's sampling.engine; for `generate`, the cache: dynamic or static


CONTENDERS = [
    Contender("rlino grpo", "rlino", "grpo", 0.04),
    Contender("rlino grpo hf", "rlino", "grpo", 0.04, engine="hf"),
    Contender("rlino grpo b=0", "rlino", "grpo", 0.0),
    Contender("rlino fisft_pos_neg", "rlino", "fisft_pos_neg", 0.0),
    Contender("rlino fisft_pos", "rlino", "fisft_pos", 0.0),
    Contender("rlino grpo bf16", "rlino", "grpo", 0.04, precision="bf16"),
    Contender("trl grpo", "trl", "grpo", 0.04),
    Contender("trl grpo b=0", "trl", "grpo", 0.0),
    Contender("trl grpo bf16", "trl", "grpo", 0.04, precision="bf16"),
    Contender("hf generate", "generate", engine="dynamic"),
    Contender("hf generate static", "generate", engine="static"),
    Contender("hf generate bf16", "generate", precision="bf16", engine="dynamic"),
]
BY_NAME = {c.name: c for c in CONTENDERS}

# how many rounds (after `warmup` untimed ones) and steps per round each size gets in the full run / --quick
PLANS = {
    # the 30M model gets no untimed warm-up step (one TRL step is ~30 s): its first step is timed, and the JSON
    # keeps every step's time so the first can be compared with the second
    "full": {"1m": dict(warmup=1, rounds=5, steps=2), "30m": dict(warmup=0, rounds=2, steps=1)},
    "quick": {"1m": dict(warmup=1, rounds=3, steps=1)},
}

# (numerator, denominator, target): the ratios the issue sets targets on, and the comparisons reported with them;
# step times, except SAMPLE_RATIOS: the numerator's sampling time over `generate`'s time for the same 32 x 128 tokens
RATIOS = [
    ("rlino grpo", "trl grpo", 0.5),
    ("rlino grpo b=0", "trl grpo b=0", 0.5),
    ("rlino grpo bf16", "trl grpo bf16", 0.5),
    ("rlino grpo hf", "rlino grpo", None),
    ("rlino fisft_pos_neg", "rlino grpo", 0.7),
    ("rlino fisft_pos", "rlino grpo", None),
]
SAMPLE_RATIOS = [
    ("rlino grpo", "hf generate", 0.5),
    ("rlino grpo", "hf generate static", 0.5),
    ("rlino grpo hf", "hf generate", None),
    ("rlino grpo bf16", "hf generate bf16", 0.5),
]


# ---- the task: cheap, deterministic, with reward variance on a random byte-level model --------------------------
@dataclass(frozen=True)
class BenchItem:
    prompt: str
    uid: str


class BenchTask:
    """A response is correct when its first character is ASCII: about half of a random byte model's responses."""

    name = "bench"

    def __init__(self, size: int = NUM_ITEMS):
        self._items = [BenchItem(f"Q{i:02d}: say one word ->", f"bench-{i}") for i in range(size)]

    def items(self, split: str) -> list[BenchItem]:
        return self._items

    def score(self, completion: str, item: Any) -> float:
        return score(completion)


def score(completion: str) -> float:
    return 1.0 if completion[:1].isascii() and completion[:1] != "" else 0.0


def make_task(size: int = NUM_ITEMS) -> BenchTask:
    """The task factory rlino loads as `bench_steps:make_task`."""
    return BenchTask(size)


PROMPT_TOKENS = len(BenchTask().items("train")[0].prompt.encode())
"""Every prompt has the same length in bytes = tokens of the byte tokenizer (so no contender pads prompts)."""


# ---- the two configurations -------------------------------------------------------------------------------------
def rlino_overrides(contender: Contender, model_dir: str | Path) -> list[str]:
    """`section.key=value` overrides of rlino's defaults for a contender (rlino.config.load_config(None, these))."""
    return [
        f"model.name_or_path={model_dir}", "model.device='cpu'", "model.dtype='float32'",
        "task.name='bench_steps:make_task'", "task.options={}",
        f"method.name='{contender.method}'", f"method.beta={contender.beta}", "method.epochs_per_batch=1",
        f"train.prompts_per_step={PROMPTS_PER_STEP}", f"train.group_size={GROUP_SIZE}",
        f"train.micro_batch_size={MICRO_BATCH}", f"train.learning_rate={LEARNING_RATE}", "train.lr_schedule='constant'",
        "train.max_grad_norm=1.0", "train.weight_decay=0.0", f"train.seed={SEED}", "train.save_every=0",
        "train.log_samples=0", "train.steps=1000000",
        f"sampling.max_new_tokens={MAX_NEW_TOKENS}", f"sampling.temperature={TEMPERATURE}", f"sampling.top_p={TOP_P}",
        f"sampling.batch_size={PROMPTS_PER_STEP * GROUP_SIZE}", f"sampling.engine='{contender.engine}'",
        f"model.autocast='{'bf16' if contender.precision == 'bf16' else 'off'}'", "sampling.autocast='model'",
        "eval.every=0",
    ]


def trl_config_kwargs(contender: Contender, output_dir: str | Path) -> dict[str, Any]:
    """Keyword arguments of TRL's GRPOConfig for a contender: one optimizer step = one generation of 32."""
    return dict(
        output_dir=str(output_dir), use_cpu=True, bf16=contender.precision == "bf16", fp16=False, seed=SEED,
        data_seed=SEED,
        # 16 completions per micro-batch x 2 accumulation steps = 32 = 4 prompts x 8 generations per optimizer step;
        # steps_per_generation defaults to gradient_accumulation_steps, so one generation feeds exactly one update
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=PROMPTS_PER_STEP * GROUP_SIZE // MICRO_BATCH,
        num_generations=GROUP_SIZE, num_iterations=1, max_completion_length=MAX_NEW_TOKENS,
        temperature=TEMPERATURE, top_p=TOP_P, top_k=0,
        loss_type="grpo", beta=contender.beta, epsilon=0.2, scale_rewards="group",
        mask_truncated_completions=False,  # every response is 128 tokens with no EOS: all of them are trained on
        learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        gradient_checkpointing=False, use_vllm=False,
        report_to=[], logging_strategy="no", save_strategy="no", eval_strategy="no", disable_tqdm=True,
        log_completions=False, max_steps=1_000_000, dataloader_num_workers=0, remove_unused_columns=False,
    )


def work_per_step(contender: Contender, model_dir: str | Path = "MODEL", output_dir: str | Path = "OUT") -> dict:
    """Prompts, responses and the new-token budget of one step, read back from the contender's configuration."""
    if contender.side == "rlino":
        from rlino.config import load_config

        cfg = load_config(None, rlino_overrides(contender, model_dir))
        return dict(prompts=cfg.train.prompts_per_step, responses=cfg.train.prompts_per_step * cfg.train.group_size,
                    max_new_tokens=cfg.sampling.max_new_tokens, temperature=cfg.sampling.temperature,
                    top_p=cfg.sampling.top_p, optimizer_steps=cfg.method.epochs_per_batch)
    if contender.side == "trl":
        kw = trl_config_kwargs(contender, output_dir)
        # TRL: the generation batch is per_device_train_batch_size x steps_per_generation (= gradient accumulation
        # steps by default), on one process; each prompt is repeated num_generations times
        responses = kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"]
        return dict(prompts=responses // kw["num_generations"], responses=responses,
                    max_new_tokens=kw["max_completion_length"], temperature=kw["temperature"], top_p=kw["top_p"],
                    optimizer_steps=kw["num_iterations"])
    return dict(prompts=PROMPTS_PER_STEP, responses=PROMPTS_PER_STEP * GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS,
                temperature=TEMPERATURE, top_p=TOP_P, optimizer_steps=0)


def step_prompts(step: int) -> list[str]:
    """The hf-generate contender's batch for a step: 4 prompts x 8, groups adjacent (as both trainers lay it out)."""
    items = BenchTask().items("train")
    chosen = [items[(step * PROMPTS_PER_STEP + k) % len(items)] for k in range(PROMPTS_PER_STEP)]
    return [it.prompt for it in chosen for _ in range(GROUP_SIZE)]


# ---- the models ---------------------------------------------------------------------------------------------------
def never_stop_(model, eos_id: int) -> None:
    """Make a random model never emit the end-of-sequence token, with its shape and cost unchanged.

    Hidden unit 0 of the residual stream is held at 1: every token embedding has 1 there and no layer writes to it
    (row 0 of every o_proj and down_proj is zero). The EOS embedding is -EOS_MARGIN on unit 0 and 0 elsewhere; the
    output projection is tied to the embedding, so after the final norm the EOS logit sits about
    (1 + EOS_MARGIN) * sqrt(hidden) below every other token's (~100 at hidden 128): probability < 1e-40.
    """
    import torch

    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[:, 0] = 1.0
        emb[eos_id] = 0.0
        emb[eos_id, 0] = -EOS_MARGIN
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0].zero_()
            layer.mlp.down_proj.weight[0].zero_()


def build_model(size: str, folder: str | Path) -> Path:
    """Build the random benchmark model of a size (deterministic, seed 0) into `folder`, once."""
    from rlino.embedded.byte_qwen2 import byte_qwen2
    from rlino.models import save_model

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    model, tokenizer = byte_qwen2(SEED, max_position_embeddings=512, **SIZES[size])
    never_stop_(model, tokenizer.eos_token_id)
    tmp = folder.with_name(folder.name + ".tmp")
    save_model(model, tokenizer, tmp)
    tmp.rename(folder)
    return folder


# ---- measurements shared by the workers ---------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident set size (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux: write 5 to clear_refs), so the peak is the steps' own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def matmul_gflops(threads: int, sizes=(1024, 2048), seconds: float = 0.6) -> dict[str, dict[str, float]]:
    """torch.mm rate in GFLOP/s at n x n, best of a few repeats, in fp32 and in bf16 (native on CPUs with
    AVX-512 BF16 or AMX; emulated, and slow, elsewhere)."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, dict[str, float]] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[name] = {}
        for n in sizes:
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b
            best, t_end = 0.0, time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                a @ b
                best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
            out[name][str(n)] = best
    return out


class Timers:
    """Seconds spent by part since the last `take()`: `add` is rlino's phase hook, `wrap` times TRL's methods."""

    def __init__(self):
        self.t: dict[str, float] = {}

    def add(self, part: str, dt: float) -> None:
        self.t[part] = self.t.get(part, 0.0) + dt

    def wrap(self, fn, part, when=None):
        def timed(*args, **kwargs):
            if when is not None and not when():
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - t0)

        return timed

    def take(self) -> dict[str, float]:
        out, self.t = self.t, {}
        return out


def emit(obj: dict) -> None:
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def read_command() -> dict:
    line = sys.stdin.readline()
    return json.loads(line) if line.strip() else {"op": "quit"}


# ---- workers -------------------------------------------------------------------------------------------------------
def rlino_worker(contender: Contender, model_dir: str, out_dir: str) -> None:
    import torch

    from rlino.config import load_config
    from rlino.trainer import Run

    timers = Timers()  # hears the trainer's phases: sample, score, update (= reference + forward-backward + optimizer)
    run = Run(load_config(None, rlino_overrides(contender, model_dir)), Path(out_dir) / "run", on_phase=timers.add)
    params = sum(p.numel() for p in run.model.parameters())
    step = 0

    def one_step() -> dict:
        nonlocal step
        step += 1
        timers.take()
        t0, c0 = time.perf_counter(), time.process_time()
        result = run.train_step(step)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        phases = timers.take()
        parts = {"sample": phases["sample"], "score": phases["score"], "ref": phases.get("reference", 0.0),
                 "optimizer": phases["optimizer"]}
        parts["fwd_bwd"] = phases["update"] - parts["ref"] - parts["optimizer"]
        parts["other"] = total - sum(parts.values())
        rollout = result.rollout
        counts = dict(responses=int(rollout.completion_mask.shape[0]), tokens=int(rollout.completion_mask.sum()),
                      prompt_tokens=int(rollout.prompt_mask.sum()))
        return dict(step_s=total, cpu_s=cpu, parts=parts, **counts, reward_mean=result.metrics["reward_mean"],
                    grad_norm=result.metrics["grad_norm"])

    serve(one_step, dict(params=params, threads=torch.get_num_threads()))


def generate_worker(contender: Contender, model_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = tok.eos_token_id
    step = 0
    cache = {"cache_implementation": "static"} if contender.engine == "static" else {}

    def one_step() -> dict:
        nonlocal step
        step += 1
        prompts = step_prompts(step)
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=contender.precision == "bf16"):
            out = model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=0,
                                 max_new_tokens=MAX_NEW_TOKENS, pad_token_id=eos, **cache)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        new = out[:, enc["input_ids"].shape[1]:]
        is_eos = (new == eos).long()
        tokens = int(((is_eos.cumsum(dim=1) - is_eos) == 0).sum())  # up to and including a first EOS
        return dict(step_s=dt, cpu_s=cpu, parts={"sample": dt}, responses=int(new.shape[0]), tokens=tokens,
                    prompt_tokens=int(enc["attention_mask"].sum()))

    serve(one_step, dict(params=sum(p.numel() for p in model.parameters()), threads=torch.get_num_threads()))


def serve(one_step, info: dict) -> None:
    """Answer the parent: `{"op": "run", "steps": n}` runs n steps and reports them; `{"op": "quit"}` ends."""
    reset_peak_rss()
    emit({"ready": True, "rss_ready_mb": rss_mb(), **info})
    peak = 0.0
    while True:
        cmd = read_command()
        if cmd["op"] != "run":
            break
        reset_peak_rss()
        records = [one_step() for _ in range(cmd["steps"])]
        peak = max(peak, peak_rss_mb())
        emit({"records": records, "peak_rss_mb": peak})


def trl_worker(contender: Contender, model_dir: str, out_dir: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dataset = Dataset.from_list([{"prompt": it.prompt} for it in BenchTask().items("train")])

    def reward(completions, **kwargs):
        return [score(c) for c in completions]

    args = GRPOConfig(**trl_config_kwargs(contender, Path(out_dir) / "trl"))
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tok)
    timers = Timers()
    counts: dict[str, float] = {}
    real_rewards = trainer._calculate_rewards

    def counted_rewards(inputs, prompts, completions, completion_ids_list):
        t0 = time.perf_counter()
        try:
            return real_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            timers.add("score", time.perf_counter() - t0)
            counts["responses"] = counts.get("responses", 0) + len(completion_ids_list)
            counts["tokens"] = counts.get("tokens", 0) + sum(len(c) for c in completion_ids_list)
            counts["prompt_tokens"] = counts.get("prompt_tokens", 0) + len(prompts) * PROMPT_TOKENS

    trainer._calculate_rewards = counted_rewards
    trainer._generate = timers.wrap(trainer._generate, "sample")
    trainer._get_per_token_logps_and_entropies = timers.wrap(trainer._get_per_token_logps_and_entropies, "ref",
                                                             when=lambda: not torch.is_grad_enabled())
    trainer._prepare_inputs = timers.wrap(trainer._prepare_inputs, "prepare")
    trainer.training_step = timers.wrap(trainer.training_step, "training_step")
    trainer._clip_grad_norm = timers.wrap(trainer._clip_grad_norm, "optimizer")
    params = sum(p.numel() for p in model.parameters())
    state = dict(left=0, records=[], peak=0.0, t0=0.0, c0=0.0, opt0=0.0)

    class Protocol(TrainerCallback):
        def on_step_begin(self, args, st, control, **kwargs):
            timers.take()
            counts.clear()
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()

        def on_pre_optimizer_step(self, args, st, control, **kwargs):
            state["opt0"] = time.perf_counter()

        def on_optimizer_step(self, args, st, control, **kwargs):
            timers.add("optimizer", time.perf_counter() - state["opt0"])

        def on_step_end(self, args, st, control, **kwargs):
            total, cpu = time.perf_counter() - state["t0"], time.process_time() - state["c0"]
            t = timers.take()
            parts = {k: t.get(k, 0.0) for k in ("sample", "score", "ref", "optimizer")}
            parts["fwd_bwd"] = t.get("training_step", 0.0) - t.get("prepare", 0.0)
            parts["other"] = total - sum(parts.values())
            state["records"].append(dict(step_s=total, cpu_s=cpu, parts=parts, **counts))
            state["left"] -= 1
            if state["left"] == 0:
                state["peak"] = max(state["peak"], peak_rss_mb())
                emit({"records": state["records"], "peak_rss_mb": state["peak"]})
                state["records"] = []
                cmd = read_command()
                if cmd["op"] == "run":
                    state["left"] = cmd["steps"]
                    reset_peak_rss()
                else:
                    control.should_training_stop = True
            return control

    trainer.add_callback(Protocol())
    reset_peak_rss()
    emit({"ready": True, "rss_ready_mb": rss_mb(), "params": params, "threads": torch.get_num_threads()})
    cmd = read_command()
    if cmd["op"] != "run":
        return
    state["left"] = cmd["steps"]
    reset_peak_rss()
    trainer.train()


def worker_main(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    contender = BY_NAME[spec["contender"]]
    if contender.side == "rlino":
        rlino_worker(contender, spec["model_dir"], spec["out_dir"])
    elif contender.side == "trl":
        trl_worker(contender, spec["model_dir"], spec["out_dir"])
    else:
        generate_worker(contender, spec["model_dir"])


# ---- the parent: interleave, summarise, print, write JSON ----------------------------------------------------------
class Worker:
    def __init__(self, contender: Contender, model_dir: Path, out_dir: Path, threads: int, log_dir: Path):
        self.contender = contender
        spec = dict(contender=contender.name, model_dir=str(model_dir), out_dir=str(out_dir), threads=threads)
        self.log = open(log_dir / f"{contender.name.replace(' ', '_').replace('=', '')}.log", "w")
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     cwd=str(ROOT), env=env)
        self.info: dict = {}
        self.records: list[dict] = []
        self.rounds: list[dict] = []
        self.warmup: list[dict] = []
        self.peak_rss_mb = 0.0

    def receive(self) -> dict:
        """The worker's next answer (lines that are not answers, e.g. a library printing to stdout, are skipped)."""
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        self.log.flush()
        tail = Path(self.log.name).read_text()[-3000:]
        raise RuntimeError(f"worker '{self.contender.name}' ended without answering; its log ends:\n{tail}")

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def run(self, steps: int) -> list[dict]:
        self.send({"op": "run", "steps": steps})
        answer = self.receive()
        self.peak_rss_mb = max(self.peak_rss_mb, answer["peak_rss_mb"])
        return answer["records"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "quit"})
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def model_flops(params: int, rec: dict, contender: Contender) -> dict[str, float]:
    """Model FLOPs of a step by part: 2N per forward token, 6N per forward+backward token (see the docstring)."""
    seq = rec["tokens"] + rec["prompt_tokens"]
    out = {"sample": 2.0 * params * seq}
    if contender.side != "generate":
        out["fwd_bwd"] = 6.0 * params * seq
        if contender.beta > 0:
            out["ref"] = 2.0 * params * seq
    return out


def summarise(workers: list[Worker], peaks: dict[str, float]) -> dict[str, dict]:
    """Per contender: medians of the step and its split, tokens/s, MFU against the fp32 and the bf16 matmul rate."""
    out = {}
    for w in workers:
        c, recs = w.contender, w.records
        parts = sorted({k for r in recs for k in r["parts"]})
        flops = [model_flops(w.info["params"], r, c) for r in recs]
        step = median([r["step_s"] for r in recs])
        split = {k: median([r["parts"].get(k, 0.0) for r in recs]) for k in parts}
        total_flops = median([sum(f.values()) for f in flops])
        mfu: dict[str, dict[str, float]] = {}
        for precision, peak_gflops in peaks.items():
            mfu[precision] = {"step": total_flops / step / (peak_gflops * 1e9)}
            for k in ("sample", "fwd_bwd"):
                if split.get(k):
                    mfu[precision][k] = median([f[k] for f in flops if k in f]) / split[k] / (peak_gflops * 1e9)
        out[c.name] = dict(
            side=c.side, method=c.method, beta=c.beta, precision=c.precision, engine=c.engine,
            params=w.info["params"], steps_timed=len(recs),
            step_s=step, step_s_all=[round(r["step_s"], 4) for r in recs], cpu_s=median([r["cpu_s"] for r in recs]),
            warmup_step_s=[round(r["step_s"], 4) for r in w.warmup], split_s=split,
            responses=sorted({r["responses"] for r in recs}), tokens=sorted({r["tokens"] for r in recs}),
            sample_tokens_per_s=median([r["tokens"] / r["parts"]["sample"] for r in recs if r["parts"].get("sample")]),
            model_gflop_per_step=total_flops / 1e9, mfu=mfu, peak_rss_mb=w.peak_rss_mb,
            rss_ready_mb=w.info.get("rss_ready_mb"), step_rss_growth_mb=w.peak_rss_mb - w.info.get("rss_ready_mb", 0),
        )
    return out


def paired_ratios(workers: dict[str, Worker]) -> list[dict]:
    """Per ratio: the median over rounds of (numerator's median step / denominator's median step) in that round;
    for the sampling ratios, the numerator's sampling time over `generate`'s step (which is all sampling)."""
    out = []
    for kind, ratios, key in (("step", RATIOS, "step_s"), ("sample", SAMPLE_RATIOS, "sample_s")):
        for num, den, target in ratios:
            if num not in workers or den not in workers:
                continue
            a, b = workers[num].rounds, workers[den].rounds
            per_round = [x[key] / y["step_s"] for x, y in zip(a, b)]
            cpu = [x["cpu_s"] / y["cpu_s"] for x, y in zip(a, b)]
            value = median(per_round)
            out.append(dict(kind=kind, numerator=num, denominator=den, ratio=value,
                            per_round=[round(r, 4) for r in per_round], cpu_ratio=median(cpu) if kind == "step"
                            else None, target=target, holds=None if target is None else value <= target))
    return out


def run_size(size: str, plan: dict, contenders: list[Contender], threads: int, work: Path, log_dir: Path,
             say) -> dict:
    model_dir = build_model(size, work / f"model-{size}")
    say(f"[{size}] starting {len(contenders)} workers ...")
    workers = [Worker(c, model_dir, work / f"out-{size}-{i}", threads, log_dir) for i, c in enumerate(contenders)]
    matmul = []
    try:
        for w in workers:
            w.info = w.receive()
        for _ in range(plan["warmup"]):
            for w in workers:
                w.warmup += w.run(1)
        say(f"[{size}] warm-up done; {plan['rounds']} rounds x {plan['steps']} step(s) per contender")
        for r in range(plan["rounds"]):
            matmul.append(matmul_gflops(threads))
            order = workers[r % len(workers):] + workers[: r % len(workers)]
            for w in order:
                recs = w.run(plan["steps"])
                w.records += recs
                w.rounds.append(dict(step_s=median([x["step_s"] for x in recs]),
                                     cpu_s=median([x["cpu_s"] for x in recs]),
                                     sample_s=median([x["parts"].get("sample") for x in recs])))
            say(f"[{size}] round {r + 1}/{plan['rounds']}: " + ", ".join(
                f"{w.contender.name} {w.rounds[-1]['step_s']:.2f}s" for w in workers))
    finally:
        for w in workers:
            w.close()
    rates = {prec: {n: median([m[prec][n] for m in matmul]) for n in matmul[0][prec]} for prec in matmul[0]}
    peaks = {prec: max(r.values()) for prec, r in rates.items()}
    by_name = {w.contender.name: w for w in workers}
    return dict(model=dict(size=size, **SIZES[size], params=workers[0].info["params"]), plan=plan,
                matmul_gflops=rates, peak_gflops=peaks, contenders=summarise(workers, peaks),
                ratios=paired_ratios(by_name))


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(cols: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def pct(mfu: dict, key: str) -> str:
    """MFU against the fp32 / the bf16 matmul rate."""
    return " / ".join("-" if key not in mfu[p] else f"{100 * mfu[p][key]:.0f}%" for p in ("fp32", "bf16"))


def table(results: dict) -> str:
    """The contenders' table, then the ratios' (step ratios and sampling ratios, with their targets)."""
    cols = ["model", "contender", "step s", "cpu s", "sample", "score", "ref", "fwd-bwd", "optim", "other",
            "resp x tok", "sample tok/s", "MFU fp32/bf16", "MFU f-b", "RSS MB (+step)"]
    rows, ratio_rows = [], []
    for size, res in results["sizes"].items():
        label = f"{size} ({res['model']['params'] / 1e6:.1f}M)"
        for name, c in res["contenders"].items():
            s = c["split_s"]
            per_response = "/".join(str(t // max(c["responses"][0], 1)) for t in c["tokens"])
            tok = f"{'/'.join(map(str, c['responses']))} x {per_response}"
            rss = f"{c['peak_rss_mb']:.0f} (+{c['step_rss_growth_mb']:.0f})"
            rows.append([label, name, fmt(c["step_s"]), fmt(c["cpu_s"]), fmt(s.get("sample")),
                         fmt(s.get("score"), 3), fmt(s.get("ref")), fmt(s.get("fwd_bwd")), fmt(s.get("optimizer")),
                         fmt(s.get("other")), tok, fmt(c["sample_tokens_per_s"], 0), pct(c["mfu"], "step"),
                         pct(c["mfu"], "fwd_bwd"), rss])
        for r in res["ratios"]:
            what = "step / step" if r["kind"] == "step" else "sampling / generate"
            target = "" if r["target"] is None else f"<= {r['target']}: {'yes' if r['holds'] else 'NO'}"
            ratio_rows.append([label, r["numerator"], r["denominator"], what, fmt(r["ratio"]), target,
                               " ".join(f"{x:.2f}" for x in r["per_round"])])
    return (markdown(cols, rows) + "\n\n" + markdown(["model", "numerator", "denominator", "times", "ratio",
                                                       "target", "per round"], ratio_rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the ~1M model only, 3 short rounds (development)")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), help="model sizes (default: the plan's)")
    p.add_argument("--rounds", type=int, help="timed rounds per size (default: the plan's)")
    p.add_argument("--steps", type=int, help="steps per contender per round (default: the plan's)")
    p.add_argument("--warmup", type=int, help="untimed rounds of one step before timing (default: the plan's)")
    p.add_argument("--contenders", nargs="+", choices=[c.name for c in CONTENDERS], metavar="NAME",
                   help="a subset of: " + ", ".join(repr(c.name) for c in CONTENDERS))
    p.add_argument("--no-trl", action="store_true", help="skip the TRL contenders")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per worker "
                   "(default: all cores)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / "results" / "work",
                   help="where the models are built (cached) and the workers write")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/steps-DATE.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main(json.loads(a.worker))
        return 0

    plan_name = "quick" if a.quick else "full"
    sizes = a.sizes or list(PLANS[plan_name])
    contenders = [BY_NAME[n] for n in a.contenders] if a.contenders else list(CONTENDERS)
    if a.no_trl:
        contenders = [c for c in contenders if c.side != "trl"]
    elif any(c.side == "trl" for c in contenders):
        try:
            import trl  # noqa: F401
        except ImportError:
            print("TRL is not installed here (pip install -e '.[bench]'); pass --no-trl to run without it",
                  file=sys.stderr)
            return 2
    a.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load = os.getloadavg()[0]
    if a.threads > 1 and load > 0.5:
        print(f"warning: load average {load:.1f} before starting: with {a.threads} threads per worker, every small "
              f"op waits for a core another process holds, and step times are inflated unevenly (up to 10x); "
              f"--threads 1 is much less sensitive to a busy machine", file=sys.stderr)

    def say(msg):
        print(f"[{time.time() - started:6.0f}s] {msg}", file=sys.stderr, flush=True)

    works = {c.name: work_per_step(c) for c in contenders}
    results: dict[str, Any] = dict(
        command=" ".join([Path(sys.executable).name, *sys.argv]), started=time.strftime("%Y-%m-%d %H:%M:%S"),
        machine=machine_info(a.threads), work_per_step=works, sizes={})
    with tempfile.TemporaryDirectory(dir=a.work_dir) as tmp:
        for size in sizes:
            plan = dict(PLANS["full"].get(size, PLANS["full"]["30m"]))
            if a.quick:
                plan = dict(PLANS["quick"].get(size, PLANS["quick"]["1m"]))
            for key in ("rounds", "steps", "warmup"):
                if getattr(a, key) is not None:
                    plan[key] = getattr(a, key)
            results["sizes"][size] = run_size(size, plan, contenders, a.threads, a.work_dir, Path(tmp), say)
    results["wall_s"] = time.time() - started
    results["load_average_after"] = os.getloadavg()
    text = table(results)
    print(text)
    print(f"\nwall time {results['wall_s']:.0f} s; matmul rate fp32 / bf16 " + "; ".join(
        f"{size}: {res['peak_gflops']['fp32']:.0f} / {res['peak_gflops']['bf16']:.0f} GFLOP/s"
        for size, res in results["sizes"].items())
        + f"; load average after {results['load_average_after'][0]:.1f}")
    out = a.out or ROOT / "benchmarks" / "results" / f"steps-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = text
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def machine_info(threads: int) -> dict:
    import torch
    import transformers

    info = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                cpu_count=os.cpu_count(), threads=threads, platform=platform.platform(),
                load_average_before=os.getloadavg())
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        info["trl"] = None
    try:
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import rlino

    info["rlino"] = getattr(rlino, "__version__", None)
    return info


if __name__ == "__main__":
    sys.exit(main())
