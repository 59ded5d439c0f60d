"""The claims scorecard: each claim of the paper (arXiv 2505.13697), and of the studies that answer it, checked
against the arms a comparison ran.

A claim is a row of `CLAIMS`: what the paper says, the method rows it reads and the rule that decides it; adding a
claim is adding a row (and its rule, a function of the results). Every verdict is one of

    holds / does not hold / inconclusive / not run

and comes with the numbers behind it. The rules work on the seeds: an arm's figure is its mean over finished seeds
with a 95% t-interval over those seeds (`rlino.stats.seed_interval`), and a difference between two arms is taken
seed by seed (the arms of one seed share prompts and sampling noise) before its t-interval is formed; the sd
behind each interval is at least what the measurement alone gives (the binomial sd of an accuracy on its items, a
slope's own standard error), since 2 or 3 seeds can agree by chance. One seed
gives no interval over seeds, so every seed-based claim is "inconclusive" with one seed: a verdict needs at least
`MIN_SEEDS`. The thresholds are named constants below, stated in each rule's text.

Arms are found by method, not by name: a claim uses the arm that runs the method row with its own settings (named
after the method if several do), and says which arm it used; an arm that changes the row's settings with `set` is
not the paper's method and is not used (the length claim allows changes of `method.aggregation` only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlino.report.evidence import (
    FAILS,
    HOLDS,
    NOT_RUN,
    UNSURE,
    NotRun,
    TooFewSeeds,
    Verdict,
    accuracy,
    find_arm,
    over_seeds,
    paired,
    projected,
    text,
    wrong_slope,
)

MARGIN = 5.0
"""Points of held-out accuracy within which two methods count as comparable (the interval of the difference must
lie inside ±MARGIN); a difference whose interval lies wholly outside counts as a real gap."""
COLLAPSE = 5.0
"""Held-out accuracy (%) below which an arm has collapsed to near 0."""
PAPER = "arXiv 2505.13697"
ZHU = "Zhu et al. 2025, arXiv 2506.01347"
PER_RESPONSE = "seq-mean-token-mean"
OTHER_AGGREGATIONS = ("token-mean", "seq-mean-token-sum-norm")
EQUIVALENCE_FILE = "equivalence.json"

@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    needs: tuple[str, ...]
    rule: str
    judge: Callable[[dict[str, Any], dict[str, Any]], Verdict]
    """(results' arms, {"equivalence": rlino equivalence's results or None, "base_accuracy": % or None}) -> Verdict"""
    source: str = PAPER
    """Where the claim comes from: the paper, or the study a row sets against it."""


# ---- the rules -------------------------------------------------------------------------------------------------------

def _comparable_verdict(a: tuple[str, dict], b: tuple[str, dict]) -> Verdict:
    fit = paired(a, b, accuracy)
    why = f"{a[0]} − {b[0]}: {text(fit, ' points')}"
    if -MARGIN <= fit["lo"] and fit["hi"] <= MARGIN:
        return Verdict(HOLDS, why + f", inside ±{MARGIN:g}", (a[0], b[0]), fit)
    if fit["lo"] > MARGIN or fit["hi"] < -MARGIN:
        side = "above" if fit["lo"] > MARGIN else "below"
        return Verdict(FAILS, why + f": {a[0]} is {side} {b[0]} by more than {MARGIN:g}", (a[0], b[0]), fit)
    v = Verdict(UNSURE, why + f": the interval crosses ±{MARGIN:g}", (a[0], b[0]), fit)
    return projected(v, [(fit, abs(abs(fit["mean"]) - MARGIN))])


LEARNING_RATE = "train.learning_rate="


def at_other_rates(arms: dict[str, Any], a_method: str, b_method: str) -> list[tuple[str, tuple, tuple]]:
    """(rate, a arm, b arm) for each learning rate at which both methods also ran with that one change: arms whose
    only `set` entry is `train.learning_rate=RATE` (the same RATE for both)."""
    def by_rate(method: str) -> dict[str, tuple[str, dict]]:
        out: dict[str, tuple[str, dict]] = {}
        for name, arm in arms.items():
            sets = arm.get("overrides") or []
            if arm.get("method") == method and len(sets) == 1 and sets[0].replace(" ", "").startswith(LEARNING_RATE):
                out.setdefault(str(float(sets[0].split("=", 1)[1])), (name, arm))
        return out
    ra, rb = by_rate(a_method), by_rate(b_method)
    return [(rate, ra[rate], rb[rate]) for rate in sorted(set(ra) & set(rb), key=float)]


def comparable(a_method: str, b_method: str) -> Callable[[dict, dict], Verdict]:
    """Holds when the interval of (a − b) lies within ±MARGIN; does not hold when it lies wholly outside. The verdict
    is the methods' own rows'; where both also ran at another learning rate (`at_other_rates`), that rate's verdict is
    stated beside it (the paper uses one rate for every method, and a collapse can belong to the rate)."""
    def judge(arms: dict[str, Any], _: dict) -> Verdict:
        v = _comparable_verdict(find_arm(arms, a_method), find_arm(arms, b_method))
        notes, numbers = [], dict(v.numbers or {})
        for rate, a, b in at_other_rates(arms, a_method, b_method):
            try:
                other = _comparable_verdict(a, b)
            except TooFewSeeds as e:
                notes.append(f"at train.learning_rate = {rate}: inconclusive ({e})")
                continue
            notes.append(f"at train.learning_rate = {rate}: {other.verdict} ({other.why})")
            numbers.setdefault("other_rates", {})[rate] = {"verdict": other.verdict, **(other.numbers or {})}
        if not notes:
            return v
        return Verdict(v.verdict, v.why + "; " + "; ".join(notes), v.arms, numbers)
    return judge


def not_much_below(a_method: str, b_method: str) -> Callable[[dict, dict], Verdict]:
    """Holds when the interval of (a − b) lies above −MARGIN; does not hold when it lies wholly below it."""
    def judge(arms: dict[str, Any], _: dict) -> Verdict:
        a, b = find_arm(arms, a_method), find_arm(arms, b_method)
        fit = paired(a, b, accuracy)
        why = f"{a[0]} − {b[0]}: {text(fit, ' points')}"
        if fit["lo"] >= -MARGIN:
            better = f"; {a[0]} is above {b[0]}" if fit["lo"] > 0 else ""
            return Verdict(HOLDS, why + f", not below −{MARGIN:g}{better}", (a[0], b[0]), fit)
        if fit["hi"] < -MARGIN:
            return Verdict(FAILS, why + f": below {b[0]} by more than {MARGIN:g}", (a[0], b[0]), fit)
        v = Verdict(UNSURE, why + f": the interval crosses −{MARGIN:g}", (a[0], b[0]), fit)
        return projected(v, [(fit, abs(fit["mean"] + MARGIN))])
    return judge


def collapses(method: str) -> Callable[[dict, dict], Verdict]:
    """Holds when the accuracy's interval lies below COLLAPSE %; does not hold when it lies at or above the base
    model's accuracy (no fall at all); in between it fell but not (yet) to near 0: inconclusive."""
    def judge(arms: dict[str, Any], extra: dict) -> Verdict:
        name, arm = find_arm(arms, method)
        fit = over_seeds(name, arm, accuracy)
        base = extra.get("base_accuracy")
        why = (f"{name}: held-out accuracy {fit['mean']:.1f}% [{max(0.0, fit['lo']):.1f}, {fit['hi']:.1f}] over "
               f"{fit['n']} seeds" + ("" if base is None else f" (base model {base:.1f}%)"))
        if fit["hi"] < COLLAPSE:
            return Verdict(HOLDS, why + f", below {COLLAPSE:g}%", (name,), fit)
        if base is not None and fit["lo"] >= base:
            return Verdict(FAILS, why + ": no fall below the base model", (name,), fit)
        fell = base is not None and fit["hi"] < base
        v = Verdict(UNSURE, why + (": below the base model, but not below " if fell else ": the interval crosses ")
                    + f"{COLLAPSE:g}%", (name,), fit)
        m = fit["mean"]  # decided below COLLAPSE (holds) or at or above the base (does not hold); between, never
        return projected(v, [(fit, COLLAPSE - m if m < COLLAPSE else -1.0 if base is None else m - base)])
    return judge


def _trend(fit: dict[str, Any]) -> str:
    return "grows" if fit["lo"] > 0 else "shrinks" if fit["hi"] < 0 else "no clear trend"


def lengths_grow(arms: dict[str, Any], _: dict) -> Verdict:
    """Holds when wrong-length slopes grow (interval above 0) for grpo and fisft_pos_neg and fisft_pos's does not
    (interval reaching 0 or below) while being below grpo's seed by seed; does not hold when grpo's or
    fisft_pos_neg's clearly shrink or fisft_pos's clearly grows."""
    g, pn, p = find_arm(arms, "grpo"), find_arm(arms, "fisft_pos_neg"), find_arm(arms, "fisft_pos")
    fits = {name: over_seeds(name, arm, wrong_slope) for name, arm in (g, pn, p)}
    below = paired(p, g, wrong_slope)
    why = "; ".join(f"{n}: {text(f)} ({_trend(f)})" for n, f in fits.items())
    why = f"wrong-length slope, tokens per 100 steps: {why}; {p[0]} − {g[0]}: {text(below)}"
    names = (g[0], pn[0], p[0])
    numbers = {**{n: f for n, f in fits.items()}, f"{p[0]} - {g[0]}": below}
    if fits[g[0]]["hi"] < 0 or fits[pn[0]]["hi"] < 0 or fits[p[0]]["lo"] > 0:
        return Verdict(FAILS, why, names, numbers)
    if fits[g[0]]["lo"] > 0 and fits[pn[0]]["lo"] > 0 and below["hi"] < 0:
        return Verdict(HOLDS, why, names, numbers)
    v = Verdict(UNSURE, why, names, numbers)
    # a mean on the failing side: one interval clearing 0 decides "does not hold"
    failing = [(f, d) for f, d in ((fits[g[0]], -fits[g[0]]["mean"]), (fits[pn[0]], -fits[pn[0]]["mean"]),
                                   (fits[p[0]], fits[p[0]]["mean"])) if d > 0]
    if failing:
        return projected(v, failing, any_of=True)
    # else, to hold, grpo's and fisft_pos_neg's slopes must clear 0 upwards and fisft_pos − grpo downwards
    return projected(v, [(fits[g[0]], fits[g[0]]["mean"]), (fits[pn[0]], fits[pn[0]]["mean"]), (below, -below["mean"])])


def _aggregation_cells(arms: dict[str, Any], method: str) -> tuple[tuple[str, dict], list[tuple[str, dict]]]:
    """The method's arm under per-response averaging and its arms under the other aggregations (NotRun if none)."""
    avg = find_arm(arms, method, PER_RESPONSE)
    others = []
    for aggregation in OTHER_AGGREGATIONS:
        try:
            others.append(find_arm(arms, method, aggregation))
        except NotRun:
            pass
    if not others:
        raise NotRun(f"needs {method} under token-mean or seq-mean-token-sum-norm as well "
                     "(rlino compare configs/length-ablation.toml)")
    return avg, others


def _method_cause(arms: dict[str, Any], method: str) -> tuple[str, str]:
    """(verdict, why) of the aggregation claim for one method."""
    avg, others = _aggregation_cells(arms, method)
    grow = over_seeds(avg[0], avg[1], wrong_slope)
    parts = [f"{avg[0]}: {text(grow)} ({_trend(grow)})"]
    slower, faster = [], []
    for other in others:
        diff = paired(other, avg, wrong_slope)
        parts.append(f"{other[0]} − {avg[0]}: {text(diff)}")
        slower.append(diff["hi"] < 0)
        faster.append(diff["lo"] > 0)
    why = f"{method}: " + "; ".join(parts)
    if grow["lo"] <= 0:
        return UNSURE, why + " (no growth under per-response averaging to explain)"
    if any(faster):
        return FAILS, why
    return (HOLDS if all(slower) else UNSURE), why


def aggregation_causes_growth(arms: dict[str, Any], _: dict) -> Verdict:
    """Per method (grpo, fisft_pos_neg) with aggregation cells: holds when wrong length grows under per-response
    averaging and every other aggregation's slope is lower seed by seed (interval of the difference below 0); does not
    hold when another aggregation's slope is higher; a method with no growth is inconclusive. Over the methods judged:
    holds when each holds, does not hold when one does not."""
    found, missing = [], []
    for method in ("grpo", "fisft_pos_neg"):
        try:
            found.append(_method_cause(arms, method))
        except NotRun as e:
            missing.append(str(e))
    if not found:
        raise NotRun(missing[0])
    verdicts = {v for v, _ in found}  # every method judged must hold; one that does not decides
    verdict = FAILS if FAILS in verdicts else HOLDS if verdicts == {HOLDS} else UNSURE
    return Verdict(verdict, "; ".join(why for _, why in found))


def equivalence_row(_: dict[str, Any], extra: dict) -> Verdict:
    """Read from `rlino equivalence --json DIR/equivalence.json`: holds when the fisft_adv vs grpo_no_kl first-update
    row agrees within its tolerance, does not hold when it does not."""
    equivalence = extra.get("equivalence")
    if equivalence is None:
        raise NotRun(f"needs {EQUIVALENCE_FILE} in the compare folder (rlino equivalence --json "
                     f"DIR/{EQUIVALENCE_FILE})")
    rows = [r for r in equivalence.get("summary") or [] if r.get("pair") == "fisft_adv vs grpo_no_kl"
            and r.get("expected_equal")]
    if not rows:
        raise NotRun(f"{EQUIVALENCE_FILE} has no 'fisft_adv vs grpo_no_kl' first-update row")
    row = rows[0]
    why = (f"relative L2 difference of the gradients max {row['rel_diff_max']:.1e} (tolerance "
           f"{equivalence.get('tolerance')}), cosine {row['cosine_mean']:.6f}, {equivalence.get('batches')} batches")
    return Verdict(HOLDS if row.get("agrees") else FAILS, why, (), row)


CLAIMS = (
    Claim("fisft_pos_neg_matches_grpo", "F-ISFT+− reaches held-out accuracy comparable to GRPO",
          ("fisft_pos_neg", "grpo"), f"the 95% interval over seeds of the paired difference lies within ±{MARGIN:g} "
          f"points (holds) or wholly outside (does not hold)", comparable("fisft_pos_neg", "grpo")),
    Claim("fisft_pos_matches_grpo", "F-ISFT+ reaches accuracy comparable to, or slightly below, GRPO",
          ("fisft_pos", "grpo"), f"the interval of the paired difference lies above −{MARGIN:g} points (holds) or "
          f"wholly below it (does not hold)", not_much_below("fisft_pos", "grpo")),
    Claim("fisft_neg_collapses", "F-ISFT− alone collapses to near 0 (the paper's finding on Countdown)", ("fisft_neg",),
          f"the interval over seeds of the accuracy lies below {COLLAPSE:g}% (holds), or at or above the base "
          "model's accuracy (does not hold)", collapses("fisft_neg")),
    Claim("wrong_lengths_grow", "Wrong responses grow longer under GRPO and F-ISFT+−, not under F-ISFT+",
          ("grpo", "fisft_pos_neg", "fisft_pos"), "wrong-length slopes (tokens per 100 steps, t-interval over "
          "seeds): above 0 for grpo and fisft_pos_neg, and fisft_pos not above 0 and below grpo seed by seed (holds); "
          "grpo or fisft_pos_neg below 0, or fisft_pos above 0 (does not hold)", lengths_grow),
    Claim("aggregation_causes_growth", "The even split of the reward over a response's tokens (the per-response mean) "
          "drives that growth: it stops or slows under token-mean / seq-mean-token-sum-norm",
          ("grpo@* or fisft_pos_neg@* under the three aggregations",), "wrong length grows under per-response "
          "averaging and the other aggregations' slopes are lower seed by seed (holds); higher (does not hold)",
          aggregation_causes_growth),
    Claim("fisft_adv_is_grpo_no_kl", "On the first update of a fresh batch, F-ISFT with GRPO's weights has exactly "
          "GRPO-without-KL's gradient", ("rlino equivalence",), "the gradients agree within the tolerance of "
          "`rlino equivalence` on every batch", equivalence_row),
    Claim("grpo_no_kl_matches_grpo", "GRPO without the KL term is comparable to GRPO", ("grpo_no_kl", "grpo"),
          f"the 95% interval over seeds of the paired difference lies within ±{MARGIN:g} points (holds) or wholly "
          "outside (does not hold)", comparable("grpo_no_kl", "grpo")),
    Claim("ppo_matches_grpo", "PPO with a learned critic (credit per token) is comparable to GRPO on this task (the "
          "paper's later version: within about 1 point on GSM8K at 7–8B)", ("ppo", "grpo"),
          f"the 95% interval over seeds of the paired difference lies within ±{MARGIN:g} points (holds) or wholly "
          "outside (does not hold)", comparable("ppo", "grpo")),
    Claim("nsr_collapses", "Negatives only collapses with the clipped ratio too: NSR (−1 on wrong responses, 0 on "
          "correct, PPO's clip, token-mean) falls to near 0 as F-ISFT− does (the counter-claim: it does not)",
          ("nsr",), f"the interval over seeds of the accuracy lies below {COLLAPSE:g}% (holds), or at or above the "
          "base model's accuracy (does not hold)", collapses("nsr"), source=ZHU),
    Claim("nsr_matches_grpo", "NSR reaches accuracy comparable to GRPO or above (MATH pass@1 75.7 against 76.3 at 7B)",
          ("nsr", "grpo"), f"the interval of the paired difference lies above −{MARGIN:g} points (holds) or wholly "
          f"below it (does not hold)", not_much_below("nsr", "grpo"), source=ZHU),
    Claim("w_reinforce_matches_grpo", "W-REINFORCE (λ = 0.1 on correct, −1 on wrong responses) reaches accuracy "
          "comparable to GRPO or above (76.6 against 76.3)", ("w_reinforce", "grpo"), f"the interval of the paired "
          f"difference lies above −{MARGIN:g} points (holds) or wholly below it (does not hold)",
          not_much_below("w_reinforce", "grpo"), source=ZHU),
)


def judge_claims(arms: dict[str, Any], equivalence: dict[str, Any] | None = None,
                 base_accuracy: float | None = None) -> list[dict[str, Any]]:
    """Every claim's verdict against the results' arms, `rlino equivalence`'s results when present and the base
    model's accuracy (a fraction, as in results.json)."""
    extra = {"equivalence": equivalence, "base_accuracy": None if base_accuracy is None else 100 * base_accuracy}
    out = []
    for claim in CLAIMS:
        try:
            v = claim.judge(arms, extra)
        except NotRun as e:
            v = Verdict(NOT_RUN, str(e))
        except TooFewSeeds as e:
            v = Verdict(UNSURE, str(e))
        out.append({"id": claim.id, "claim": claim.text, "source": claim.source, "verdict": v.verdict, "why": v.why,
                    "rule": claim.rule, "arms": list(v.arms), "numbers": v.numbers})
    return out
