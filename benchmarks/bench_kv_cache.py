#!/usr/bin/env python
"""rlino's sampler with its in-place KV cache against the same sampler concatenating (transformers' DynamicLayer).

    .venv/bin/python benchmarks/bench_kv_cache.py --size 1m --new-tokens 128 1024 --reps 3

The two variants alternate, on the benchmark models of bench_steps.py (32 rows, temperature 1); the samples are the
same bit for bit (tests/test_benchmark.py), only the time differs. Prints median wall and CPU seconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_steps as bench  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(bench.SIZES), default="1m")
    p.add_argument("--new-tokens", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=bench.ROOT / "benchmarks" / "results" / "work")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    import rlino.rollout as rollout
    from rlino.models import load_model

    model, tok = load_model(str(bench.build_model(a.size, a.work_dir / f"model-{a.size}")), device="cpu")
    prompts = bench.step_prompts(1)
    in_place = rollout._grow_in_place

    def concatenating(cache, capacity):
        return None

    print("| model | new tokens | in-place wall s | concat wall s | in-place cpu s | concat cpu s | "
          "in-place / concat (cpu) |")
    print("|---|---|---|---|---|---|---|")
    for n in a.new_tokens:
        times: dict[str, list[tuple[float, float]]] = {"in-place": [], "concat": []}
        variants = [("in-place", in_place), ("concat", concatenating)]
        rollout._grow_in_place = in_place
        rollout.sample(model, tok, prompts, list(range(len(prompts))), seed=0, step=1, temperature=1.0, top_p=1.0,
                       max_new_tokens=8)  # warm-up
        for r in range(a.reps):
            for name, fn in variants if r % 2 == 0 else variants[::-1]:
                rollout._grow_in_place = fn
                t0, c0 = time.perf_counter(), time.process_time()
                rollout.sample(model, tok, prompts, list(range(len(prompts))), seed=0, step=1, temperature=1.0,
                               top_p=1.0, max_new_tokens=n)
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
        rollout._grow_in_place = in_place
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in times.items()}
        print(f"| {a.size} | {n} | {med['in-place'][0]:.2f} | {med['concat'][0]:.2f} | {med['in-place'][1]:.2f} | "
              f"{med['concat'][1]:.2f} | {med['in-place'][1] / med['concat'][1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
