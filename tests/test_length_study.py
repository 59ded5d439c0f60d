"""The length study: analytic per-token weights by hand, the measured summary, the generated verdicts, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlino.length_study import analytic_curve, causal_verdicts, token_weight_summary
from rlino.report import build_report
from test_report import noisy_flat, write_arm, write_base, write_compare_toml


def test_analytic_curves_by_hand():
    # N = 4 responses, mean length 50 (Σ|o| = 200), L_max = 100, weight −1 (a wrong response under pos-neg)
    kw = dict(num_responses=4, mean_length=50.0, max_new_tokens=100)
    assert analytic_curve([10, 50, 100], "seq-mean-token-mean", -1.0, **kw) == pytest.approx([-0.1, -0.02, -0.01])
    assert analytic_curve([10, 50, 100], "token-mean", -1.0, **kw) == pytest.approx([-0.02] * 3)  # 4/200
    assert analytic_curve([10, 50, 100], "seq-mean-token-sum-norm", 2.0, **kw) == pytest.approx([0.02] * 3)  # 2/100


def _weights_row(step, lengths, correct, token_weight):
    return {"step": step, "num_responses": len(lengths), "num_tokens": sum(lengths), "length": lengths,
            "correct": correct, "response_weight": [1.0 if c else -1.0 for c in correct], "token_weight": token_weight}


def test_token_weight_summary_takes_the_shortest_and_longest_quarters():
    lengths = list(range(10, 50))  # 40 wrong responses, lengths 10..49
    rows = [_weights_row(1, lengths, [False] * 40, [-1.0 / L for L in lengths])]
    s = token_weight_summary(rows)
    assert s["correct"] is None  # no correct responses
    short, long_ = range(10, 20), range(40, 50)
    assert s["wrong"]["short_length"] == pytest.approx(14.5) and s["wrong"]["long_length"] == pytest.approx(44.5)
    assert s["wrong"]["short_weight"] == pytest.approx(sum(-1 / L for L in short) / 10, rel=1e-3)
    assert s["wrong"]["long_over_short"] == pytest.approx(
        sum(1 / L for L in long_) / sum(1 / L for L in short), abs=1e-3)
    assert token_weight_summary([]) is None


def _cell(method, aggregation, slope, lo, hi, accuracy=0.3, acc_lo=0.26, acc_hi=0.34):
    return {"method": method, "aggregation": aggregation, "accuracy": accuracy, "accuracy_lo": acc_lo,
            "accuracy_hi": acc_hi, "length_wrong_slope": {"per_100_steps": slope, "lo": lo, "hi": hi}}


def test_verdict_supports_the_claim_when_growth_stops_under_both_other_aggregations():
    arms = {"a@avg": _cell("fisft_pos_neg", "seq-mean-token-mean", 167.1, 155.7, 178.4, 0.032, 0.02, 0.051),
            "a@tok": _cell("fisft_pos_neg", "token-mean", -0.7, -6.0, 4.6),
            "a@sum": _cell("fisft_pos_neg", "seq-mean-token-sum-norm", -3.3, -7.6, 0.9),
            "other": _cell("fisft_pos", "seq-mean-token-mean", -9.8, -12.7, -6.8)}
    (text,) = causal_verdicts(arms)  # fisft_pos ran under one aggregation only: no verdict for it
    assert text.startswith("fisft_pos_neg: wrong-response length grew under per-response averaging (a@avg: +167.1")
    assert "did not grow under token-mean (a@tok: -0.7" in text and "seq-mean-token-sum-norm (a@sum" in text
    assert "The run supports the claim that per-response averaging causes the growth" in text
    assert "ends at 3.2%, below the 95% intervals of a@tok, a@sum" in text


def test_verdict_in_part_and_not_supported():
    grpo = {"g@avg": _cell("grpo", "seq-mean-token-mean", 11.6, 5.6, 17.6),
            "g@tok": _cell("grpo", "token-mean", 6.1, 2.2, 10.0),
            "g@sum": _cell("grpo", "seq-mean-token-sum-norm", 1.7, -2.2, 5.6)}
    (text,) = causal_verdicts(grpo)
    assert "also grew, not significantly more slowly, under token-mean" in text and "did not grow under seq-mean-token-sum-norm" in text
    assert "supports the claim only in part" in text and "lower accuracy" not in text
    slowed = dict(grpo, **{"g@tok": _cell("grpo", "token-mean", 2.0, 1.0, 3.0)})
    assert "significantly more slowly, under token-mean" in causal_verdicts(slowed)[0]
    same = {k: v for k, v in grpo.items() if k != "g@sum"}
    assert "does not support the claim" in causal_verdicts(same)[0]
    flat = dict(grpo, **{"g@avg": _cell("grpo", "seq-mean-token-mean", 1.0, -1.0, 3.0)})
    assert "did not grow under per-response averaging" in causal_verdicts(flat)[0]


def test_report_of_an_ablation_has_the_slope_table_the_weight_plot_and_a_verdict(tmp_path):
    write_base(tmp_path)
    write_compare_toml(tmp_path, '["a", "b"]')
    write_arm(tmp_path, "a", "fisft_pos_neg", final_accuracy=0.05, wrong_length=lambda s: 40 + 2 * s)
    write_arm(tmp_path, "b", "fisft_pos_neg", final_accuracy=0.30, wrong_length=noisy_flat(2),
              aggregation="token-mean")
    for name, per_token in (("a", lambda L: -1.0 / L), ("b", lambda L: -1.0 / 50)):
        lengths = list(range(10, 74, 2))
        rows = [_weights_row(s, lengths, [L % 10 == 0 for L in lengths],
                             [-per_token(L) if L % 10 == 0 else per_token(L) for L in lengths])
                for s in range(1, 101)]
        (tmp_path / "runs" / name / "weights.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = build_report(tmp_path)
    assert results["arms"]["a"]["token_weight"]["wrong"]["long_over_short"] < 0.5  # 1/L: long responses get less
    assert results["arms"]["b"]["token_weight"]["wrong"]["long_over_short"] == pytest.approx(1.0)
    (verdict,) = results["length_verdicts"]
    assert "supports the claim that per-response averaging causes the growth" in verdict
    md = (tmp_path / "report.md").read_text()
    assert "## Response length and per-token weights" in md and "| a | fisft_pos_neg | seq-mean-token-mean | +200.0" in md
    assert "Does the aggregation cause the length growth?" in md and verdict.split(";")[0] in md
    png = Path(tmp_path / "plots" / "token_weights.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
