"""The tables of docs/analysis.md §5 from a finished `rlino compare configs/negative-reinforcement.toml` folder.

    python experiments/negative_reinforcement.py runs/nsr
    python experiments/negative_reinforcement.py runs/smollm2      # §6: the same tables for any comparison folder

Per arm: held-out accuracy over seeds (mean, 95% t-interval, each seed), wrong-response length at the end and its
slope over steps, and the share of response tokens the clip removed from the gradient (mean over steps and seeds,
from each run's metrics.jsonl: `clip_frac`, of which `clip_frac_low` below 1 − ε). Then the paired differences
(seed by seed) that say what the clip, the mini-batches and the aggregation do to negatives-only training.
Everything is read from results.json and the run folders; nothing is recomputed from the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean

from rlino.report.evidence import finished
from rlino.run_folder import METRICS
from rlino.stats import seed_interval

PAIRS = (("nsr", "fisft_neg", "all four differences: clip, four mini-batches, token-mean"),
         ("nsr", "nsr@no-clip", "the clip alone (both four mini-batches, token-mean)"),
         ("nsr@no-clip", "nsr@one-step", "four optimizer steps a batch instead of one (no clip acts in either)"),
         ("nsr@one-step", "fisft_neg", "token-mean instead of the per-response mean (one step, ratio 1)"),
         ("nsr@1e-4", "fisft_neg@1e-4", "at lr 1e-4: all four differences"),
         ("nsr", "grpo", "NSR against GRPO"), ("w_reinforce", "grpo", "W-REINFORCE against GRPO"),
         ("psr", "fisft_pos", "PSR against F-ISFT+"), ("nsr@1e-4", "grpo@1e-4", "at lr 1e-4: NSR against GRPO"))


def clip_share(folder: Path, arm: str) -> tuple[float, float] | None:
    rows = [json.loads(line) for run in sorted((folder / "runs" / arm).glob("seed-*"))
            for line in (run / METRICS).read_text().splitlines()]
    rows = [r for r in rows if "clip_frac" in r]
    if not rows:
        return None
    return fmean(r["clip_frac"] for r in rows), fmean(r["clip_frac_low"] for r in rows)


def cell(fit: dict, digits: int = 1, sign: str = "+") -> str:
    if fit["lo"] is None:  # one seed: no interval
        return f"{fit['mean']:{sign}.{digits}f}"
    return f"{fit['mean']:{sign}.{digits}f} [{fit['lo']:{sign}.{digits}f}, {fit['hi']:{sign}.{digits}f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    folder = ap.parse_args().folder
    results = json.loads((folder / "results.json").read_text())
    base, arms = results["base"], results["arms"]
    print(f"base: {100 * base['accuracy']:.1f}% [{100 * base['accuracy_lo']:.1f}, {100 * base['accuracy_hi']:.1f}]\n")
    print("| arm | accuracy % [95% CI] | vs base | per seed | wrong length at the end | wrong-length slope / 100 "
          "steps | tokens clipped (below 1 − ε) |\n|---|---|---|---|---|---|---|")
    for name, arm in arms.items():
        runs = finished(arm)
        if not runs:  # a comparison still running (rlino report renders a partial folder)
            print(f"| `{name}` | no finished seed yet | | | | | |")
            continue
        acc = seed_interval([100 * r["accuracy"] for r in runs.values()])
        slopes = [r["length_wrong_slope"]["per_100_steps"] for r in runs.values() if r.get("length_wrong_slope")]
        slope = cell(seed_interval(slopes)) if len(slopes) > 1 else "—"
        clip = clip_share(folder, name)
        clipped = "—" if clip is None else f"{100 * clip[0]:.2f}% ({100 * clip[1]:.2f}%)"
        wrong = fmean(r["length_wrong_mean"] for r in runs.values() if r.get("length_wrong_mean") is not None)
        each = ", ".join(f"{100 * r['accuracy']:.1f}" for r in runs.values())
        print(f"| `{name}` | {cell(acc, sign='')} | "
              f"{acc['mean'] - 100 * base['accuracy']:+.1f} | {each} | {wrong:.0f} | {slope} | {clipped} |")
    print("\n| difference (seed by seed) | what differs | accuracy, points | wrong-length slope |\n|---|---|---|---|")
    for a, b, what in PAIRS:
        if a not in arms or b not in arms:
            continue
        ra, rb = finished(arms[a]), finished(arms[b])
        common = [k for k in ra if k in rb]
        if not common:
            continue
        acc = seed_interval([100 * (ra[k]["accuracy"] - rb[k]["accuracy"]) for k in common])
        sl = [ra[k]["length_wrong_slope"]["per_100_steps"] - rb[k]["length_wrong_slope"]["per_100_steps"]
              for k in common if ra[k].get("length_wrong_slope") and rb[k].get("length_wrong_slope")]
        print(f"| `{a}` − `{b}` | {what} | {cell(acc)} | {cell(seed_interval(sl)) if len(sl) > 1 else '—'} |")


if __name__ == "__main__":
    main()
