"""The length study in a report: how much weight each token really gets, and whether the aggregation causes the growth.

Under `seq-mean-token-mean` a response's weight w_i is spread over its |o_i| tokens, so each token of a long wrong
response is pushed down by w_i / (N·|o_i|): the longer it is, the less each token is penalised. Under `token-mean`
and `seq-mean-token-sum-norm` every token gets the same share whatever the length. The paper says this is what makes
responses grow; a compare whose arms cross methods with aggregations (configs/length-ablation.toml) tests it.

Two things here, both read from the run files only:
- per-token weights vs response length: the analytic curve (`objectives.token_weights_for_length`) and the measured
  one (weights.jsonl: −∂loss/∂log π_t from autograd on each training step, × N);
- a verdict per method, read off the wrong-length slopes of its cells.
"""

from __future__ import annotations

from statistics import fmean, median
from typing import Any

import torch
from matplotlib.figure import Figure

from rlino.objectives import AGGREGATIONS, token_weights_for_length

PER_RESPONSE = "seq-mean-token-mean"
NUM_BINS = 12
MIN_BIN = 5  # responses a length bin needs before its mean is drawn


# ---- per-token weights -----------------------------------------------------------------------------------------------

def _responses(weights_rows: list[dict[str, Any]]) -> list[tuple[int, bool, float, float]]:
    """(length, correct, w_i, measured per-token weight × N) for every logged response of the run."""
    return [(int(L), bool(c), float(w), float(t)) for row in weights_rows
            for L, c, w, t in zip(row["length"], row["correct"], row["response_weight"], row["token_weight"])]


def token_weight_summary(weights_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean measured per-token weight (× N) of the shortest and longest quarter of correct and of wrong responses."""
    responses = _responses(weights_rows)
    if not responses:
        return None
    out: dict[str, Any] = {}
    for label, want in (("correct", True), ("wrong", False)):
        group = sorted((L, t) for L, c, _, t in responses if c == want)
        if len(group) < 4 * MIN_BIN:
            out[label] = None
            continue
        q = len(group) // 4
        short, long_ = group[:q], group[-q:]
        out[label] = {"short_length": round(fmean(L for L, _ in short), 1),
                      "short_weight": float(f"{fmean(t for _, t in short):.4g}"),
                      "long_length": round(fmean(L for L, _ in long_), 1),
                      "long_weight": float(f"{fmean(t for _, t in long_):.4g}")}
        s, lw = out[label]["short_weight"], out[label]["long_weight"]
        out[label]["long_over_short"] = round(lw / s, 3) if s else None
    return out


def analytic_curve(lengths: list[int], aggregation: str, weight: float, *, num_responses: int,
                   mean_length: float, max_new_tokens: int) -> list[float]:
    """w · N · f(L): the per-token weight (× N) a response of each length gets under `aggregation`."""
    f = token_weights_for_length(torch.tensor(lengths), aggregation, num_responses=num_responses,
                                 num_tokens=num_responses * mean_length, max_new_tokens=max_new_tokens)
    return [weight * num_responses * float(x) for x in f]


def _binned(points: list[tuple[int, float]], edges: list[float]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for lo, hi in zip(edges, edges[1:]):
        inside = [(L, t) for L, t in points if lo <= L < hi or (hi == edges[-1] and L == hi)]
        if len(inside) >= MIN_BIN:
            xs.append(fmean(L for L, _ in inside))
            ys.append(fmean(t for _, t in inside))
    return xs, ys


def plot_token_weights(path, arms: list[Any]) -> None:
    """One panel per arm: measured per-token weight (× N) vs length, binned, over the analytic curves."""
    arms = [arm for arm in arms if arm.weights]
    ncols = min(4, max(1, len(arms)))
    nrows = max(1, -(-len(arms) // ncols))
    fig = Figure(figsize=(3.6 * ncols, 3.1 * nrows + 0.6), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(arms):]:
        ax.axis("off")
    if not arms:
        axes[0].text(0.5, 0.5, "no weights.jsonl logged yet", ha="center", va="center", color="gray")
    for ax, arm in zip(axes, arms):
        aggregation = arm.config.get("method", {}).get("aggregation", PER_RESPONSE)
        max_new = int(arm.config.get("sampling", {}).get("max_new_tokens", 256))
        responses = _responses(arm.weights)
        n = int(median(row["num_responses"] for row in arm.weights))
        mean_length = median(row["num_tokens"] / row["num_responses"] for row in arm.weights)
        ordered = sorted(L for L, *_ in responses)  # from the 2nd percentile: a few very short responses would
        low, top = ordered[len(ordered) // 50], ordered[-1]  # stretch the 1/L curve over the whole panel
        edges = [low + (top - low) * k / NUM_BINS for k in range(NUM_BINS + 1)]
        grid = list(range(max(low, 1), top + 1))
        ax.axhline(0, color="black", linewidth=0.6)
        for label, want, color, marker in (("correct", True, "tab:green", "o"), ("wrong", False, "tab:red", "x")):
            group = [(L, w, t) for L, c, w, t in responses if c == want]
            if not group:
                continue
            w_mean = fmean(w for _, w, _ in group)
            ax.plot(grid, analytic_curve(grid, aggregation, w_mean, num_responses=n, mean_length=mean_length,
                                         max_new_tokens=max_new), color=color, linewidth=1.5,
                    label=f"{label}: analytic (mean w = {w_mean:+.2f})")
            xs, ys = _binned([(L, t) for L, _, t in group], edges)
            ax.plot(xs, ys, linestyle="none", marker=marker, color=color, markersize=5, label=f"{label}: measured")
        ax.set_title(arm.name if aggregation in arm.name else f"{arm.name}\n{aggregation}", fontsize="small")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("per-token weight × N")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    fig.suptitle("Per-token weight vs response length (lines: analytic; markers: measured on the training steps, "
                 "mean per length bin)", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


# ---- the verdict -------------------------------------------------------------------------------------------------------

def _slope_text(slope: dict[str, Any]) -> str:
    return f"{slope['per_100_steps']:+.1f} tokens/100 steps [{slope['lo']:+.1f}, {slope['hi']:+.1f}]"


def cells_by_method(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """method → aggregation → (arm name, arm results), for methods run under per-response averaging and another."""
    by: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
    for name, arm in arms.items():
        if arm.get("method") and arm.get("aggregation") in AGGREGATIONS:
            by.setdefault(arm["method"], {}).setdefault(arm["aggregation"], (name, arm))
    return {m: cells for m, cells in by.items() if PER_RESPONSE in cells and len(cells) > 1}


def causal_verdicts(arms: dict[str, dict[str, Any]]) -> list[str]:
    """Per method crossed with aggregations: does wrong length grow under per-response averaging, and stop otherwise?"""
    out = []
    for method, cells in cells_by_method(arms).items():
        avg_name, avg = cells[PER_RESPONSE]
        slope = avg.get("length_wrong_slope")
        if slope is None:
            out.append(f"{method}: too few steps with wrong responses under {PER_RESPONSE} to judge the length effect.")
            continue
        if slope["lo"] <= 0:
            out.append(f"{method}: wrong-response length did not grow under per-response averaging ({avg_name}: "
                       f"{_slope_text(slope)}), so this run shows no length effect for this method to explain.")
            continue
        stopped, slowed, same = [], [], []
        for aggregation, (name, arm) in cells.items():
            other = arm.get("length_wrong_slope")
            if aggregation == PER_RESPONSE or other is None:
                continue
            text = f"{aggregation} ({name}: {_slope_text(other)})"
            if other["lo"] <= 0:
                stopped.append(text)
            elif other["hi"] < slope["lo"]:
                slowed.append(text)
            else:
                same.append(text)
        head = (f"{method}: wrong-response length grew under per-response averaging ({avg_name}: "
                f"{_slope_text(slope)})")
        parts = []
        if stopped:
            parts.append("did not grow under " + " or ".join(stopped))
        if slowed:
            parts.append("grew, but significantly more slowly, under " + " and ".join(slowed))
        if same:
            parts.append("also grew, not significantly more slowly, under " + " and ".join(same))
        if stopped and not slowed and not same:
            verdict = "The run supports the claim that per-response averaging causes the growth for this method"
        elif stopped or slowed:
            verdict = "The run supports the claim only in part for this method"
        else:
            verdict = "The run does not support the claim for this method: the aggregation is not what drives it"
        text = f"{head}; it {'; it '.join(parts)}. {verdict} (same weights, seed and prompts in every cell)."
        accs = [(n, a) for n, a in cells.values() if a.get("accuracy_hi") is not None]
        worse = [n for n, a in accs if n != avg_name and avg.get("accuracy_hi") is not None
                 and avg["accuracy_hi"] < a["accuracy_lo"]]
        if worse:
            text += (f" The growth comes with lower accuracy: {avg_name} ends at {100 * avg['accuracy']:.1f}%, below "
                     f"the 95% intervals of {', '.join(worse)}.")
        out.append(text)
    return out
