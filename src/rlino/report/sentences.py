"""The report's summary: plain sentences read off the numbers of results.json."""

from __future__ import annotations

from typing import Any

from rlino.report.values import acc_ci, has_interval, trend


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["accuracy_lo"] <= b["accuracy_hi"] and b["accuracy_lo"] <= a["accuracy_hi"]


def _accuracy_sentence(name: str, arm: dict[str, Any], base: dict[str, Any]) -> str:
    delta = arm["delta_vs_base"]
    where = "over" if delta >= 0 else "under"
    text = f"{name}: {acc_ci(arm)}, {delta:+.1f} points {where} the base ({acc_ci(base)}) after {arm['steps']} steps"
    if has_interval(arm) and has_interval(base):
        text += "; the 95% intervals overlap" if _overlap(arm, base) else "; the 95% intervals do not overlap"
    return text + "."


def _pair_sentence(a_name: str, a: dict[str, Any], b_name: str, b: dict[str, Any]) -> str:
    """Whether two arms' 95% intervals overlap, higher arm first."""
    if a["accuracy"] < b["accuracy"]:
        a_name, a, b_name, b = b_name, b, a_name, a
    if not _overlap(a, b):
        return f"{a_name} is above {b_name}: the 95% intervals do not overlap ({acc_ci(a)} vs {acc_ci(b)})."
    def holds(x: dict[str, Any], y: dict[str, Any]) -> bool:
        return x["accuracy_lo"] <= y["accuracy"] <= x["accuracy_hi"]

    if holds(a, b) and holds(b, a):
        return f"{a_name} and {b_name} are within each other's intervals ({acc_ci(a)} and {acc_ci(b)})."
    return (f"The 95% intervals of {a_name} and {b_name} overlap ({acc_ci(a)} and {acc_ci(b)}), "
            f"so this evaluation does not separate them.")


def _fmt_slope(slope: dict[str, Any]) -> str:
    """'+12.3 tokens per 100 steps, 95% CI [8.1, 16.5]', with more decimals when every number is below 1."""
    digits = 1 if max(abs(slope["lo"]), abs(slope["hi"])) >= 1 else 3
    x, lo, hi = (f"{slope[k]:.{digits}f}" for k in ("per_100_steps", "lo", "hi"))
    return f"{'' if x.startswith('-') else '+'}{x} tokens per 100 steps, 95% CI [{lo}, {hi}]"


def _length_sentence(name: str, arm: dict[str, Any]) -> str:
    wrong, correct = arm["length_wrong_slope"], arm["length_correct_slope"]
    if wrong is None:
        text = f"{name}: too few training steps with wrong responses to estimate a trend in their length"
    else:
        text = f"{name}: wrong-response length: {trend(wrong)} ({_fmt_slope(wrong)})"
    if correct is not None:
        text += f"; correct-response length: {trend(correct)} ({_fmt_slope(correct)})"
    return text + "."


def _progress_notes(name: str, arm: dict[str, Any]) -> list[str]:
    """Notes for arms that are unfinished: no step, no evaluation, fewer steps than configured."""
    if arm["steps"] is None:
        return [f"{name}: no training step logged yet."]
    notes = []
    planned = arm["planned_steps"]
    if isinstance(planned, int) and arm["steps"] < planned:
        notes.append(f"{name}: the run stopped at step {arm['steps']} of the {planned} configured.")
    if arm["accuracy"] is None:
        notes.append(f"{name}: no held-out evaluation yet, so it has no accuracy in the table.")
    return notes


def summary_sentences(results: dict[str, Any], not_started: list[str] | None = None) -> list[str]:
    """Plain sentences read off the numbers: accuracy vs base, pairwise interval overlap, length trends."""
    base, arms = results["base"], results["arms"]
    not_started = not_started or []
    out = [f"{name}: not started (no folder in runs/)." for name in not_started]
    for name, arm in arms.items():
        if name not in not_started:
            out += _progress_notes(name, arm)
    evaluated = [(name, arm) for name, arm in arms.items() if arm["accuracy"] is not None]
    out += [_accuracy_sentence(name, arm, base) for name, arm in evaluated]
    with_ci = [(name, arm) for name, arm in evaluated if has_interval(arm)]
    for i, (a_name, a) in enumerate(with_ci):
        out += [_pair_sentence(a_name, a, b_name, b) for b_name, b in with_ci[i + 1:]]
    out += [_length_sentence(name, arm) for name, arm in arms.items() if arm["steps"] is not None]
    return out
