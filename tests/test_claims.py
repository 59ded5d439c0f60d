"""The claims scorecard (rlino.report.claims): each rule on synthetic results, with the intervals worked by hand.

Every interval below is a 95% t-interval over 3 seeds: mean ± 4.303 · sd / √3 (4.303 = Student's t, 0.975 quantile,
2 degrees of freedom, from a printed table), with sd the sample standard deviation (n − 1).
"""

from __future__ import annotations

import json
import math

import pytest
from test_report import noisy_flat, write_arm, write_base, write_compare_toml

from rlino.report import build_report
from rlino.report.claims import judge_claims

T2 = 4.303
SEEDS = ("seed-0", "seed-1", "seed-2")


def by_hand(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, mean - T2 * sd / math.sqrt(n), mean + T2 * sd / math.sqrt(n)


def arm(method: str, accs: list[float], slopes: list[float] | None = None, *, aggregation="seq-mean-token-mean",
        overrides: tuple[str, ...] = (), seeds=SEEDS) -> dict:
    """An arm of results.json with these per-seed accuracies (%) and wrong-length slopes (tokens / 100 steps)."""
    slopes = slopes or [0.0] * len(accs)
    per_seed = {k: {"accuracy": a / 100, "length_wrong_slope": {"per_100_steps": s}}
                for k, a, s in zip(seeds, accs, slopes)}
    return {"method": method, "aggregation": aggregation, "overrides": list(overrides), "seeds": list(per_seed),
            "per_seed": per_seed}


def verdict(arms: dict, claim: str, equivalence: dict | None = None, base: float | None = 0.18) -> dict:
    return next(c for c in judge_claims(arms, equivalence, base) if c["id"] == claim)


GRPO = [30.0, 32.0, 28.0]


@pytest.mark.parametrize("other,expected", [
    ([29.0, 33.0, 27.0], "holds"),           # differences −1, +1, −1: [−3.2, +2.5] inside ±5
    ([3.0, 6.0, 1.0], "does not hold"),      # −27, −26, −27: wholly below −5
    ([22.0, 34.0, 25.0], "inconclusive"),    # −8, +2, −3: crosses −5
])
def test_comparable_rule_on_paired_differences(other, expected):
    arms = {"grpo": arm("grpo", GRPO), "fisft_pos_neg": arm("fisft_pos_neg", other)}
    c = verdict(arms, "fisft_pos_neg_matches_grpo")
    assert c["verdict"] == expected
    mean, lo, hi = by_hand([o - g for o, g in zip(other, GRPO)])
    assert [c["numbers"]["mean"], c["numbers"]["lo"], c["numbers"]["hi"]] == pytest.approx([mean, lo, hi], abs=2e-3)
    assert c["arms"] == ["fisft_pos_neg", "grpo"]
    # the same rule for GRPO without KL
    arms = {"grpo": arm("grpo", GRPO), "grpo_no_kl": arm("grpo_no_kl", other)}
    assert verdict(arms, "grpo_no_kl_matches_grpo")["verdict"] == expected
    # and for PPO with a critic; a ppo arm with changed settings is not the row
    arms = {"grpo": arm("grpo", GRPO), "ppo": arm("ppo", other)}
    assert verdict(arms, "ppo_matches_grpo")["verdict"] == expected
    arms["ppo"] = arm("ppo", other, overrides=("critic.lam=1.0",))
    assert verdict(arms, "ppo_matches_grpo")["verdict"] == "not run"


def test_claim_1_states_the_verdict_at_another_learning_rate_beside_its_own():
    """The paper uses one rate for every method; when both methods also ran at another rate (arms whose only change
    is train.learning_rate), claim 1 keeps the default rows' verdict and states the other rate's beside it."""
    low = ("train.learning_rate=1e-4",)
    arms = {"grpo": arm("grpo", GRPO), "fisft_pos_neg": arm("fisft_pos_neg", [3.0, 6.0, 1.0]),
            "grpo_low": arm("grpo", [25.0, 27.0, 24.0], overrides=low),
            "fisft_pos_neg_low": arm("fisft_pos_neg", [24.0, 28.0, 23.0], overrides=(" train.learning_rate = 0.0001",))}
    c = verdict(arms, "fisft_pos_neg_matches_grpo")
    assert c["verdict"] == "does not hold" and c["arms"] == ["fisft_pos_neg", "grpo"]  # the default rows decide
    mean, lo, hi = by_hand([-1.0, 1.0, -1.0])  # at 1e-4: 24 − 25, 28 − 27, 23 − 24
    other = c["numbers"]["other_rates"]["0.0001"]
    assert other["verdict"] == "holds"
    assert [other["mean"], other["lo"], other["hi"]] == pytest.approx([mean, lo, hi], abs=2e-3)
    assert "at train.learning_rate = 0.0001: holds (fisft_pos_neg_low − grpo_low" in c["why"]
    # one method alone at the other rate, or a second change beside the rate, is no pair: nothing is added
    for changed in ({"grpo_low": None}, {"fisft_pos_neg_low": arm("fisft_pos_neg", [24.0, 28.0, 23.0],
                                                                  overrides=low + ("method.beta=0.1",))}):
        trimmed = {k: v for k, v in {**arms, **changed}.items() if v is not None}
        c = verdict(trimmed, "fisft_pos_neg_matches_grpo")
        assert "other_rates" not in c["numbers"] and "learning_rate" not in c["why"]


@pytest.mark.parametrize("other,expected", [
    ([27.0, 30.0, 26.0], "holds"),           # −3, −2, −2: [−3.8, −1.2], above −5 ("slightly below")
    ([40.0, 45.0, 41.0], "holds"),           # clearly above grpo: not below, so it holds (and says so)
    ([10.0, 12.0, 9.0], "does not hold"),    # −20, −20, −19
    ([27.0, 33.0, 20.0], "inconclusive"),    # −3, +1, −8: crosses −5
])
def test_not_much_below_rule(other, expected):
    arms = {"grpo": arm("grpo", GRPO), "fisft_pos": arm("fisft_pos", other)}
    c = verdict(arms, "fisft_pos_matches_grpo")
    assert c["verdict"] == expected
    if other[0] == 40.0:
        assert "fisft_pos is above grpo" in c["why"]


@pytest.mark.parametrize("accs,expected", [
    ([1.0, 2.0, 0.5], "holds"),             # [−0.7, +3.0]: below 5%
    ([22.0, 24.0, 23.0], "does not hold"),  # [20.5, 25.5]: at or above the base's 18%
    ([2.0, 8.0, 4.0], "inconclusive"),      # [−2.9, +12.3]: crosses 5%
    ([9.0, 11.0, 10.0], "inconclusive"),    # [7.5, 12.5]: fell below the base, not to near 0
])
def test_collapse_rule(accs, expected):
    c = verdict({"fisft_neg": arm("fisft_neg", accs)}, "fisft_neg_collapses", base=0.18)
    assert c["verdict"] == expected
    if accs[0] == 9.0:
        assert "below the base model, but not below 5%" in c["why"]
    mean, lo, hi = by_hand(accs)
    assert [c["numbers"]["mean"], c["numbers"]["lo"], c["numbers"]["hi"]] == pytest.approx([mean, lo, hi], abs=2e-3)


@pytest.mark.parametrize("grpo,pos_neg,pos,expected", [
    ([10, 12, 8], [100, 150, 120], [-5, -3, -8], "holds"),
    ([10, 12, 8], [100, 150, 120], [10, 12, 14], "does not hold"),      # fisft_pos grows too
    ([-10, -12, -8], [100, 150, 120], [-5, -3, -8], "does not hold"),   # grpo's wrong responses shrink
    ([10, -2, 5], [100, 150, 120], [-5, -3, -8], "inconclusive"),       # grpo: no clear trend over seeds
])
def test_length_growth_rule(grpo, pos_neg, pos, expected):
    arms = {"grpo": arm("grpo", GRPO, grpo), "fisft_pos_neg": arm("fisft_pos_neg", GRPO, pos_neg),
            "fisft_pos": arm("fisft_pos", GRPO, pos)}
    assert verdict(arms, "wrong_lengths_grow")["verdict"] == expected


def cells(method: str, per_response: list[float], token_mean: list[float], sum_norm: list[float]) -> dict:
    return {f"{method}@{agg}": arm(method, GRPO, slopes, aggregation=agg, overrides=(f"method.aggregation={agg}",))
            for agg, slopes in (("seq-mean-token-mean", per_response), ("token-mean", token_mean),
                                ("seq-mean-token-sum-norm", sum_norm))}


@pytest.mark.parametrize("token_mean,expected", [
    ([1, -1, 0], "holds"),             # −9, −13, −8 below the per-response slope seed by seed
    ([20, 25, 22], "does not hold"),   # +10, +13, +14: faster than under per-response averaging
    ([5, 14, 2], "inconclusive"),      # −5, +2, −6
])
def test_aggregation_rule(token_mean, expected):
    arms = cells("grpo", [10, 12, 8], token_mean, [2, 0, 1])
    c = verdict(arms, "aggregation_causes_growth")
    assert c["verdict"] == expected
    # no growth under per-response averaging: nothing to explain
    assert verdict(cells("grpo", [1, -2, 0], token_mean, [2, 0, 1]), "aggregation_causes_growth")[
        "verdict"] == "inconclusive"


def test_not_run_names_what_to_add_and_renamed_or_changed_arms():
    arms = {"grpo": arm("grpo", GRPO), "fisft_pos": arm("fisft_pos", [27.0, 30.0, 26.0])}
    card = {c["id"]: c for c in judge_claims(arms)}
    assert card["fisft_pos_neg_matches_grpo"]["verdict"] == "not run"
    assert "needs an arm running fisft_pos_neg" in card["fisft_pos_neg_matches_grpo"]["why"]
    assert card["aggregation_causes_growth"]["verdict"] == "not run"
    assert "configs/length-ablation.toml" in card["aggregation_causes_growth"]["why"]
    assert card["fisft_adv_is_grpo_no_kl"]["verdict"] == "not run"
    assert "rlino equivalence --json" in card["fisft_adv_is_grpo_no_kl"]["why"]
    # an arm renamed in the config is found by its method, and the claim says which arm it used
    renamed = {"baseline": arm("grpo", GRPO), "fisft_pos": arm("fisft_pos", [27.0, 30.0, 26.0])}
    c = verdict(renamed, "fisft_pos_matches_grpo")
    assert c["verdict"] == "holds" and c["arms"] == ["fisft_pos", "baseline"]
    # an arm *named* grpo that runs another method, or grpo with changed settings, is not the paper's grpo
    wrong = {"grpo": arm("fisft_pos", GRPO), "fisft_pos": arm("fisft_pos", [27.0, 30.0, 26.0])}
    assert verdict(wrong, "fisft_pos_matches_grpo")["verdict"] == "not run"
    changed = {"grpo_b": arm("grpo", GRPO, overrides=("method.kl_coef=0.5",)),
               "fisft_pos": arm("fisft_pos", [27.0, 30.0, 26.0])}
    c = verdict(changed, "fisft_pos_matches_grpo")
    assert c["verdict"] == "not run" and "grpo_b change(s) its settings" in c["why"]


def test_one_seed_or_unpaired_seeds_are_inconclusive():
    one = {"grpo": arm("grpo", [30.0], seeds=("seed-0",)), "fisft_pos": arm("fisft_pos", [5.0], seeds=("seed-0",))}
    c = verdict(one, "fisft_pos_matches_grpo")
    assert c["verdict"] == "inconclusive" and "1 finished seed(s) in common" in c["why"]
    unpaired = {"grpo": arm("grpo", [30.0, 31.0], seeds=("seed-0", "seed-1")),
                "fisft_pos": arm("fisft_pos", [5.0, 6.0], seeds=("seed-2", "seed-3"))}
    assert verdict(unpaired, "fisft_pos_matches_grpo")["verdict"] == "inconclusive"
    assert verdict({"fisft_neg": arm("fisft_neg", [0.0], seeds=("seed-0",))}, "fisft_neg_collapses")[
        "verdict"] == "inconclusive"


EQUIVALENCE = {"batches": 3, "tolerance": 1e-5, "summary": [
    {"pair": "fisft_adv vs grpo_no_kl", "condition": "first update (ratio = 1)", "expected_equal": True,
     "rel_diff_mean": 1e-7, "rel_diff_max": 2e-7, "cosine_mean": 1.0, "agrees": True}]}


def test_equivalence_claim_reads_rlino_equivalence_results(tmp_path):
    assert verdict({}, "fisft_adv_is_grpo_no_kl", EQUIVALENCE)["verdict"] == "holds"
    assert verdict({}, "fisft_adv_is_grpo_no_kl", None)["verdict"] == "not run"
    broken = json.loads(json.dumps(EQUIVALENCE))
    broken["summary"][0] |= {"rel_diff_max": 0.3, "agrees": False}
    assert verdict({}, "fisft_adv_is_grpo_no_kl", broken)["verdict"] == "does not hold"
    # read from DIR/equivalence.json by the report (a folder written before seeds existed: one run per arm)
    write_base(tmp_path)
    write_compare_toml(tmp_path, '["grpo"]')
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.5, wrong_length=noisy_flat(0), steps=10, eval_every=5)
    assert next(c for c in build_report(tmp_path)["claims"] if c["id"] == "fisft_adv_is_grpo_no_kl")[
        "verdict"] == "not run"
    (tmp_path / "equivalence.json").write_text(json.dumps(EQUIVALENCE))
    results = build_report(tmp_path)
    assert next(c for c in results["claims"] if c["id"] == "fisft_adv_is_grpo_no_kl")["verdict"] == "holds"
    first, scorecard = (tmp_path / "report.md").read_text().split("\n## ")[1:3]
    assert first.startswith("What was found") and "- **holds**: 6. " in first
    assert scorecard.startswith("The paper's claims: scorecard")


def test_two_seeds_that_agree_by_chance_keep_the_measurements_width():
    """Two seeds with the same difference would give a zero-width interval; the sd is floored at the binomial sd
    of each accuracy on its 200 items (independent): sqrt(.3·.7/200 + .25·.75/200) = 4.4581 points, t(1) = 12.706."""
    def seeded(method, accs):
        a = arm(method, accs, seeds=("seed-0", "seed-1"))
        for r in a["per_seed"].values():
            r["num_items"] = 200
        return a

    arms = {"grpo": seeded("grpo", [30.0, 30.0]), "grpo_no_kl": seeded("grpo_no_kl", [25.0, 25.0])}
    c = verdict(arms, "grpo_no_kl_matches_grpo")
    half = 12.706 * 100 * math.sqrt(0.3 * 0.7 / 200 + 0.25 * 0.75 / 200) / math.sqrt(2)
    assert (c["numbers"]["lo"], c["numbers"]["hi"]) == pytest.approx((-5 - half, -5 + half), abs=1e-3)
    assert c["verdict"] == "inconclusive"  # without the floor: [-5, -5], "does not hold" on two lucky seeds


def t975(df: int) -> float:
    """Student's t, 0.975 quantile, from a printed table."""
    return {2: 4.303, 25: 2.060, 26: 2.056, 27: 2.052}[df]


def test_counter_claims_of_zhu_et_al_on_nsr_and_w_reinforce():
    """NSR's collapse (claim 3's rule on the nsr row) and NSR / W-REINFORCE against GRPO (not much below), each
    stated with its source; an arm that changes the row (nsr without its clip) is not the row."""
    arms = {"grpo": arm("grpo", GRPO), "nsr": arm("nsr", [28.0, 33.0, 29.0]),
            "w_reinforce": arm("w_reinforce", [1.0, 2.0, 0.5]),
            "nsr@no-clip": arm("nsr", [1.0, 2.0, 0.5], overrides=("method.clip=false",))}
    claims = {c["id"]: c for c in judge_claims(arms, None, 0.18)}
    assert claims["nsr_collapses"]["verdict"] == "does not hold"  # [24.7, 35.3] at or above the base's 18%
    assert claims["nsr_collapses"]["arms"] == ["nsr"]
    assert claims["nsr_matches_grpo"]["verdict"] == "holds"        # differences −2, +1, +1
    assert claims["w_reinforce_matches_grpo"]["verdict"] == "does not hold"
    for cid in ("nsr_collapses", "nsr_matches_grpo", "w_reinforce_matches_grpo"):
        assert claims[cid]["source"] == "Zhu et al. 2025, arXiv 2506.01347"
    assert claims["fisft_neg_collapses"]["source"] == "arXiv 2505.13697"
    only_changed = {"grpo": arm("grpo", GRPO), "nsr@no-clip": arms["nsr@no-clip"]}
    assert verdict(only_changed, "nsr_collapses")["verdict"] == "not run"


def test_an_inconclusive_verdict_projects_the_seeds_that_would_decide_it():
    """Differences −8, +2, −3: mean −3, sd 5; the interval would clear −5 (a distance of 2) once
    t(n − 1) · 5 / √n < 2, by the printed t table first at n = 27 (2.056 · 5 / √27 = 1.978; n = 26: 2.020)."""
    arms = {"grpo": arm("grpo", GRPO), "fisft_pos_neg": arm("fisft_pos_neg", [22.0, 34.0, 25.0])}
    c = verdict(arms, "fisft_pos_neg_matches_grpo")
    assert c["verdict"] == "inconclusive"
    assert t975(26) * 5 / math.sqrt(27) < 2 < t975(25) * 5 / math.sqrt(26)
    assert c["numbers"]["projected_seeds"] == 27
    assert "about 27 seeds would decide it" in c["why"] and "projection, not a result" in c["why"]
    # a collapse whose mean lies between 5% and the base model's: more seeds narrow the interval around it, and
    # neither bound of the rule is ever cleared
    c = verdict({"fisft_neg": arm("fisft_neg", [9.0, 11.0, 10.0])}, "fisft_neg_collapses", base=0.18)
    assert "more seeds would not decide it" in c["why"] and "projected_seeds" not in c["numbers"]
    # a mean on the rule's bound: no finite projection
    c = verdict({"grpo": arm("grpo", GRPO), "fisft_pos": arm("fisft_pos", [25.5, 30.0, 20.0])},
                "fisft_pos_matches_grpo")  # differences −4.5, −2, −8: mean −4.83, sd 3.0, 0.17 from the bound
    assert c["verdict"] == "inconclusive" and "more than 200 seeds" in c["why"]
    # wrong lengths: grpo's slopes 1.5, −1, −3.5 (mean −1, sd 2.5) sit on the failing side: that one interval
    # clearing 0 would decide "does not hold", first at n = 27 (2.056 · 2.5 / √27 = 0.989; n = 26: 1.010)
    arms = {"grpo": arm("grpo", GRPO, [1.5, -1, -3.5]), "fisft_pos_neg": arm("fisft_pos_neg", GRPO, [100, 150, 120]),
            "fisft_pos": arm("fisft_pos", GRPO, [-5, -3, -8])}
    c = verdict(arms, "wrong_lengths_grow")
    assert t975(26) * 2.5 / math.sqrt(27) < 1 < t975(25) * 2.5 / math.sqrt(26)
    assert c["verdict"] == "inconclusive" and c["numbers"]["projected_seeds"] == 27
