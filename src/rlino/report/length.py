"""The length study: how much weight each token really gets, and whether the aggregation causes the growth.

Under `seq-mean-token-mean` a response's weight w_i is spread over its |o_i| tokens, so each token of a long wrong
response is pushed down by w_i / (N·|o_i|): the longer it is, the less each token is penalised. Under `token-mean`
and `seq-mean-token-sum-norm` every token gets the same share whatever the length. The paper says this is what makes
responses grow; a compare whose arms cross methods with aggregations (configs/length-ablation.toml) tests it.

Two things here, both read from the run files only:
- per-token weights vs response length: the analytic curve (`objectives.token_weights_for_length`) and the measured
  one (weights.jsonl: −∂loss/∂log π_t from autograd on each training step, × N); the plot is in `plots.py`;
- a verdict per method, read off the wrong-length slopes of its cells.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

import torch

from rlino.objectives import AGGREGATIONS, token_weights_for_length

PER_RESPONSE = "seq-mean-token-mean"
MIN_BIN = 5  # responses a length bin needs before its mean is drawn


# ---- per-token weights -----------------------------------------------------------------------------------------------

def responses(weights_rows: list[dict[str, Any]]) -> list[tuple[int, bool, float, float]]:
    """(length, correct, w_i, measured per-token weight × N) for every logged response of the run."""
    return [(int(L), bool(c), float(w), float(t)) for row in weights_rows
            for L, c, w, t in zip(row["length"], row["correct"], row["response_weight"], row["token_weight"])]


def token_weight_summary(weights_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean measured per-token weight (× N) of the shortest and longest quarter of correct and of wrong responses."""
    logged = responses(weights_rows)
    if not logged:
        return None
    out: dict[str, Any] = {}
    for label, want in (("correct", True), ("wrong", False)):
        group = sorted((L, t) for L, c, _, t in logged if c == want)
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


def position_summary(weights_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where along a response its per-token weight sits, from weights.jsonl's thirds: per correct and per wrong
    response, the mean over responses of its first, middle and last third's weight divided by the mean size of its
    three (so a flat response reads ±1, 1, 1 whatever its w_i); the share of responses whose weight is flat; and over
    the others the mean correlation of weight with position, oriented by the outcome (the sign flipped for wrong
    responses: > 0 when the push, up for correct and down for wrong, grows toward the end).

    Left out: responses whose reward weight w_i is 0 (a group whose responses all agree: what is left of their
    gradient is the KL term's alone) and responses with no gradient at all (a critic's warm-up steps). None for runs
    that logged no thirds (older folders)."""
    rows = [row for row in weights_rows if row.get("token_weight_thirds") is not None]
    if not rows:
        return None
    logged = [(ok, thirds, c) for row in rows for ok, w, thirds, c in zip(
        row["correct"], row["response_weight"], row["token_weight_thirds"], row["token_weight_position_corr"])
        if w != 0 and any(thirds)]
    shaped = [c if ok else -c for ok, _, c in logged if c is not None]
    out: dict[str, Any] = {"responses": len(logged),
                           "flat_frac": round(1 - len(shaped) / len(logged), 4) if logged else None,
                           "position_corr_mean": round(fmean(shaped), 4) if shaped else None}
    for label, want in (("correct", True), ("wrong", False)):
        profiles = []
        for ok, thirds, _ in logged:
            size = fmean(abs(x) for x in thirds) if ok == want and None not in thirds else 0.0
            if size > 0:
                profiles.append([x / size for x in thirds])
        out[label] = [round(fmean(p[k] for p in profiles), 4) for k in range(3)] if profiles else None
        out[f"{label}_responses"] = len(profiles)
    return out


def _logged(weights_rows: list[dict[str, Any]], key: str) -> Any:
    """The value of `key` in the latest weights row that carries it (rows of older runs do not), else None."""
    return next((row[key] for row in reversed(weights_rows) if row.get(key) is not None), None)


def curve_settings(weights_rows: list[dict[str, Any]], config: dict[str, Any]) -> tuple[str | None, int | None]:
    """(aggregation, max_new_tokens) of the run's loss: as logged in weights.jsonl, else from the run's config.toml
    (folders written before weights.jsonl carried them); None where neither has it."""
    aggregation = _logged(weights_rows, "aggregation")
    if aggregation is None:
        aggregation = config.get("method", {}).get("aggregation")
    max_new = _logged(weights_rows, "max_new_tokens")
    if max_new is None:
        max_new = config.get("sampling", {}).get("max_new_tokens")
    return aggregation, None if max_new is None else int(max_new)


def analytic_curve(lengths: list[int], aggregation: str, weight: float, *, num_responses: int,
                   mean_length: float, max_new_tokens: int) -> list[float]:
    """w · N · f(L): the per-token weight (× N) a response of each length gets under `aggregation`."""
    f = token_weights_for_length(torch.tensor(lengths), aggregation, num_responses=num_responses,
                                 num_tokens=num_responses * mean_length, max_new_tokens=max_new_tokens)
    return [weight * num_responses * float(x) for x in f]


# ---- the verdict ------------------------------------------------------------------------------------------------

def _slope_text(slope: dict[str, Any]) -> str:
    return f"{slope['per_100_steps']:+.1f} tokens/100 steps [{slope['lo']:+.1f}, {slope['hi']:+.1f}]"


def cells_by_method(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """method → aggregation → (arm name, arm results), for methods run under per-response averaging and another."""
    by: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
    for name, arm in arms.items():
        if arm.get("method") and arm.get("aggregation") in AGGREGATIONS:
            by.setdefault(arm["method"], {}).setdefault(arm["aggregation"], (name, arm))
    return {m: cells for m, cells in by.items() if PER_RESPONSE in cells and len(cells) > 1}


def _compare_cells(cells: dict[str, tuple[str, dict[str, Any]]], slope: dict[str, Any]) -> list[list[str]]:
    """[stopped, slowed, same]: the other aggregations' cells, by how their wrong-length slope compares."""
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
    return [stopped, slowed, same]


def _grew_verdict(method: str, cells: dict[str, tuple[str, dict[str, Any]]]) -> str:
    """The verdict for a method whose wrong-response length grew under per-response averaging."""
    avg_name, avg = cells[PER_RESPONSE]
    slope = avg["length_wrong_slope"]
    stopped, slowed, same = _compare_cells(cells, slope)
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
    return text


def causal_verdicts(arms: dict[str, dict[str, Any]]) -> list[str]:
    """Per method crossed with aggregations: does wrong length grow under per-response averaging, and stop otherwise?"""
    out = []
    for method, cells in cells_by_method(arms).items():
        avg_name, avg = cells[PER_RESPONSE]
        slope = avg.get("length_wrong_slope")
        if slope is None:
            out.append(f"{method}: too few steps with wrong responses under {PER_RESPONSE} to judge the length effect.")
        elif slope["lo"] <= 0:
            out.append(f"{method}: wrong-response length did not grow under per-response averaging ({avg_name}: "
                       f"{_slope_text(slope)}), so this run shows no length effect for this method to explain.")
        else:
            out.append(_grew_verdict(method, cells))
    return out
