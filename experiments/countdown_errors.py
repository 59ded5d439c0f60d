"""Where a Countdown model's wrong answers go wrong, for models that write the embedded trace format.

    python experiments/countdown_errors.py MODEL [MODEL ...] [--split test] [--n 500] [--seed 0]

MODEL is a model folder (a checkpoint, or `rlino base` output) or `embedded:countdown`. For each model it samples
one response per held-out (or train) item, greedily and at temperature 1.0, with the noise the trainer's own
evaluation draws (same seed, same items: the T = 1.0 accuracy equals `eval/accuracy` of a run with that seed), and
counts each wrong response by its first mistake (`rlino.embedded.countdown_traces.trace_error`):

  listing    a value the two other numbers make, computed wrong
  candidate  the value a pair must make (target -, +, / z), computed wrong
  false_yes  `yes` with a pair that does not make the needed value
  slip       a sound search that said `yes`, then a wrong answer (the recipe's injected slip)
  gave_up    a sound search that never said `yes`
"""

from __future__ import annotations

import argparse
import collections

import torch

from rlino.embedded.countdown_base import RECIPE
from rlino.embedded.countdown_traces import trace_error
from rlino.evaluate import evaluate
from rlino.models import load_model
from rlino.objectives import is_correct
from rlino.tasks import load_task

KINDS = ("correct", "listing", "candidate", "false_yes", "slip", "gave_up")


def breakdown(model, tokenizer, task, items, *, temperature: float, seed: int) -> dict[str, float]:
    """The trainer's own evaluation (`rlino.evaluate.evaluate`), every response kept, counted by first mistake."""
    with torch.no_grad():
        result = evaluate(model, tokenizer, task, items, seed=seed, temperature=temperature, top_p=1.0,
                          max_new_tokens=256, batch_size=128, log_samples=len(items))
    samples = result["samples"]
    correct = is_correct(torch.tensor([s["reward"] for s in samples]))
    counts = collections.Counter(
        "correct" if ok else trace_error(s["response"], item.numbers, item.target)
        for s, item, ok in zip(samples, items, correct.tolist()))
    return {kind: 100 * counts[kind] / len(items) for kind in KINDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--n", type=int, default=500, help="items (the first N of the split; default 500)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation noise seed (a run's train.seed; default 0)")
    args = parser.parse_args()
    task = load_task("countdown", **RECIPE.task_options)
    items = task.items(args.split)[: args.n]
    print(f"{args.split} split, {len(items)} items; % of responses")
    print(f"{'model':<40} {'T':>4} " + " ".join(f"{k:>9}" for k in KINDS))
    for path in args.models:
        model, tokenizer = load_model(path)
        model.eval()
        for temperature in (0.0, 1.0):
            row = breakdown(model, tokenizer, task, items, temperature=temperature, seed=args.seed)
            print(f"{path[-40:]:<40} {temperature:>4.1f} " + " ".join(f"{row[k]:>9.1f}" for k in KINDS))


if __name__ == "__main__":
    main()
