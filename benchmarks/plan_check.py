"""`rlino plan`'s CPU estimate against the measured peak resident set of real `rlino train` runs.

    python benchmarks/plan_check.py                       # both sizes, grpo (reference model) and grpo_no_kl
    python benchmarks/plan_check.py --sizes small --methods grpo  # one size, one method

For each model size a random Qwen2 over the byte tokenizer (vocabulary padded to the size's `vocab`) is saved as a
Hugging Face folder; `rlino train` runs 2 steps of Countdown on it in a child process (the responses of a random model
run to max_new_tokens, the plan's worst case), and the child's peak RSS (`wait4`'s ru_maxrss, which is VmHWM) is
compared with `rlino plan --device cpu` on the same config, given the run's real longest prompt. Results go to
`benchmarks/results/plan_check.json`. Figures and the machine they were measured on: docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    # vocabulary-bound: the logits and the log-softmax dominate the training phase
    "small": dict(vocab=151936, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2),
    # weight-bound: weights, reference, gradients and AdamW dominate
    "medium": dict(vocab=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                   num_key_value_heads=4),
}
RUN = ["train.steps=2", "train.prompts_per_step=2", "train.group_size=4", "train.micro_batch_size=4",
       "train.learning_rate=1e-5", "train.save_every=0", "sampling.batch_size=8", "sampling.max_new_tokens=192",
       "eval.every=0", "task.options.train_size=64", "task.options.test_size=8"]
CONFIG = ROOT / "configs" / "smoke.toml"


def build(size: str, folder: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlino.embedded.byte_qwen2 import EOS, byte_tokenizer

    shape = dict(SIZES[size])
    vocab = shape.pop("vocab")
    tok = byte_tokenizer()
    eos = tok.convert_tokens_to_ids(EOS)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, eos_token_id=eos,
                                         pad_token_id=eos, bos_token_id=None, max_position_embeddings=1024, **shape))
    path = folder / size
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def longest_prompt(model: Path, overrides: list[str]) -> int:
    from transformers import AutoTokenizer

    from rlino.config import load_config
    from rlino.tasks import load_task

    cfg = load_config(CONFIG, overrides)
    tok = AutoTokenizer.from_pretrained(model)
    items = load_task(cfg.task.name, **cfg.task.options).items("train")
    return max(len(tok(it.prompt, add_special_tokens=False)["input_ids"]) for it in items)


def measure(overrides: list[str], out: Path) -> int:
    """Peak RSS in bytes of `rlino train` in a child process."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    args = [sys.executable, "-m", "rlino", "train", str(CONFIG), "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"rlino train failed: {child.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss * 1024


def estimate(overrides: list[str], prompt_tokens: int) -> dict:
    from rlino.plan import plan

    return plan(str(CONFIG), overrides, device="cpu", prompt_tokens=prompt_tokens)["runs"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", default=["grpo", "grpo_no_kl"])
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more overrides for every run")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "plan_check.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model = build(size, Path(tmp))
            for method in args.methods:
                overrides = RUN + [f"model.name_or_path={model}", f"method.name={method}", "model.device=cpu",
                                   *args.extra]
                prompt = longest_prompt(model, overrides)
                est = estimate(overrides, prompt)
                peak = measure(overrides, Path(tmp) / f"run-{size}-{method}")
                row = dict(size=size, method=method, params=est["setup"]["params"], prompt_tokens=prompt,
                           estimate_mib=round(est["peak"] / 2**20), measured_mib=round(peak / 2**20),
                           phase=est["peak_phase"], error=round(est["peak"] / peak - 1, 3),
                           sampling_mib=round(est["phase_peak"]["sampling"] / 2**20),
                           training_mib=round(est["phase_peak"]["training"] / 2**20), overrides=args.extra)
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"{'size':8}{'method':12}{'params':>12}{'estimate MiB':>14}{'measured MiB':>14}{'error':>8}")
    for r in rows:
        print(f"{r['size']:8}{r['method']:12}{r['params']:>12,}{r['estimate_mib']:>14}{r['measured_mib']:>14}"
              f"{100 * r['error']:>7.1f}%")


if __name__ == "__main__":
    main()
