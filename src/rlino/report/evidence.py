"""The evidence a claim's rule reads: the arm that runs a method, a figure's mean and t-interval over finished seeds
(or the seed-by-seed difference of two arms), and, for a verdict the intervals leave open, the seeds that would
likely decide it. `rlino.report.claims` holds the rules."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlino.report.values import accuracy_floor, slope_floor
from rlino.stats import seed_interval, t_quantile_975

MIN_SEEDS = 2
MAX_PROJECTED_SEEDS = 200
"""A projection beyond this many seeds is stated as "more than" it: the effect sits on the rule's bound."""

HOLDS, FAILS, UNSURE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    why: str
    arms: tuple[str, ...] = ()
    numbers: dict[str, Any] | None = None


class NotRun(Exception):
    """A claim's arm (or file) is missing; the message says what to add."""


class TooFewSeeds(Exception):
    """A claim's arms have fewer finished seeds in common than MIN_SEEDS."""


# ---- finding arms and forming intervals------------------------------------------------------------------------

def find_arm(arms: dict[str, dict[str, Any]], method: str, aggregation: str | None = None) -> tuple[str, dict]:
    """The arm that runs `method` with its own settings (only `method.aggregation` may be set, and only when an
    aggregation is asked for); raises NotRun naming what to add."""
    def own(arm: dict[str, Any]) -> bool:
        sets = arm.get("overrides") or []
        return all(aggregation is not None and s.startswith("method.aggregation=") for s in sets)

    found = [(name, arm) for name, arm in arms.items() if arm.get("method") == method and own(arm)
             and (aggregation is None or arm.get("aggregation") == aggregation)]
    if not found:
        changed = [name for name, arm in arms.items() if arm.get("method") == method]
        what = f"{method}" + (f" under {aggregation}" if aggregation else "")
        hint = (f"; {', '.join(changed)} change(s) its settings, so they are not the paper's row" if changed else "")
        raise NotRun(f"needs an arm running {what} (add it to compare.arms){hint}")
    named = [(n, a) for n, a in found if n == method]
    return (named or found)[0]


def finished(arm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The arm's finished seeds: replicate label -> that seed's results."""
    return {k: arm["per_seed"][k] for k in arm.get("seeds") or [] if k in (arm.get("per_seed") or {})}


Figure = Callable[[dict[str, Any]], "float | None"]


def over_seeds(name: str, arm: dict[str, Any], value: Figure) -> dict[str, Any]:
    """A per-seed figure of one arm: mean and t-interval over its finished seeds (TooFewSeeds below MIN_SEEDS), its
    sd at least the measurement's own (`FLOORS`)."""
    runs = [r for r in finished(arm).values() if value(r) is not None]
    if len(runs) < MIN_SEEDS:
        raise TooFewSeeds(f"{name} has {len(runs)} finished seed(s) with this figure; a verdict needs "
                          f"{MIN_SEEDS} or more (rlino compare --seeds 3)")
    return seed_interval([value(r) for r in runs], FLOORS[value](runs))


def paired(a: tuple[str, dict], b: tuple[str, dict], value: Figure) -> dict[str, Any]:
    """value(a) − value(b) seed by seed over the seeds both finished, with its t-interval over those seeds (sd at
    least the two measurements' own, taken as independent)."""
    (na, ra), (nb, rb) = a, b
    sa, sb = finished(ra), finished(rb)
    common = [k for k in sa if k in sb and value(sa[k]) is not None and value(sb[k]) is not None]
    if len(common) < MIN_SEEDS:
        raise TooFewSeeds(f"{na} and {nb} have {len(common)} finished seed(s) in common; a verdict needs "
                          f"{MIN_SEEDS} or more (rlino compare --seeds 3)")
    fa, fb = (FLOORS[value]([s[k] for k in common]) for s in (sa, sb))
    floor = None if fa is None or fb is None else math.sqrt(fa * fa + fb * fb)
    return seed_interval([value(sa[k]) - value(sb[k]) for k in common], floor)


def accuracy(r: dict[str, Any]) -> float | None:
    return None if r.get("accuracy") is None else 100 * r["accuracy"]


def wrong_slope(r: dict[str, Any]) -> float | None:
    slope = r.get("length_wrong_slope")
    return None if slope is None else slope["per_100_steps"]


FLOORS: dict[Any, Callable[[list[dict[str, Any]]], float | None]] = {
    accuracy: lambda runs: None if (f := accuracy_floor(runs)) is None else 100 * f,  # in points, as `accuracy`
    wrong_slope: lambda runs: slope_floor([r["length_wrong_slope"] for r in runs]),
}
"""Per figure, the sd the measurement alone gives one seed's value (`rlino.report.values`)."""


def text(fit: dict[str, Any], unit: str = "") -> str:
    return f"{fit['mean']:+.1f}{unit} [{fit['lo']:+.1f}, {fit['hi']:+.1f}] over {fit['n']} seeds"


def seeds_to_decide(fit: dict[str, Any], distance: float) -> int | None:
    """The smallest number of seeds at which this interval's half-width, t(n − 1) · sd / √n with the sd measured now,
    falls below `distance` (how far the mean lies from the bound that would decide the rule): a projection if the
    mean and spread stayed where they are, not a result. None when it would take more than MAX_PROJECTED_SEEDS."""
    sd = fit.get("sd_used")
    if sd is None or distance <= 0:
        return None
    if sd == 0:
        return MIN_SEEDS
    return next((n for n in range(MIN_SEEDS, MAX_PROJECTED_SEEDS + 1)
                 if t_quantile_975(n - 1) * sd / math.sqrt(n) < distance), None)


def projected(verdict: Verdict, fits: list[tuple[dict[str, Any], float]], any_of: bool = False) -> Verdict:
    """An inconclusive verdict with the seeds that would likely decide it: each (interval, distance from its mean to
    the bound that decides it; ≤ 0 where more seeds cannot decide it) must clear, so the most any needs; with
    `any_of`, one clearing decides, so the fewest any needs."""
    if verdict.verdict != UNSURE:
        return verdict
    if any_of:
        fits = sorted(fits, key=lambda f: seeds_to_decide(*f) or MAX_PROJECTED_SEEDS + 1)[:1]
    needs = [seeds_to_decide(fit, d) for fit, d in fits]
    numbers = dict(verdict.numbers or {})
    if fits and all(d > 0 for _, d in fits) and None not in needs:
        numbers["projected_seeds"] = max(needs)
        note = (f"; projection, not a result: about {max(needs)} seeds would decide it if the means and spreads "
                f"stayed as measured")
    elif any(d <= 0 for _, d in fits):
        note = "; more seeds would not decide it: the mean lies where neither bound of the rule can be cleared"
    else:
        note = f"; projection: more than {MAX_PROJECTED_SEEDS} seeds, the mean sits on the rule's bound"
    return Verdict(verdict.verdict, verdict.why + note, verdict.arms, numbers)
