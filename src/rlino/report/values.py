"""Numbers read from the run files and the way the report writes them: finite or None, percentages, intervals."""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any

from rlino.stats import binomial_sd

DASH = "—"


def num(value: Any) -> float | None:
    """A finite number as float, else None (the run files write null, and may write NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def rounded(value: Any, digits: int) -> float | None:
    number = num(value)
    return None if number is None else round(number, digits)


def trend(slope: dict[str, Any] | None) -> str:
    """'grew', 'shrank' or 'no clear trend' from a slope's 95% interval; 'too few steps to tell' without one."""
    if slope is None:
        return "too few steps to tell"
    if slope["lo"] > 0:
        return "grew"
    if slope["hi"] < 0:
        return "shrank"
    return "no clear trend"


def pct(acc: float | None) -> str:
    return DASH if acc is None else f"{100 * acc:.1f}"


def acc_ci(r: dict[str, Any]) -> str:
    """'37.2% [33.1, 41.5]' (or '37.2%' when the interval is unknown)."""
    if r.get("accuracy") is None:
        return DASH
    if r.get("accuracy_lo") is None or r.get("accuracy_hi") is None:
        return f"{pct(r['accuracy'])}%"
    return f"{pct(r['accuracy'])}% [{pct(r['accuracy_lo'])}, {pct(r['accuracy_hi'])}]"


def has_interval(r: dict[str, Any]) -> bool:
    return all(r.get(k) is not None for k in ("accuracy", "accuracy_lo", "accuracy_hi"))


def fmt(value: Any, spec: str = "") -> str:
    return DASH if value is None else format(value, spec)


def accuracy_floor(runs: list[dict[str, Any]]) -> float | None:
    """The binomial sd of one seed's final accuracy (a fraction) on its evaluation items, from per-seed results with
    `accuracy` and `num_items`; None when an item count is unknown. The least an interval over seeds may assume."""
    n = [r.get("num_items") for r in runs]
    if not all(isinstance(k, int) and k > 0 for k in n):
        return None
    return binomial_sd([r["accuracy"] for r in runs], min(n))


def slope_floor(slopes: list[dict[str, Any]]) -> float | None:
    """The sd one seed's slope has from its own fit (its OLS standard error `se`), averaged as a variance over the
    slopes that carry one; None when none does."""
    ses = [s["se"] for s in slopes if s.get("se") is not None]
    return math.sqrt(fmean(se * se for se in ses)) if ses else None
