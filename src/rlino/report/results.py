"""The numbers of a report (results.json): accuracies with their intervals, length slopes, measured token weights."""

from __future__ import annotations

from typing import Any

from rlino.files import json_safe
from rlino.report.length import causal_verdicts, token_weight_summary
from rlino.report.read import ArmRun, Compare
from rlino.report.sentences import summary_sentences
from rlino.report.values import num, rounded, trend
from rlino.stats import ols_slope, wilson_interval


def interval(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(accuracy, lo, hi) of an eval row (a metrics row or base/eval.json), Wilson when the row lacks lo/hi."""
    acc, lo, hi = (num(row.get(f"eval/accuracy{s}")) for s in ("", "_lo", "_hi"))
    n = row.get("eval/num_items")
    if acc is not None and (lo is None or hi is None) and isinstance(n, int):
        lo, hi = wilson_interval(acc, n)
    return acc, lo, hi


def _base_results(base: dict[str, Any]) -> dict[str, Any]:
    acc, lo, hi = interval(base)
    out = {"accuracy": rounded(acc, 4), "accuracy_lo": rounded(lo, 4), "accuracy_hi": rounded(hi, 4),
           "num_items": base.get("eval/num_items"),
           "length_correct_mean": rounded(base.get("eval/length_correct_mean"), 1),
           "length_wrong_mean": rounded(base.get("eval/length_wrong_mean"), 1)}
    if "eval/greedy_accuracy" in base:
        out["greedy_accuracy"] = rounded(base["eval/greedy_accuracy"], 4)
    return out


def length_slope(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """OLS trend of a per-step training metric (e.g. length_wrong_mean) in units per 100 steps, nulls skipped."""
    points = [(row["step"], num(row.get(key))) for row in rows]
    points = [(x, y) for x, y in points if y is not None]
    fit = ols_slope([float(x) for x, _ in points], [y for _, y in points])
    if fit is None:
        return None
    out = {"per_100_steps": round(100 * fit["slope"], 3), "lo": round(100 * fit["lo"], 3),
           "hi": round(100 * fit["hi"], 3), "num_steps": fit["n"]}
    out["trend"] = trend(out)
    return out


def _arm_results(arm: ArmRun, base_accuracy: float) -> dict[str, Any]:
    final = arm.evals[-1] if arm.evals else {}
    acc, lo, hi = interval(final)
    last = arm.rows[-1] if arm.rows else {}
    intervals = [interval(row) for row in arm.evals]
    return {
        "method": arm.method,
        "aggregation": arm.config.get("method", {}).get("aggregation"),
        "accuracy": rounded(acc, 4), "accuracy_lo": rounded(lo, 4), "accuracy_hi": rounded(hi, 4),
        "delta_vs_base": None if acc is None else round(100 * (acc - base_accuracy), 2),
        "length_correct_mean": rounded(final.get("eval/length_correct_mean"), 1),
        "length_wrong_mean": rounded(final.get("eval/length_wrong_mean"), 1),
        "steps": last.get("step"),
        "planned_steps": arm.config.get("train", {}).get("steps"),
        "wall_time_s": rounded(last.get("time_s"), 1),
        "eval_steps": [row["step"] for row in arm.evals],
        "eval_accuracy": [rounded(a, 4) for a, _, _ in intervals],
        "eval_accuracy_lo": [rounded(lo_, 4) for _, lo_, _ in intervals],
        "eval_accuracy_hi": [rounded(hi_, 4) for _, _, hi_ in intervals],
        "length_wrong_slope": length_slope(arm.rows, "length_wrong_mean"),
        "length_correct_slope": length_slope(arm.rows, "length_correct_mean"),
        "token_weight": token_weight_summary(arm.weights),
    }


def compute_results(compare: Compare) -> dict[str, Any]:
    """The results dict (as written to results.json) of a loaded compare folder."""
    base = _base_results(compare.base)
    arms = {arm.name: _arm_results(arm, compare.base["eval/accuracy"]) for arm in compare.arms}
    results = {"base": base, "arms": arms}
    results["summary"] = summary_sentences(results, [arm.name for arm in compare.arms if not arm.started])
    results["length_verdicts"] = causal_verdicts(arms)
    return json_safe(results)
