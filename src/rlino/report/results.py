"""The numbers of a report (results.json): accuracies with their intervals, length slopes, measured token weights."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from rlino.files import json_safe
from rlino.report.claims import judge_claims
from rlino.report.length import causal_verdicts, position_summary, token_weight_summary
from rlino.report.read import ArmGroup, ArmRun, Compare
from rlino.report.sentences import summary_sentences
from rlino.report.values import accuracy_floor, num, rounded, slope_floor, trend
from rlino.run_folder import replicate_key
from rlino.stats import ols_slope, seed_interval, wilson_interval


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
           "hi": round(100 * fit["hi"], 3), "se": round(100 * fit["se"], 3), "num_steps": fit["n"]}
    out["trend"] = trend(out)
    return out


def _run_results(arm: ArmRun, base_accuracy: float) -> dict[str, Any]:
    """One run (one arm, one seed): its final evaluation with Wilson's interval over the items, slopes, weights."""
    final = arm.evals[-1] if arm.evals else {}
    acc, lo, hi = interval(final)
    last = arm.rows[-1] if arm.rows else {}
    intervals = [interval(row) for row in arm.evals]
    return {
        "method": arm.method,
        "aggregation": arm.config.get("method", {}).get("aggregation"),
        "seed": arm.config.get("train", {}).get("seed"),
        "accuracy": rounded(acc, 4), "accuracy_lo": rounded(lo, 4), "accuracy_hi": rounded(hi, 4),
        "num_items": final.get("eval/num_items"),
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


def _empty_arm(group: ArmGroup) -> dict[str, Any]:
    keys = ("aggregation", "accuracy", "accuracy_lo", "accuracy_hi", "delta_vs_base", "length_correct_mean",
            "length_wrong_mean", "steps", "planned_steps", "wall_time_s", "length_wrong_slope",
            "length_correct_slope", "token_weight", "token_weight_position")
    return {"method": group.method, **{k: None for k in keys}, "eval_steps": [], "eval_accuracy": [],
            "eval_accuracy_lo": [], "eval_accuracy_hi": []}


def _seed_slope(slopes: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The per-seed slopes' mean with a t-interval over seeds (None unless every seed has a slope)."""
    if not slopes or any(s is None for s in slopes):
        return None
    fit = seed_interval([s["per_100_steps"] for s in slopes], slope_floor(slopes))  # type: ignore[arg-type]
    out = {"per_100_steps": round(fit["mean"], 3), "lo": rounded(fit["lo"], 3), "hi": rounded(fit["hi"], 3),
           "num_seeds": fit["n"], "per_seed": [s["per_100_steps"] for s in slopes]}
    out["trend"] = trend(out) if out["lo"] is not None else "one seed"
    return out


def _seed_curve(runs: list[dict[str, Any]]) -> dict[str, list]:
    """Mean held-out accuracy per evaluation step that every seed reached, with a t-interval over seeds."""
    common = sorted(set.intersection(*(set(r["eval_steps"]) for r in runs)))
    fits = [seed_interval([r["eval_accuracy"][r["eval_steps"].index(step)] for r in runs]) for step in common]
    return {"eval_steps": common, "eval_accuracy": [rounded(f["mean"], 4) for f in fits],
            "eval_accuracy_lo": [rounded(max(0.0, f["lo"]), 4) for f in fits],
            "eval_accuracy_hi": [rounded(min(1.0, f["hi"]), 4) for f in fits]}


def _over_seeds(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An arm's figures from two or more finished seeds: means with 95% t-intervals over the seeds."""
    rs = list(runs.values())
    acc = seed_interval([r["accuracy"] for r in rs], accuracy_floor(rs))

    def mean(key: str, digits: int) -> float | None:
        values = [r[key] for r in rs if r[key] is not None]
        return rounded(fmean(values), digits) if values else None

    return {"accuracy": rounded(acc["mean"], 4), "accuracy_lo": rounded(max(0.0, acc["lo"]), 4),
            "accuracy_hi": rounded(min(1.0, acc["hi"]), 4), "accuracy_sd": rounded(acc["sd"], 4),
            "delta_vs_base": mean("delta_vs_base", 2), "length_correct_mean": mean("length_correct_mean", 1),
            "length_wrong_mean": mean("length_wrong_mean", 1), "wall_time_s": mean("wall_time_s", 1),
            "length_wrong_slope": _seed_slope([r["length_wrong_slope"] for r in rs]),
            "length_correct_slope": _seed_slope([r["length_correct_slope"] for r in rs]),
            **_seed_curve(rs)}


def _arm_results(group: ArmGroup, base_accuracy: dict[str, float], num_items: Any) -> dict[str, Any]:
    """An arm over its seeds. With one finished seed the figures are that run's (Wilson interval over the items);
    with several, the mean over the finished seeds with a 95% t-interval over them (`interval` says which)."""
    if not group.runs:
        return _empty_arm(group) | {"interval": None, "overrides": list(group.overrides), "seeds": [],
                                    "per_seed": {}, "unfinished_seeds": []}
    per_seed = {run.replicate or "run": _run_results(run, base_accuracy[run.replicate]) for run in group.runs}
    done = {k: r for k, r in per_seed.items() if r["accuracy"] is not None and r["steps"] == r["planned_steps"]}
    out = dict(next(iter(done.values())) if done else next(iter(per_seed.values())))
    pooled = group.pooled().weights  # every seed's weights.jsonl rows
    out["token_weight"], out["token_weight_position"] = token_weight_summary(pooled), position_summary(pooled)
    if len(done) >= 2:
        out |= _over_seeds(done)
        out["interval"] = (f"95% t-interval over {len(done)} seeds (sd at least the evaluation's binomial sd)")
    else:
        out["interval"] = None if out["accuracy"] is None else f"95% Wilson interval over {num_items} items, one seed"
    out |= {"overrides": list(group.overrides), "seeds": list(done), "per_seed": per_seed,
            "unfinished_seeds": [k for k in per_seed if k not in done]}
    return out


def _base_accuracy_per_run(compare: Compare) -> dict[str, float]:
    """Each replicate label's base accuracy (its own base when the compare builds several)."""
    out: dict[str, float] = {"": compare.base["eval/accuracy"]}
    for group in compare.arms:
        for run in group.runs:
            b = base_seed_of(run.replicate)
            out[run.replicate] = compare.bases.get(b, compare.base)["eval/accuracy"]
    return out


def _bases_results(compare: Compare) -> dict[str, Any]:
    base = _base_results(compare.base)
    if len(compare.bases) > 1:
        fit = seed_interval([b["eval/accuracy"] for b in compare.bases.values()])
        base |= {"accuracy": rounded(fit["mean"], 4), "accuracy_lo": rounded(fit["lo"], 4),
                 "accuracy_hi": rounded(fit["hi"], 4), "interval": f"95% t-interval over {fit['n']} base seeds",
                 "per_base_seed": {f"base-{b}": _base_results(e) for b, e in compare.bases.items()}}
    return base


def base_seed_of(replicate: str) -> int | None:
    """The base seed of a replicate label (`base-1-seed-3` -> 1), None for the one base."""
    key = replicate_key(replicate)
    return None if key is None or key[0] < 0 else key[0]


def compute_results(compare: Compare) -> dict[str, Any]:
    """The results dict (as written to results.json) of a loaded compare folder."""
    base = _bases_results(compare)
    per_run = _base_accuracy_per_run(compare)
    arms = {arm.name: _arm_results(arm, per_run, base.get("num_items") or "?") for arm in compare.arms}
    results = {"base": base, "arms": arms}
    results["summary"] = summary_sentences(results, [arm.name for arm in compare.arms if not arm.started])
    results["length_verdicts"] = causal_verdicts(arms)
    results["claims"] = judge_claims(arms, compare.equivalence, base["accuracy"])
    return json_safe(results)
