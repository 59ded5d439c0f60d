"""The length study: analytic per-token weights by hand, the measured summary, the generated verdicts, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from test_report import noisy_flat, write_arm, write_base, write_compare_toml

from rlino.report import build_report
from rlino.report.length import analytic_curve, causal_verdicts, token_weight_summary


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
    assert "also grew, not significantly more slowly, under token-mean" in text
    assert "did not grow under seq-mean-token-sum-norm" in text
    assert "supports the claim only in part" in text and "lower accuracy" not in text
    slowed = dict(grpo, **{"g@tok": _cell("grpo", "token-mean", 2.0, 1.0, 3.0)})
    assert "significantly more slowly, under token-mean" in causal_verdicts(slowed)[0]
    same = {k: v for k, v in grpo.items() if k != "g@sum"}
    assert "does not support the claim" in causal_verdicts(same)[0]
    flat = dict(grpo, **{"g@avg": _cell("grpo", "seq-mean-token-mean", 1.0, -1.0, 3.0)})
    assert "did not grow under per-response averaging" in causal_verdicts(flat)[0]


def test_report_of_an_ablation_has_the_slope_table_the_weight_plot_and_a_verdict(tmp_path):
    write_base(tmp_path)
    write_compare_toml(tmp_path, '[{name = "a", method = "fisft_pos_neg"}, {name = "b", method = "fisft_pos_neg", '
                                 'set = ["method.aggregation=token-mean"]}]')
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
    assert "## Response length and per-token weights" in md
    assert "| a | fisft_pos_neg | seq-mean-token-mean | +200.0" in md
    assert "Does the aggregation cause the length growth?" in md and verdict.split(";")[0] in md
    png = Path(tmp_path / "plots" / "token_weights.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000


def _token_weight_figure(tmp_path, saved, rows_extra: dict, config_edit) -> Figure:
    """Report a one-arm compare whose weights.jsonl rows carry `rows_extra`; return the token-weight figure."""
    write_base(tmp_path)
    write_arm(tmp_path, "g", "grpo", final_accuracy=0.4, wrong_length=lambda s: 40 + s, steps=20, eval_every=10)
    config = tmp_path / "runs" / "g" / "config.toml"
    config.write_text(config_edit(config.read_text()))
    lengths = list(range(10, 74, 2))
    rows = [_weights_row(s, lengths, [L % 10 == 0 for L in lengths], [(1.0 if L % 10 == 0 else -1.0) / L
                                                                       for L in lengths]) | rows_extra
            for s in range(1, 21)]
    (tmp_path / "runs" / "g" / "weights.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(tmp_path)
    return saved["token_weights"]


def test_analytic_curve_uses_the_aggregation_logged_in_weights_rows(tmp_path, saved_figures):
    # config.toml says seq-mean-token-mean and 64 new tokens; the rows (what the loss used) say otherwise
    logged = {"aggregation": "seq-mean-token-sum-norm", "max_new_tokens": 128}
    fig = _token_weight_figure(tmp_path, saved_figures, logged, lambda text: text)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    (wrong,) = [ln for label, ln in lines.items() if label.startswith("wrong: analytic")]
    grid = [int(x) for x in wrong.get_xdata()]
    # 32 responses per step, 1312 tokens: mean length 41; a wrong response's w is -1
    kw = dict(num_responses=32, mean_length=41.0)
    expected = analytic_curve(grid, "seq-mean-token-sum-norm", -1.0, max_new_tokens=128, **kw)
    assert list(wrong.get_ydata()) == pytest.approx(expected) and expected[0] == pytest.approx(-1 / 128)
    assert list(wrong.get_ydata()) != pytest.approx(analytic_curve(grid, "seq-mean-token-mean", -1.0,
                                                                   max_new_tokens=64, **kw))
    assert "seq-mean-token-sum-norm" in ax.get_title()
    assert {"correct: measured", "wrong: measured"} <= set(lines)


def test_no_analytic_curve_when_neither_rows_nor_config_name_the_aggregation(tmp_path, saved_figures):
    def strip(text: str) -> str:
        return text.replace('aggregation = "seq-mean-token-mean"\n', "").replace("max_new_tokens = 64\n", "")

    fig = _token_weight_figure(tmp_path, saved_figures, {}, strip)
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert sorted(labels) == ["correct: measured", "wrong: measured"]  # measured points, no analytic line
    assert ax.get_title() == "g"
    assert (tmp_path / "plots" / "token_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
