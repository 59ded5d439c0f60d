"""Numbers read from the run files and the way the report writes them: finite or None, percentages, intervals."""

from __future__ import annotations

import math
from typing import Any

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
