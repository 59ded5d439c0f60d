"""Small statistics shared by evaluation and reports (no torch here, so reports stay light)."""

from __future__ import annotations

import math
from statistics import NormalDist, fmean
from typing import Any


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion measured on n items (sound near 0 and 1, unlike p ± 1.96·se)."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond 30 the expansion in `t_quantile_975`
# is accurate to 1e-4, so no statistics package is needed.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t distribution with `df` degrees of freedom (the 95% two-sided multiplier)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = NormalDist().inv_cdf(0.975)
    # Cornish-Fisher expansion of t around the normal quantile
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def ols_slope(xs: list[float], ys: list[float]) -> dict[str, Any] | None:
    """Least-squares slope of ys on xs with its 95% interval (standard error and t with n-2 degrees of freedom).

    Returns {"slope", "lo", "hi", "se", "n"}, or None with fewer than 3 points or when all xs are equal.
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"xs and ys differ in length: {n} vs {len(ys)}")
    if n < 3:
        return None
    mx, my = fmean(xs), fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    sse = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(sse / (n - 2) / sxx)
    half = t_quantile_975(n - 2) * se
    return {"slope": slope, "lo": slope - half, "hi": slope + half, "se": se, "n": n}


def seed_interval(values: list[float], floor_sd: float | None = None) -> dict[str, Any]:
    """The mean of a figure measured once per seed, with a 95% t-interval over the seeds (df = seeds - 1).

    Each seed's value already carries that run's evaluation noise, so the spread of the values covers both the
    between-seed spread and the measurement. With 2 or 3 seeds the sample sd can come out near 0 by chance (two seeds
    at the same accuracy); `floor_sd`, the sd the measurement alone gives one seed's value (e.g. the binomial sd of
    an accuracy on n items), keeps the interval from being narrower than the measurement allows: the sd used is
    max(sd, floor_sd). With one seed no spread can be estimated and `lo`/`hi` are None.
    Returns {"mean", "lo", "hi", "sd", "sd_used", "n"}.
    """
    n = len(values)
    if n == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = fmean(values)
    if n == 1:
        return {"mean": mean, "lo": None, "hi": None, "sd": None, "sd_used": None, "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    used = max(sd, floor_sd or 0.0)
    half = t_quantile_975(n - 1) * used / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "sd_used": used, "n": n}


def binomial_sd(accuracies: list[float], n_items: int) -> float:
    """The sd of one accuracy measured on n items, sqrt(p(1-p)/n), averaged (as a variance) over the values."""
    return math.sqrt(fmean(p * (1 - p) for p in accuracies) / n_items)
