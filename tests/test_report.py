"""The compare report: numbers in results.json, the table, the summary's claims, plots, escaping, errors."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from matplotlib.colors import to_rgba

from rlino.errors import RlinoError
from rlino.report import build_report
from rlino.report.results import length_slope
from rlino.stats import binomial_sd, ols_slope, seed_interval, t_quantile_975, wilson_interval

N_ITEMS = 200
XSS = "<script>alert('x')</script>"


# ---- writing synthetic compare folders -----------------------------------------------------------------------------

def _eval_metrics(accuracy: float, n: int = N_ITEMS) -> dict:
    lo, hi = wilson_interval(accuracy, n)
    return {"eval/accuracy": accuracy, "eval/accuracy_lo": lo, "eval/accuracy_hi": hi, "eval/num_items": n,
            "eval/length_mean": 60.0, "eval/length_correct_mean": 40.0, "eval/length_wrong_mean": 80.0,
            "eval/truncated_frac": 0.0}


def write_base(root: Path, accuracy: float = 0.25, response: str = "base says 3") -> None:
    samples = [{"uid": uid, "prompt": f"1, 2 -> {uid}\n", "response": response, "reward": 0.0, "length": 7}
               for uid in range(4)]
    (root / "base").mkdir(parents=True, exist_ok=True)
    (root / "base" / "eval.json").write_text(json.dumps(_eval_metrics(accuracy) | {"samples": samples}))


def write_arm(root: Path, name: str, method: str, *, final_accuracy: float, wrong_length, correct_length=lambda s: 30.0,
              steps: int = 100, planned_steps: int | None = None, eval_every: int = 25, response: str = "1+2",
              aggregation: str = "seq-mean-token-mean") -> None:
    """An arm whose held-out accuracy climbs linearly from 0.25 to final_accuracy; lengths from the given functions."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(
        f'[model]\nname_or_path = "embedded:tiny"\n[task]\nname = "countdown"\n'
        f'[method]\nname = "{method}"\naggregation = "{aggregation}"\n'
        f"[train]\nsteps = {planned_steps or steps}\nprompts_per_step = 8\ngroup_size = 4\nlearning_rate = 1e-6\n"
        f"[sampling]\ntemperature = 1.0\nmax_new_tokens = 64\n[eval]\nevery = {eval_every}\ntemperature = 0.0\n")
    rows, samples = [], []
    for step in range(1, steps + 1):
        row = {"step": step, "reward_mean": 0.25 + 0.003 * step, "accuracy": 0.3, "length_mean": 50.0,
               "length_correct_mean": correct_length(step), "length_wrong_mean": wrong_length(step),
               "truncated_frac": 0.0, "loss": 0.1, "time_s": 2.0 * step}
        if eval_every and step % eval_every == 0:
            row |= _eval_metrics(0.25 + (final_accuracy - 0.25) * step / steps)
            samples += [{"step": step, "uid": uid, "prompt": f"1, 2 -> {uid}\n", "response": response,
                         "reward": 1.0, "length": 5} for uid in range(4)]
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def write_compare_toml(root: Path, arms: str) -> None:
    (root / "compare.toml").write_text(f'# the compare as run\n[compare]\narms = {arms}\n')


def noisy_flat(seed: int):
    rng = random.Random(seed)
    values = [50 + rng.uniform(-10, 10) for _ in range(1000)]
    return lambda step: values[step]


@pytest.fixture(scope="module")
def compare(tmp_path_factory) -> tuple[Path, dict]:
    """Three arms: grpo (long wrong answers growing), fisft_pos_neg (flat, noisy), fisft_pos (clearly lower)."""
    root = tmp_path_factory.mktemp("compare")
    write_base(root, response=XSS)
    write_compare_toml(root, '["grpo", {name = "fisft_pos_neg", method = "fisft_pos_neg", set = []}, "fisft_pos"]')
    write_arm(root, "grpo", "grpo", final_accuracy=0.60, wrong_length=lambda s: 40 + 0.5 * s + (s % 3),
              response=XSS)
    write_arm(root, "fisft_pos_neg", "fisft_pos_neg", final_accuracy=0.58, wrong_length=noisy_flat(0))
    write_arm(root, "fisft_pos", "fisft_pos", final_accuracy=0.30, wrong_length=noisy_flat(1))
    return root, build_report(root)


# ---- statistics ----------------------------------------------------------------------------------------------------

def test_ols_slope_matches_hand_computation():
    # x̄ = 2.5, ȳ = 5, Sxx = 5, Sxy = 11 -> slope 2.2; SSE = 1.8, se = sqrt(0.9 / 5), t(2) = 4.303
    fit = ols_slope([1, 2, 3, 4], [2, 4, 5, 9])
    half = 4.303 * math.sqrt(0.9 / 5)
    assert fit["slope"] == pytest.approx(2.2) and fit["se"] == pytest.approx(math.sqrt(0.9 / 5))
    assert (fit["lo"], fit["hi"]) == pytest.approx((2.2 - half, 2.2 + half))
    assert ols_slope([1, 2], [3, 4]) is None


def test_length_slope_skips_nulls_and_reports_per_100_steps():
    rows = [{"step": s, "length_wrong_mean": v} for s, v in zip(range(1, 6), [10, 12, None, 15, 19])]
    # xs 1,2,4,5: x̄ = 3, Sxx = 10, Sxy = 21 -> 2.1 tokens per step; SSE = 1.9
    slope = length_slope(rows, "length_wrong_mean")
    half = 4.303 * math.sqrt(1.9 / 2 / 10)
    assert slope["per_100_steps"] == pytest.approx(210.0)
    assert slope["lo"] == pytest.approx(100 * (2.1 - half), abs=1e-3)
    assert slope["num_steps"] == 4 and slope["trend"] == "grew"
    assert length_slope(rows[:3], "length_wrong_mean") is None  # two non-null points


def test_t_quantile_and_wilson():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(31) == pytest.approx(2.0395, abs=2e-4)
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=2e-4)
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_seed_interval_by_hand():
    """Three seeds at 20, 30 and 25%: mean 25, sd 5 points, half-width t(2) · 5 / √3 = 4.303 · 2.88675 = 12.4217."""
    got = seed_interval([0.2, 0.3, 0.25])
    assert got["mean"] == pytest.approx(0.25) and got["sd"] == pytest.approx(0.05) and got["n"] == 3
    assert (got["lo"], got["hi"]) == pytest.approx((0.25 - 0.1242169, 0.25 + 0.1242169), abs=1e-6)
    assert seed_interval([0.4, 0.4])["lo"] == pytest.approx(0.4)  # no spread, no width
    assert seed_interval([0.3]) == {"mean": 0.3, "lo": None, "hi": None, "sd": None, "sd_used": None, "n": 1}
    # two seeds at 25.5% on 200 items: no spread, but the measurement alone has sd sqrt(.255 * .745 / 200) = 0.030820
    floor = binomial_sd([0.255, 0.255], 200)
    assert floor == pytest.approx(0.0308200, abs=1e-6)
    got = seed_interval([0.255, 0.255], floor_sd=floor)
    assert (got["lo"], got["hi"]) == pytest.approx((0.255 - 12.706 * floor / 2 ** 0.5,) * 1 + (0.255 + 12.706 * floor
                                                                                                / 2 ** 0.5,))
    assert seed_interval([0.2, 0.3, 0.25], floor_sd=0.01)["hi"] == pytest.approx(0.25 + 0.1242169)  # sd 0.05 wins
    with pytest.raises(ValueError):
        seed_interval([])


# ---- the report ----------------------------------------------------------------------------------------------------

def test_files_are_written_and_plots_are_real_pngs(compare):
    """results.json, report.md, report.html and the PNG plots exist, and the HTML embeds the plots."""
    root, _ = compare
    for name in ("results.json", "report.md", "report.html"):
        assert (root / name).is_file()
    for name in ("accuracy", "length", "reward"):
        png = root / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # their content: test_plots_draw_each_arms_...
        assert f"(plots/{name}.png)" in (root / "report.md").read_text()
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and 'src="plots/' not in html


def read_series(run: Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric from a run's metrics.jsonl, steps without a finite value left out."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [x for x, _ in points], [y for _, y in points]


def centred_mean(values: list[float], half: int) -> list[float]:
    """Mean of each value and its neighbours up to `half` steps away (fewer at the ends)."""
    n = len(values)
    return [sum(values[j] for j in range(n) if abs(i - j) <= half) / sum(1 for j in range(n) if abs(i - j) <= half)
            for i in range(n)]


def lines_by_arm(ax) -> dict[str, tuple]:
    """{arm label: (x, y) of its per-step line, (x, y) of its bold line} for the raw + smoothed pairs of an axes."""
    lines = ax.get_lines()
    out = {}
    for bold in (ln for ln in lines if not ln.get_label().startswith("_")):
        raw = [ln for ln in lines if ln is not bold and to_rgba(ln.get_color()) == to_rgba(bold.get_color())]
        assert len(raw) == 1, bold.get_label()
        out[bold.get_label()] = ((list(raw[0].get_xdata()), list(raw[0].get_ydata())),
                                 (list(bold.get_xdata()), list(bold.get_ydata())))
    return out


def test_plots_draw_each_arms_series_from_its_metrics_file(tmp_path, saved_figures):
    """Each plot has one labelled line per arm whose points are that arm's values in metrics.jsonl (base at step 0)."""
    saved = saved_figures
    write_base(tmp_path, accuracy=0.25)
    write_compare_toml(tmp_path, '["grpo", "fisft_pos"]')
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.6, steps=80, eval_every=10,
              wrong_length=lambda s: float("nan") if s == 7 else 60 + s, correct_length=lambda s: 30 - s / 4)
    write_arm(tmp_path, "fisft_pos", "fisft_pos", final_accuracy=0.4, steps=30, eval_every=10,
              wrong_length=lambda s: 90 - s, correct_length=lambda s: 20 + (s % 4))
    build_report(tmp_path)
    assert {"accuracy", "length", "reward"} <= set(saved)
    arms = ["grpo", "fisft_pos"]
    runs = {arm: tmp_path / "runs" / arm for arm in arms}

    (ax,) = saved["accuracy"].axes
    labelled = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(labelled) == {*arms, "base 25.0% (gray: its 95% interval)"}
    assert list(labelled["base 25.0% (gray: its 95% interval)"].get_ydata()) == [25.0, 25.0]
    for arm in arms:
        steps, accuracy = read_series(runs[arm], "eval/accuracy")
        assert list(labelled[arm].get_xdata()) == [0, *steps]
        # results.json keeps 4 decimals of a fraction: 0.005 points
        assert list(labelled[arm].get_ydata()) == pytest.approx([25.0, *(100 * a for a in accuracy)], abs=0.006)

    panels = {ax.get_title(): ax for ax in saved["length"].axes}
    (reward,) = saved["reward"].axes
    for ax, key in ((panels["correct responses"], "length_correct_mean"),
                    (panels["wrong responses"], "length_wrong_mean"), (reward, "reward_mean")):
        drawn = lines_by_arm(ax)
        assert set(drawn) == set(arms), key
        for arm in arms:
            steps, values = read_series(runs[arm], key)
            (raw_x, raw_y), (bold_x, bold_y) = drawn[arm]
            assert (raw_x, raw_y) == (steps, pytest.approx(values)), (key, arm)
            half = max(1, len(values) // 20) // 2  # the bold line averages over about a twentieth of the run
            assert (bold_x, bold_y) == (steps, pytest.approx(centred_mean(values, half))), (key, arm)


def test_results_json_numbers(compare):
    root, results = compare
    assert json.loads((root / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == results
    base, grpo = results["base"], results["arms"]["grpo"]
    assert list(results["arms"]) == ["grpo", "fisft_pos_neg", "fisft_pos"]  # compare.toml's order
    assert base["accuracy"] == 0.25 and base["num_items"] == N_ITEMS
    assert (grpo["accuracy_lo"], grpo["accuracy_hi"]) == pytest.approx(wilson_interval(0.6, N_ITEMS), abs=1e-4)
    assert grpo["accuracy"] == pytest.approx(0.6)
    assert grpo["delta_vs_base"] == pytest.approx(35.0)
    assert grpo["method"] == "grpo" and grpo["aggregation"] == "seq-mean-token-mean"
    assert grpo["steps"] == 100 and grpo["wall_time_s"] == 200.0
    assert grpo["eval_steps"] == [25, 50, 75, 100] and len(grpo["eval_accuracy"]) == 4
    assert grpo["length_wrong_slope"]["per_100_steps"] == pytest.approx(50.0, abs=1.0)
    assert grpo["length_wrong_slope"]["trend"] == "grew"
    assert results["arms"]["fisft_pos_neg"]["length_wrong_slope"]["trend"] == "no clear trend"
    assert grpo["length_correct_slope"]["per_100_steps"] == 0.0


def test_table_has_base_and_one_row_per_arm(compare):
    root, _ = compare
    md = (root / "report.md").read_text()
    table = md.split("## Results")[1].split("\n\n")[1].splitlines()
    names = [line.split("|")[1].strip() for line in table[2:]]
    assert names == ["Base", "grpo", "fisft_pos_neg", "fisft_pos"]
    grpo = next(line for line in table if line.startswith("| grpo "))
    assert "60.0 [" in grpo and "+35.0" in grpo and "3 min 20 s" in grpo
    results_table = (root / "report.html").read_text().split("<table")[2].split("</table>")[0]  # after the scorecard
    assert results_table.count("<tr>") == 1 + 4  # header + rows


def test_the_first_screen_says_what_was_found_claim_by_claim(compare):
    """Before the scorecard: one line per claim that ran, its verdict and the number that decided it (as
    results.json's claims have them), and one line naming the claims not run; in HTML the verdicts are badges
    and number cells are right-aligned, text cells left."""
    root, results = compare
    md = (root / "report.md").read_text()
    first = md.split("## What was found")[1].split("## The paper's claims")[0]
    claims = list(enumerate(results["claims"], 1))
    ran = [(i, c) for i, c in claims if c["verdict"] != "not run"]
    lines = [line for line in first.splitlines() if line.startswith("- **")]
    assert len(lines) == len(ran) > 0
    for line, (i, c) in zip(lines, ran):
        assert line.startswith(f"- **{c['verdict']}**: {i}. {c['claim']}: ")
        assert c["why"].split("; ")[0] in line
    not_run = [str(i) for i, c in claims if c["verdict"] == "not run"]
    assert f"claims {', '.join(not_run)} (the scorecard below" in first
    html = (root / "report.html").read_text()
    top = html.split("<table")[0]
    assert top.count('<span class="v v-') == len(ran) and "What was found" in top
    results_table = html.split("<table")[2]
    assert '<td class="num">60.0 [' in results_table and "<td>grpo</td>" in results_table


def test_summary_sentences(compare):
    _, results = compare
    summary = results["summary"]
    assert any(s.startswith("grpo: 60.0% [") and "+35.0 points over the base (25.0% [" in s for s in summary)
    assert "fisft_pos_neg and grpo are within each other's intervals" in " ".join(summary) or \
           "grpo and fisft_pos_neg are within each other's intervals" in " ".join(summary)
    assert any(s.startswith("grpo is above fisft_pos: the 95% intervals do not overlap") for s in summary)
    assert any(s.startswith("grpo: wrong-response length: grew (+") for s in summary)
    assert any(s.startswith("fisft_pos_neg: wrong-response length: no clear trend (") for s in summary)
    md = (Path(compare[0]) / "report.md").read_text()
    assert all(s in md for s in summary)


def test_untrusted_responses_are_escaped_in_html(compare):
    root, _ = compare
    html = (root / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    md = (root / "report.md").read_text()
    assert md.count(XSS) >= 3 + 3  # base ("before") and grpo ("after") for the first three items
    assert "# the compare as run" in md  # compare.toml verbatim


def test_code_fence_survives_backticks_in_a_response(tmp_path):
    write_base(tmp_path, response="```\nnot the end\n```")
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.5, wrong_length=lambda s: 50.0, steps=10, eval_every=5)
    build_report(tmp_path)
    assert "````\n```\nnot the end\n```\n````" in (tmp_path / "report.md").read_text()


def test_interrupted_arm_and_missing_compare_toml(tmp_path):
    write_base(tmp_path)
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.5, wrong_length=lambda s: 50.0, steps=20, eval_every=10)
    write_arm(tmp_path, "fisft_neg", "fisft_neg", final_accuracy=0.0, wrong_length=lambda s: float("nan"), steps=8,
              planned_steps=100, eval_every=10)
    results = build_report(tmp_path)
    arm = results["arms"]["fisft_neg"]
    assert list(results["arms"]) == ["fisft_neg", "grpo"]  # sorted folders without compare.toml
    assert arm["accuracy"] is None and arm["delta_vs_base"] is None and arm["eval_steps"] == []
    assert arm["length_wrong_slope"] is None and arm["steps"] == 8
    text = " ".join(results["summary"])
    assert "fisft_neg: no held-out evaluation yet" in text and "stopped at step 8 of the 100" in text
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"^\| fisft_neg \| fisft_neg \| 0 \| — \| — \|", md, re.M)  # no finished seed
    assert "compare.toml was not found" in md


def test_arm_listed_but_not_started(tmp_path):
    write_base(tmp_path)
    write_compare_toml(tmp_path, '["grpo", "dapo"]')
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.5, wrong_length=lambda s: 50.0, steps=10, eval_every=5)
    results = build_report(tmp_path)
    assert "dapo: not started (no folder in runs/)." in results["summary"]
    assert results["arms"]["dapo"]["accuracy"] is None


def test_errors_name_the_path(tmp_path):
    with pytest.raises(RlinoError, match=f"compare folder not found: {tmp_path / 'nope'}"):
        build_report(tmp_path / "nope")
    with pytest.raises(RlinoError, match=re.escape(str(tmp_path / "base" / "eval.json"))):
        build_report(tmp_path)
    write_base(tmp_path)
    with pytest.raises(RlinoError, match="no runs in"):
        build_report(tmp_path)
    (tmp_path / "runs" / "grpo").mkdir(parents=True)
    with pytest.raises(RlinoError, match=re.escape(str(tmp_path / "runs" / "grpo" / "metrics.jsonl"))):
        build_report(tmp_path)
    write_compare_toml(tmp_path, '[{method = 3}]')
    with pytest.raises(RlinoError, match=r"compare.toml: compare.arms\[0\]"):
        build_report(tmp_path)


def test_partial_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    write_base(tmp_path)
    write_arm(tmp_path, "grpo", "grpo", final_accuracy=0.5, wrong_length=lambda s: 50.0, steps=10, eval_every=5)
    metrics = tmp_path / "runs" / "grpo" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 11, "rew')
    assert build_report(tmp_path)["arms"]["grpo"]["steps"] == 10
    metrics.write_text("not json\n" + metrics.read_text())
    with pytest.raises(RlinoError, match=r"metrics.jsonl, line 1: not valid JSON"):
        build_report(tmp_path)


def test_seeds_are_pooled_with_a_t_interval_and_unfinished_seeds_left_out(tmp_path, saved_figures):
    """runs/<arm>/seed-S/: an arm's accuracy and slopes are the finished seeds' mean with a t-interval over them
    (by hand: mean ± 4.303·sd/√3), a seed that stopped early is listed and left out, plots draw every seed."""
    write_base(tmp_path, accuracy=0.25)
    write_compare_toml(tmp_path, '["grpo", "fisft_pos"]\nseeds = 3')
    for seed, (final, rate) in enumerate(((0.5, 0.3), (0.6, 0.5), (0.7, 0.7))):
        write_arm(tmp_path, f"grpo/seed-{seed}", "grpo", final_accuracy=final,
                  wrong_length=lambda s, r=rate: 40 + r * s)
        write_arm(tmp_path, f"fisft_pos/seed-{seed}", "fisft_pos", final_accuracy=final / 2,
                  wrong_length=noisy_flat(seed), steps=100 if seed < 2 else 50, planned_steps=100)
    results = build_report(tmp_path)
    grpo, pos = results["arms"]["grpo"], results["arms"]["fisft_pos"]
    half = 4.303 * 0.1 / math.sqrt(3)  # accuracies 0.5, 0.6, 0.7: sd 0.1
    assert [grpo["accuracy"], grpo["accuracy_lo"], grpo["accuracy_hi"]] == pytest.approx(
        [0.6, 0.6 - half, 0.6 + half], abs=1e-4)
    assert grpo["interval"].startswith("95% t-interval over 3 seeds") and grpo["delta_vs_base"] == pytest.approx(35.0)
    slope = grpo["length_wrong_slope"]  # 30, 50, 70 tokens per 100 steps: sd 20
    assert [slope["per_100_steps"], slope["lo"], slope["hi"]] == pytest.approx(
        [50.0, 50 - 4.303 * 20 / math.sqrt(3), 50 + 4.303 * 20 / math.sqrt(3)], abs=0.01)
    assert slope["num_seeds"] == 3 and slope["trend"] == "grew"
    assert pos["seeds"] == ["seed-0", "seed-1"] and pos["unfinished_seeds"] == ["seed-2"]
    assert pos["accuracy"] == pytest.approx(0.275, abs=1e-4)  # (0.25 + 0.30) / 2, the stopped seed left out
    assert pos["per_seed"]["seed-2"]["steps"] == 50
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"^\| grpo \| 50\.0 \(\+30\.0\) \| 60\.0 \(\+50\.0\) \| 70\.0 \(\+70\.0\) \|", md, re.M)
    # the stopped seed's cell says how far it got, not a slope over its partial steps
    row = r"^\| fisft_pos \| 25\.0 \([^)]*\) \| 30\.0 \([^)]*\) \| unfinished \(step 50 of 100\) \|"
    assert re.search(row, md, re.M)
    (ax,) = saved_figures["accuracy"].axes
    assert "grpo (mean of 3 seeds)" in [ln.get_label() for ln in ax.get_lines()]
    thin = sorted(round(ln.get_ydata()[-1], 3) for ln in ax.get_lines() if ln.get_label().startswith("_")
                  and len(ln.get_xdata()) == 5)
    assert thin == pytest.approx([25.0, 30.0, 50.0, 60.0, 70.0], abs=0.01)  # every finished seed's line


def test_position_summary_by_hand():
    from rlino.report.length import position_summary

    rows = [{"correct": [True, False, True, False, False, False, True],
             "response_weight": [1.0, -0.5, 0.3, -1.0, 0.0, -0.2, 0.4],
             "token_weight_thirds": [[2, 2, 2], [-1, -1, -1], [1, 2, 3], [-3, None, None], [0.1, 0.5, 0.9],
                                     [-0.5, -1.0, -1.5], [0.0, 0.0, 0.0]],
             "token_weight_position_corr": [None, None, 0.9, None, 0.99, -0.7, None]}]
    # left out: the fifth (w = 0: the KL's alone) and the last (no gradient: a critic's warm-up)
    p = position_summary(rows)
    # correct: [1, 1, 1] and [1, 2, 3] / 2 = [0.5, 1, 1.5] → mean [0.75, 1, 1.25]; wrong: [−1, −1, −1] and
    # [−0.5, −1, −1.5] / 1 → [−0.75, −1, −1.25] (a response with an empty third is left out of the profile)
    assert p["correct"] == pytest.approx([0.75, 1.0, 1.25]) and p["wrong"] == pytest.approx([-0.75, -1, -1.25])
    assert (p["correct_responses"], p["wrong_responses"]) == (2, 2)
    # 5 responses, 2 shaped: the correct one's 0.9 and the wrong one's −0.7 oriented to +0.7 → mean 0.8
    assert p["responses"] == 5 and p["flat_frac"] == 0.6 and p["position_corr_mean"] == pytest.approx(0.8)
    assert position_summary([{"correct": [True], "token_weight": [1.0]}]) is None  # an older folder


def test_a_crowded_legend_goes_under_the_plot_not_over_the_curves(tmp_path, saved_figures):
    """Up to 5 entries: a legend inside each axes; more (here 6 arms + the base line): one legend under the
    figure naming every arm, and none inside the axes, where it hid the curves."""
    write_base(tmp_path, accuracy=0.25)
    arms = [f"arm{i}" for i in range(6)]
    write_compare_toml(tmp_path, "[" + ", ".join(f'{{name = "{a}", method = "grpo"}}' for a in arms) + "]")
    for i, arm in enumerate(arms):
        write_arm(tmp_path, arm, "grpo", final_accuracy=0.3 + 0.05 * i, steps=20, eval_every=10,
                  wrong_length=lambda s: 60 + s, correct_length=lambda s: 30 - s / 4)
    build_report(tmp_path)
    assert not saved_figures["accuracy"].axes[0].collections  # six arms' overlapping bands would hide the curves
    for name in ("accuracy", "length", "reward"):
        fig = saved_figures[name]
        assert all(ax.get_legend() is None for ax in fig.axes), name
        (legend,) = fig.legends
        assert set(arms) <= {t.get_text() for t in legend.get_texts()}, name
    few = tmp_path / "few"
    write_base(few, accuracy=0.25)
    write_compare_toml(few, '[{name = "arm0", method = "grpo"}, {name = "arm1", method = "grpo"}]')
    for arm in ("arm0", "arm1"):
        write_arm(few, arm, "grpo", final_accuracy=0.4, steps=20, eval_every=10,
                  wrong_length=lambda s: 60 + s, correct_length=lambda s: 30 - s / 4)
    build_report(few)
    assert len(saved_figures["accuracy"].axes[0].collections) == 2  # each arm's 95% band
    for name in ("length", "reward"):
        fig = saved_figures[name]
        assert not fig.legends and all(ax.get_legend() is not None for ax in fig.axes), name
    # the accuracy curves fan out from the base over the whole axes (the main job's legend hid fisft_neg's band):
    # its legend goes under the plot even with two arms
    fig = saved_figures["accuracy"]
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1


def test_the_crowded_position_plot_has_one_legend_naming_the_arms_of_both_panels(tmp_path, saved_figures):
    """The credit-along-the-response plot of 13 arms hid its flat lines under two legends; with more than 5 arms it has
    one legend under the figure, which names the arms of both panels: here one arm has only correct responses
    (positives-only) and one only wrong ones (negatives-only), so neither panel alone names all 7."""
    from rlino.report.plots import colors_for, plot_position_weights

    flat = {"correct": [1.0, 1.0, 1.0], "wrong": [-1.0, -1.0, -1.0]}
    arms = {f"arm{i}": {"token_weight_position": flat} for i in range(5)}
    arms["pos_only"] = {"token_weight_position": {"correct": [1.0, 1.0, 1.0], "wrong": None}}
    arms["neg_only"] = {"token_weight_position": {"correct": None, "wrong": [-1.0, -1.0, -1.0]}}
    plot_position_weights(tmp_path / "position_weights.png", {"arms": arms}, colors_for(list(arms)))
    fig = saved_figures["position_weights"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"arm{i}" for i in range(5)] + ["pos_only", "neg_only"]
