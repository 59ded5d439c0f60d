"""How much of the update's forward-backward is matrix products: `torch.profiler` on the shipped base.

    python benchmarks/profile_update.py                     # 16 rows x (14 prompt + 90 response) tokens, 5 passes
    python benchmarks/profile_update.py --rows 32 --response 140

One forward-backward of `rlino.rollout.token_logprobs` (the training forward) on random ids, on one torch thread, as
in a compare worker. Prints the wall time per pass, the share of the operators' self time spent in the products
(`aten::mm`, `aten::addmm`, `aten::bmm`) and SDPA's kernels, the number of operators per pass, and the top of the
profiler's table. A hand-written training forward could only cut what is not in those kernels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}


def main(argv: list[str] | None = None) -> int:
    from torch.profiler import ProfilerActivity, profile

    from rlino.models import load_model
    from rlino.rollout import token_logprobs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=14)
    ap.add_argument("--response", type=int, default=90)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_model("embedded:countdown", device="cpu")
    model.train()
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (args.rows, args.prompt), generator=g)
    response = torch.randint(3, vocab, (args.rows, args.response), generator=g)
    masks = torch.ones_like(prompt), torch.ones_like(response)

    def one_pass():
        logp, _ = token_logprobs(model, prompt, masks[0], response, masks[1])
        logp.sum().backward()

    for _ in range(3):
        one_pass()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.passes):
            one_pass()
    wall = (time.perf_counter() - t0) / args.passes
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS)
    print(f"{args.rows} x ({args.prompt} + {args.response}) tokens, {args.threads} thread(s): {wall:.3f} s per "
          f"forward-backward (under the profiler); products and SDPA {products / total:.0%} of the self time; "
          f"{sum(e.count for e in events) / args.passes:.0f} operators per pass; load average {os.getloadavg()[0]:.2f}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
