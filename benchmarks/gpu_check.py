"""A first GPU session in one script: a few steps of the paper's GSM8K run (configs/paper/qwen2.5-0.5b-gsm8k-train.toml)
on a random model with Qwen2.5-0.5B's real shapes, in bf16 (the config's autocast `auto` on CUDA), and what to read:

- sampling tokens/s of rlino's sampler against `model.generate` on the same prompts (same precision, same length);
- step time (sampling, update) per step;
- `torch.cuda.max_memory_allocated` per phase against `rlino plan --device cuda` for the same settings;
- with 2 or more GPUs, the same run sharded over 2 ranks (`train.sharding = "fsdp"`, torchrun), each rank's peaks
  against `rlino plan --world-size 2`.

    python benchmarks/gpu_check.py                          # a CUDA machine (the FSDP part when it has >= 2 GPUs)
    python benchmarks/gpu_check.py --device cpu --tiny      # a dry run of the same code on CPU (2-layer model)
    python benchmarks/gpu_check.py --device cpu --tiny --fsdp-ranks 2   # ... with the FSDP part over gloo

No hub and no network: the model is built here from the config.json values of Qwen/Qwen2.5-0.5B written below
(random weights, rlino's byte tokenizer, the end-of-sequence token made unreachable so every response runs to
max_new_tokens, as the plan assumes), and the GSM8K items are generated sums in GSM8K's format (question, answer
ending in `#### N`). Results: printed, and as JSON in benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_steps import never_stop_  # noqa: E402

CONFIG = HERE.parent / "configs" / "paper" / "qwen2.5-0.5b-gsm8k-train.toml"
# config.json of huggingface.co/Qwen/Qwen2.5-0.5B (the values that size the model and its memory)
QWEN25_05B = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                  max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  hidden_act="silu", use_sliding_window=False, sliding_window=32768, max_window_layers=24,
                  attention_dropout=0.0, initializer_range=0.02)
TINY = dict(QWEN25_05B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
TINY_SETTINGS = ["train.prompts_per_step=4", "train.group_size=2", "train.micro_batch_size=2", "sampling.batch_size=8",
                 "sampling.max_new_tokens=16", "model.autocast=bf16"]
"""--tiny: a small step, and bf16 named (CPU's `auto` is fp32) so the dry run takes the GPU's precision path."""
SEGMENTS = {"sample": "sampling", "score": "scoring", "reference": "reference", "critic": "critic",
            "optimizer": "training", "update": "training"}
"""Which segment of a step ends at each phase (the trainer's Clock): the peak since the previous phase's end is
that segment's. The micro-batch passes and AdamW's step both end at `optimizer`: one segment, `training`."""


def build_model(folder: Path, sizes: dict, seed: int = 0) -> Path:
    """A random model of these config.json values with rlino's byte tokenizer, saved as a Hugging Face folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlino.embedded.byte_qwen2 import EOS, byte_tokenizer
    from rlino.models import save_model

    if (folder / "model.safetensors").is_file():
        return folder
    tokenizer = byte_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(sizes, eos_token_id=eos, pad_token_id=eos, bos_token_id=None,
                                                        torch_dtype="float32")))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    never_stop_(model, eos)
    save_model(model, tokenizer, folder)
    return folder


def write_gsm8k(folder: Path, train: int = 512, test: int = 64) -> None:
    """GSM8K-format JSONL files (question, answer with `#### N`) of generated sums."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        rows = [{"question": f"Ann has {a} apples and buys {b} more, then gives {c} away. How many are left?",
                 "answer": f"{a} + {b} - {c} = {a + b - c}\n#### {a + b - c}"}
                for a, b, c in ((17 + 7 * i % 83, 5 + 3 * i % 41, 2 + i % 13) for i in range(n))]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def overrides(args: argparse.Namespace, work: Path) -> list[str]:
    sets = [f"model.name_or_path={work / 'model'}", f"model.device={args.device}",
            f"task.options.train_file={work / 'gsm8k' / 'train.jsonl'}",
            f"task.options.test_file={work / 'gsm8k' / 'test.jsonl'}",
            f"train.steps={args.steps}", "eval.every=0", "train.save_every=0", "train.report_to=[]"]
    return sets + (TINY_SETTINGS if args.tiny else []) + list(args.set)


class PhaseMemory:
    """Peak allocated CUDA memory of each segment of the steps (the maximum over steps), through Run's on_phase."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peaks: dict[str, float] = {}
        self.seconds: dict[str, list[float]] = {}

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def hear(self, phase: str, seconds: float) -> None:
        self.seconds.setdefault(phase, []).append(seconds)
        if not self.cuda:
            return
        torch.cuda.synchronize()
        segment = SEGMENTS.get(phase, phase)
        self.peaks[segment] = max(self.peaks.get(segment, 0.0), torch.cuda.max_memory_allocated() / 2 ** 30)
        torch.cuda.reset_peak_memory_stats()


def measured_run(args: argparse.Namespace, work: Path, extra: list[str], out: Path) -> dict:
    """Train the configured steps in this process (one rank of a torchrun launch, or alone), timing and measuring."""
    from rlino.config import load_config
    from rlino.run_folder import METRICS
    from rlino.trainer import Run

    memory = PhaseMemory(torch.device(args.device))
    run = Run(load_config(CONFIG, overrides(args, work) + extra), out, on_phase=memory.hear, quiet=True)
    memory.reset()  # the peaks are the steps', the loaded weights included
    t0 = time.perf_counter()
    run.fit()
    wall = time.perf_counter() - t0
    rows = run.folder.read_log(METRICS) if run.world.is_main else []
    result = {"wall_s": wall, "ranks": run.world.size, "memory_gib": run.world.gather(memory.peaks),
              "steps": [{k: r[k] for k in ("step", "step_time_s", "sample_time_s", "update_time_s", "tokens_per_s",
                                           "loss", "grad_norm", "reward_mean", "length_mean")
                         if k in r} for r in rows]}
    result["longest_prompt_tokens"] = max(len(run.policy.prompt_format.encode(run.tokenizer, it.prompt))
                                          for it in run.train_items)
    result["sampling"] = sampling_vs_generate(run, args) if run.world.is_main and run.world.size == 1 else None
    return result


def sampling_vs_generate(run, args: argparse.Namespace) -> dict:
    """New tokens per second of rlino's sampler and of `model.generate` on the same prompts, same precision."""
    from rlino.rollout import sample

    rows, new = args.bench_rows, args.bench_tokens
    prompts = [run.train_items[i % len(run.train_items)].prompt for i in range(rows)]
    model, tok = run.model, run.tokenizer
    out = {"rows": rows, "new_tokens": new}
    for name in ("rlino", "generate", "rlino"):  # rlino twice: the first call pays any warm-up
        sync(run.device)
        t0 = time.perf_counter()
        with torch.no_grad(), run.sample_autocast():
            if name == "rlino":
                r = sample(model, tok, prompts, list(range(rows)), seed=0, step=10 ** 6, temperature=0.6, top_p=1.0,
                           max_new_tokens=new, batch_size=rows, engine=run.cfg.sampling.engine,
                           prompt_format=run.policy.prompt_format)
                made = int(r.lengths.sum())
            else:
                enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left").to(run.device)
                ids = model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=True, top_k=0,
                                     temperature=0.6, pad_token_id=tok.eos_token_id)
                made = int((ids.shape[1] - enc["input_ids"].shape[1]) * rows)
        sync(run.device)
        out[f"{name}_tokens_per_s"] = made / (time.perf_counter() - t0)
    out["ratio"] = out["rlino_tokens_per_s"] / out["generate_tokens_per_s"]
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def planned(args: argparse.Namespace, work: Path, extra: list[str], ranks: int, prompt_tokens: int) -> dict:
    """`rlino plan --device cuda` for the same settings: each phase's peak without the CUDA context (which
    max_memory_allocated does not count), in GiB."""
    from rlino.plan import plan

    e = plan(str(CONFIG), overrides(args, work) + extra, device="cuda", prompt_tokens=prompt_tokens,
             world_size=ranks)["runs"][0]
    return {phase: (value - e["base"]) / 2 ** 30 for phase, value in e["phase_peak"].items()}


def report(title: str, result: dict, plan_gib: dict) -> None:
    print(f"\n== {title}: {result['ranks']} rank(s), {len(result['steps'])} steps in {result['wall_s']:.1f} s")
    for s in result["steps"]:
        print(f"  step {s['step']}: {s['step_time_s']:.2f} s (sampling {s['sample_time_s']:.2f}, update "
              f"{s['update_time_s']:.2f}), {s['tokens_per_s']:.0f} tokens/s, loss {s['loss']:.4g}, grad_norm "
              f"{s['grad_norm']:.4g}, response length {s['length_mean']:.0f}")
    if result["sampling"]:
        sm = result["sampling"]
        print(f"  sampling {sm['rows']} x {sm['new_tokens']} new tokens: rlino {sm['rlino_tokens_per_s']:.0f} "
              f"tokens/s, generate {sm['generate_tokens_per_s']:.0f} tokens/s ({sm['ratio']:.2f}x)")
    plan_training = max(plan_gib["training"], plan_gib["optimizer"])
    print(f"  {'max_memory_allocated GiB':<28}{'measured':>10}{'plan':>10}   (plan without the CUDA context)")
    for rank, peaks in enumerate(result["memory_gib"]):
        if not peaks:
            print(f"  rank {rank}: no CUDA memory on this device (plan: sampling {plan_gib['sampling']:.2f}, "
                  f"training {plan_training:.2f} GiB)")
            continue
        for segment, want in (("sampling", plan_gib["sampling"]), ("training", plan_training)):
            got = peaks.get(segment, float("nan"))
            print(f"  rank {rank} {segment:<21}{got:>10.2f}{want:>10.2f}   ({got / want:.2f} of plan)")


def fsdp_part(args: argparse.Namespace, work: Path) -> dict:
    """The same steps sharded over `--fsdp-ranks` ranks with torchrun; rank 0 writes its result as JSON."""
    out = work / "fsdp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.fsdp_ranks}",
           __file__, "--role", "fsdp", "--work", str(work), "--device", args.device, "--steps", str(args.steps)]
    cmd += (["--tiny"] if args.tiny else []) + [x for s in args.set for x in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer model and a small step (the dry run)")
    p.add_argument("--steps", type=int, default=3, help="training steps (default 3: from step 2 on, gradients and "
                   "AdamW's moments are resident while sampling, as the plan counts)")
    p.add_argument("--fsdp-ranks", type=int, default=None, help="ranks of the FSDP part (default: 2 when there are "
                   ">= 2 GPUs, else none)")
    p.add_argument("--bench-rows", type=int, default=64, help="rows of the sampling comparison (default 64)")
    p.add_argument("--bench-tokens", type=int, default=256, help="new tokens per row in it (default 256)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("--work", help="folder for the model, data and runs (default: a temporary folder)")
    p.add_argument("--role", default="main", choices=["main", "fsdp"], help=argparse.SUPPRESS)
    p.add_argument("--json", default=str(HERE / "results" / "gpu_check.json"), help="where the results go")
    args = p.parse_args(argv)
    if args.tiny:
        args.bench_rows, args.bench_tokens = min(args.bench_rows, 8), min(args.bench_tokens, 16)
    work = Path(args.work or tempfile.mkdtemp(prefix="rlino-gpu-check-"))
    if args.role == "fsdp":  # one rank of the torchrun launch of fsdp_part
        result = measured_run(args, work, ["train.sharding=fsdp"], work / "runs" / "fsdp")
        if int(os.environ.get("RANK", "0")) == 0:
            (work / "fsdp.json").write_text(json.dumps(result))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; for a dry run: --device cpu --tiny", file=sys.stderr)
        return 2
    print(f"gpu_check: torch {torch.__version__}, "
          + (torch.cuda.get_device_name(0) + f" x {torch.cuda.device_count()}" if args.device == "cuda" else "CPU")
          + f"; work folder {work}")
    build_model(work / "model", TINY if args.tiny else QWEN25_05B)
    write_gsm8k(work / "gsm8k")
    results = {"device": args.device, "tiny": args.tiny}
    one = measured_run(args, work, [], work / "runs" / "single")
    results["single"] = dict(one, plan_gib=planned(args, work, [], 1, one["longest_prompt_tokens"]))
    report("one process", one, results["single"]["plan_gib"])
    ranks = args.fsdp_ranks if args.fsdp_ranks is not None else (2 if args.device == "cuda"
                                                                 and torch.cuda.device_count() >= 2 else 0)
    if ranks >= 2:
        args.fsdp_ranks = ranks
        sharded = fsdp_part(args, work)
        plan_gib = planned(args, work, ["train.sharding=fsdp"], ranks, sharded["longest_prompt_tokens"])
        results["fsdp"] = dict(sharded, plan_gib=plan_gib)
        report(f"FSDP over {ranks} ranks", sharded, plan_gib)
    else:
        print("\n(FSDP part skipped: it needs 2 GPUs, or --fsdp-ranks 2 with --device cpu)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nresults: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
