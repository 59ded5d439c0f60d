"""Where a step of the main job goes, against its compute floor, for variants of it measured side by side.

    python benchmarks/profile_step.py                            # the default's grpo, fp32, 12 steps
    python benchmarks/profile_step.py --variant fp32= --variant bf16=model.autocast=bf16,sampling.autocast=off
    python benchmarks/profile_step.py --arm fisft_pos_neg --steps 20 --set train.prompts_per_step=16

Each variant is a `rlino.trainer.Run` of the packaged comparison's config (the shipped `embedded:countdown`, the
arm's method, `--set` overrides, then the variant's), all in this process on one torch thread (what a compare
worker gets on 2 cores), taking turns step by step so that load on the machine falls on all of them alike. Each
step is split into sample, score, reference, forward-backward, optimizer and the rest (Python, metrics). The floor
is the step's matmul FLOPs (2·P per token forward, 4·P backward, P the parameters the products touch, the tied
LM head included; attention's products added) at the matmul rate this thread measures on the update's shapes, in
fp32 and in bf16. Prints one table; `--json FILE` writes every step's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def matmul_rate(dtype: torch.dtype, m: int = 2048, k: int = 128, n: int = 512, seconds: float = 0.5) -> float:
    """GFLOP/s of an [m, k] x [k, n] product (the MLP's shape at a micro-batch of ~16 x 128 tokens)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t0, count = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - t0) / 1e9


def product_params(model) -> int:
    """Parameters that take part in matrix products per token (every weight matrix; the embedding as LM head)."""
    return sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2)


def variant_runs(arm: str, sets: list[str], variants: dict[str, list[str]], out: Path):
    from rlino.arms import parse_arms
    from rlino.compare import load_compare_config
    from rlino.trainer import Run

    runs = {}
    for name, extra in variants.items():
        _, shared, _ = load_compare_config(None, sets + extra)
        (a,) = parse_arms([arm])
        seconds: dict[str, float] = {}

        def on_phase(phase, dt, seconds=seconds):
            seconds[phase] = seconds.get(phase, 0.0) + dt

        run = Run(a.config(shared), out / name, label=name, on_phase=on_phase, quiet=True)
        runs[name] = (run, seconds)
    return runs


def attention_flops(rollout, layers: int, hidden: int) -> float:
    """QK^T and AV of the update's forward: 4 · hidden · (prompt + response)^2 per row and layer (causal half
    counted in full, as SDPA computes it)."""
    width = rollout.prompt_ids.shape[1] + rollout.completion_ids.shape[1]
    return 4.0 * hidden * width * width * rollout.completion_ids.shape[0] * layers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", default="grpo")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--skip", type=int, default=2, help="first steps left out of the medians (warm-up)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="an override for every variant")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V",
                    help="a variant's own overrides (default: one variant, fp32)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {}
    for v in args.variant or ["fp32="]:
        name, _, rest = v.partition("=")
        variants[name] = [x for x in rest.split(",") if x]
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        runs = variant_runs(args.arm, args.sets, variants, Path(tmp))
        model = next(iter(runs.values()))[0].model
        cfg = model.config
        P = product_params(model)
        for step in range(1, args.steps + 1):
            for name, (run, seconds) in runs.items():
                seconds.clear()
                t0 = time.perf_counter()
                result = run.train_step(step)
                wall = time.perf_counter() - t0
                ro = result.rollout
                gen = float(ro.completion_mask.sum())
                prompt = float(ro.prompt_mask.sum())
                batches = ro.micro_batches(run.cfg.train.micro_batch_size)
                train_tok = sum(mb.prompt_ids.numel() + mb.completion_ids.numel() for mb in batches)
                attn = sum(attention_flops(mb, cfg.num_hidden_layers, cfg.hidden_size) for mb in batches)
                ref = seconds.get("reference", 0.0)
                opt = seconds.get("optimizer", 0.0)
                fb = seconds["update"] - ref - opt
                rows[name].append({
                    "step": step, "wall": wall, "sample": seconds["sample"], "score": seconds["score"],
                    "reference": ref, "fwd_bwd": fb, "optimizer": opt,
                    "other": wall - seconds["sample"] - seconds["score"] - seconds["update"],
                    "responses": ro.completion_ids.shape[0], "gen_tokens": gen,
                    "train_tokens_padded": train_tok,
                    # sampling: every prompt token once (shared prefill counts each group's prompt G times here,
                    # an upper bound), then one token per row per decode position
                    "flops_sample": 2.0 * P * (prompt + gen),
                    "flops_reference": (2.0 * P * train_tok + attn) if ref else 0.0,
                    "flops_fwd_bwd": 3 * (2.0 * P * train_tok + attn),
                    "accuracy": result.metrics["accuracy"], "length_mean": result.metrics["length_mean"],
                })
    keep = {name: r[args.skip:] or r for name, r in rows.items()}

    def med(name, key):
        return statistics.median(x[key] for x in keep[name])

    parts = ("sample", "score", "reference", "fwd_bwd", "optimizer", "other")
    print(f"arm {args.arm}, {len(variants)} variant(s), steps {args.skip + 1}-{args.steps} (medians), "
          f"{args.threads} thread(s), P = {P:,} product parameters; matmul rate fp32 {rates['fp32']:.0f}, "
          f"bf16 {rates['bf16']:.0f} GFLOP/s; load average {os.getloadavg()[0]:.2f}")
    header = ["variant", "step s", *parts, "resp", "gen tok", "floor fp32 s", "floor bf16 s",
              "f-b floor fp32/bf16 s", "acc"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in variants:
        flops = med(name, "flops_sample") + med(name, "flops_reference") + med(name, "flops_fwd_bwd")
        fb = med(name, "flops_fwd_bwd")
        acc = statistics.mean(x["accuracy"] for x in rows[name])
        cells = [name, f"{med(name, 'wall'):.3f}", *(f"{med(name, p):.3f}" for p in parts),
                 f"{med(name, 'responses'):.0f}", f"{med(name, 'gen_tokens'):.0f}",
                 f"{flops / rates['fp32'] / 1e9:.3f}", f"{flops / rates['bf16'] / 1e9:.3f}",
                 f"{fb / rates['fp32'] / 1e9:.3f} / {fb / rates['bf16'] / 1e9:.3f}", f"{acc:.3f}"]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "P": P, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
