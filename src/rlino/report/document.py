"""The report's content as a list of blocks, written once for both renderers (`render.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlino.progress import minutes
from rlino.report.claims import PAPER
from rlino.report.read import ArmRun, Compare
from rlino.report.values import DASH, acc_ci, fmt, pct, trend

PLOTS = ("accuracy", "length", "reward")
SAMPLE_ITEMS = 3
SAMPLE_CHARS = 4000  # longer responses are cut in the report (not in the run files) to keep it readable


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: str
    alt: str


@dataclass
class Code:
    text: str


@dataclass
class Verdicts:
    """One line per claim: its verdict (shown as a badge in HTML, in bold in markdown) and a sentence."""
    items: list[tuple[str, str]]


Block = Heading | Para | Bullets | Table | Image | Code | Verdicts


# ---- results and length study ----------------------------------------------------------------------------------------

def _fmt_duration(seconds: float | None) -> str:
    return DASH if seconds is None else minutes(seconds, decimals=1)


def _comparison_table(results: dict[str, Any]) -> Table:
    header = ["", "method", "seeds", "held-out accuracy % [95% CI]", "Δ vs base (points)",
              "mean length correct (tokens)", "mean length wrong (tokens)", "steps", "wall time per seed"]
    base = results["base"]
    rows = [["Base", DASH, str(len(base.get("per_base_seed") or {}) or 1), acc_ci(base).replace("%", ""), DASH,
             fmt(base["length_correct_mean"], ".1f"), fmt(base["length_wrong_mean"], ".1f"), "0", DASH]]
    for name, arm in results["arms"].items():
        rows.append([name, arm["method"] or DASH, str(len(arm.get("seeds") or [])), acc_ci(arm).replace("%", ""),
                     fmt(arm["delta_vs_base"], "+.1f"), fmt(arm["length_correct_mean"], ".1f"),
                     fmt(arm["length_wrong_mean"], ".1f"), fmt(arm["steps"]), _fmt_duration(arm["wall_time_s"])])
    return Table(header, rows)


def _per_seed_table(results: dict[str, Any]) -> Table:
    """Each arm's final held-out accuracy and wrong-length slope, seed by seed."""
    labels = list(dict.fromkeys(k for arm in results["arms"].values() for k in arm.get("per_seed") or {}))
    rows = []
    for name, arm in results["arms"].items():
        per = arm.get("per_seed") or {}
        rows.append([name, *[_seed_cell(per.get(k), k in (arm.get("unfinished_seeds") or [])) for k in labels]])
    return Table(["arm", *labels], rows)


def _seed_cell(run: dict[str, Any] | None, unfinished: bool) -> str:
    """One seed's final accuracy (its wrong-length slope); an unfinished seed says how far it got, with no figures
    (the arm's intervals leave it out, so a partial slope beside them would mislead)."""
    if run is None:
        return DASH
    if unfinished:
        return f"unfinished (step {run.get('steps') or 0} of {run.get('planned_steps')})"
    slope = run["length_wrong_slope"]
    return f"{pct(run['accuracy'])}" + ("" if slope is None else f" ({slope['per_100_steps']:+.1f})")


def _findings(results: dict[str, Any]) -> list[Block]:
    """The report's first screen: one sentence per claim that was run (the verdict and the number that decided it),
    and one line naming the claims that were not."""
    claims = list(enumerate(results.get("claims") or [], 1))
    run = [(c["verdict"], f"{i}. {c['claim']}: {c['why'].split('; ')[0]}.") for i, c in claims
           if c["verdict"] != "not run"]
    not_run = [str(i) for i, c in claims if c["verdict"] == "not run"]
    blocks: list[Block] = [Heading(2, "What was found")]
    if run:
        blocks.append(Verdicts(run))
    if not_run:
        blocks.append(Para(f"Not run by this comparison: claim{'s' if len(not_run) > 1 else ''} "
                           f"{', '.join(not_run)} (the scorecard below says which arm or file each needs)."))
    return blocks


def _scorecard(results: dict[str, Any]) -> list[Block]:
    """The paper's claims, each with its verdict, the numbers behind it and the rule (report/claims.py)."""
    rows = [[str(i), c["claim"] + ("" if c.get("source", PAPER) == PAPER else f" [{c['source']}]"), c["verdict"],
             c["why"], c["rule"]] for i, c in enumerate(results.get("claims") or [], 1)]
    return [Heading(2, "The paper's claims: scorecard"),
            Table(["#", f"claim ({PAPER}, or the study in brackets)", "verdict", "the numbers", "rule"], rows),
            Para("Intervals are 95% t-intervals over seeds of per-seed figures (differences are taken seed by seed: "
                 "the arms of one seed share prompts and sampling noise). One seed is an anecdote: every claim "
                 "that rests on seeds is inconclusive with fewer than two. \"Not run\" says which arm or file to "
                 "add. An inconclusive verdict states how many seeds would likely decide it if the means and spreads "
                 "stayed as measured: a projection, not a result.")]


def _slope_cell(slope: dict[str, Any] | None) -> str:
    if slope is None:
        return DASH
    return f"{slope['per_100_steps']:+.1f} [{slope['lo']:+.1f}, {slope['hi']:+.1f}] {trend(slope)}"


def _weight_cell(summary: dict[str, Any] | None, label: str) -> str:
    part = (summary or {}).get(label)
    if not part:
        return DASH
    ratio = "" if part["long_over_short"] is None else f" (×{part['long_over_short']:.2f})"
    return (f"{part['short_weight']:+.3g} at {part['short_length']:.0f} tok → {part['long_weight']:+.3g} at "
            f"{part['long_length']:.0f} tok{ratio}")


def _length_blocks(results: dict[str, Any]) -> list[Block]:
    """Slopes of correct and wrong length per arm, measured per-token weights, and the generated verdicts."""
    rows = [[name, arm["method"] or DASH, arm.get("aggregation") or DASH, _slope_cell(arm["length_wrong_slope"]),
             _slope_cell(arm["length_correct_slope"]), _weight_cell(arm.get("token_weight"), "wrong"),
             _weight_cell(arm.get("token_weight"), "correct")]
            for name, arm in results["arms"].items() if arm["steps"] is not None]
    blocks: list[Block] = [
        Heading(2, "Response length and per-token weights"),
        Table(["arm", "method", "aggregation", "wrong-length slope [95% CI]", "correct-length slope [95% CI]",
               "per-token weight × N, wrong: shortest → longest quarter", "same, correct"], rows),
        Para("Slopes are in tokens per 100 training steps. Per-token weights are measured on the training steps "
             "(−∂loss/∂log π_t from autograd, averaged over a response's tokens, times the step's number of responses "
             "N), pooled over the run: under seq-mean-token-mean a longer response gets less weight per token, under "
             "the other two aggregations the same."),
        Image("plots/token_weights.png", "per-token weight vs response length"),
    ]
    blocks += _position_blocks(results)
    if results.get("length_verdicts"):
        blocks += [Heading(3, "Does the aggregation cause the length growth?"), Bullets(results["length_verdicts"])]
    return blocks


def _position_blocks(results: dict[str, Any]) -> list[Block]:
    """Credit assignment: how flat each arm's per-token weight is along a response."""
    rows = []
    for name, arm in results["arms"].items():
        p = arm.get("token_weight_position")
        if p:
            rows.append([name, f"{pct(p['flat_frac'])}%", fmt(p["position_corr_mean"], "+.2f"),
                         _thirds_cell(p.get("correct")), _thirds_cell(p.get("wrong"))])
    if not rows:
        return []
    return [Heading(3, "Credit along the response"),
            Table(["arm", "responses with a flat weight", "mean correlation of weight with position, oriented (others)",
                   "correct: first / middle / last third", "wrong: first / middle / last third"], rows),
            Para("Each third's mean per-token weight divided by the mean size of the three, averaged over responses "
                 "with a non-zero reward weight: an outcome method gives every token of a response its w_i (±1 "
                 "throughout, the paper's assumption 2; a KL term adds a small per-token part), a critic gives each "
                 "token its own advantage. The correlation is oriented by the outcome: above 0 when the push (up on "
                 "correct responses, down on wrong ones) grows toward the end of the response."),
            Image("plots/position_weights.png", "per-token weight along the response")]


def _thirds_cell(values: list[float] | None) -> str:
    return DASH if values is None else " / ".join(f"{v:+.2f}" for v in values)


# ---- what was run ----------------------------------------------------------------------------------------------------

def _setting(arms: list[ArmRun], section: str, key: str) -> str:
    """A config value shared by the arms, or each value with the arms that used it."""
    by_value: dict[str, list[str]] = {}
    for arm in arms:
        value = arm.config.get(section, {}).get(key)
        by_value.setdefault("?" if value is None else str(value), []).append(arm.name)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{value} ({', '.join(names)})" for value, names in by_value.items())


def _what_was_run(compare: Compare, results: dict[str, Any]) -> str:
    started = [arm for arm in compare.arms if arm.started]

    def s(section: str, key: str) -> str:
        return _setting(started, section, key)

    every = s("eval", "every")
    when = "only for the base model (eval.every = 0)" if every == "0" else f"every {every} steps and at the last step"
    descriptions = [f"{name} (method {arm['method'] or '?'}, aggregation {arm['aggregation'] or '?'})"
                    for name, arm in results["arms"].items()]
    seeds = sorted({k for arm in results["arms"].values() for k in arm.get("per_seed") or {}})
    seed_text = (f" Every arm ran once per seed ({', '.join(seeds)}); a seed changes the prompt order and the "
                 "sampling and evaluation noise, and the arms of one seed share both." if len(seeds) > 1 else "")
    return (f"Each arm trained {s('model', 'name_or_path')} on the {s('task', 'name')} task for "
            f"{s('train', 'steps')} steps of {s('train', 'prompts_per_step')} prompts × {s('train', 'group_size')} "
            f"sampled responses (learning rate {s('train', 'learning_rate')}, sampling temperature "
            f"{s('sampling', 'temperature')}, at most {s('sampling', 'max_new_tokens')} new tokens). Held-out "
            f"accuracy is measured on {results['base']['num_items'] or '?'} test items (eval temperature "
            f"{s('eval', 'temperature')}; 0 is greedy) {when}; the base model is step 0. "
            f"Arms: {'; '.join(descriptions)}.{seed_text}")


def _greedy_note(base: dict[str, Any]) -> str:
    greedy = base.get("greedy_accuracy")
    return "" if greedy is None else f" The base model's accuracy with greedy decoding is {pct(greedy)}%."


# ---- sample responses ------------------------------------------------------------------------------------------------

def _clip(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return text[:SAMPLE_CHARS] + f"\n… [cut here: {len(text) - SAMPLE_CHARS} more characters]"


def _sample_caption(label: str, sample: dict[str, Any] | None) -> str:
    if sample is None:
        return f"{label}: no sample logged for this item."
    return f"{label}: reward {fmt(sample.get('reward'))}, {fmt(sample.get('length'))} tokens"


def _item_blocks(arm: ArmRun, uid: Any, before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Block]:
    """One item of an arm: its prompt, the base model's response (before) and the arm's (after)."""
    prompt = (before or after or {}).get("prompt", "")
    blocks: list[Block] = [Heading(4, f"item {uid}"), Para("prompt"), Code(_clip(str(prompt))),
                           Para(_sample_caption("before (base model)", before))]
    if before is not None:
        blocks.append(Code(_clip(str(before.get("response", "")))))
    blocks.append(Para(_sample_caption(f"after ({arm.name}, step {arm.samples[0]['step']})", after)))
    if after is not None:
        blocks.append(Code(_clip(str(after.get("response", "")))))
    return blocks


def _sample_blocks(compare: Compare) -> list[Block]:
    """Per arm, the first sampled items: prompt, base response (before), last-evaluation response (after)."""
    base_samples = [s for s in compare.base.get("samples") or [] if isinstance(s, dict)]
    uids = list(dict.fromkeys(s.get("uid") for s in base_samples))[:SAMPLE_ITEMS]
    by_uid = {s.get("uid"): s for s in base_samples}
    blocks: list[Block] = []
    for group in compare.arms:
        blocks.append(Heading(3, group.name))
        if not group.runs:
            blocks.append(Para("Not started."))
            continue
        arm = group.runs[0]  # the first seed's responses
        after_by_uid = {s.get("uid"): s for s in arm.samples}
        if not arm.samples:
            blocks.append(Para("No held-out responses logged yet (eval_samples.jsonl is missing or empty)."))
            continue
        for uid in uids or list(after_by_uid)[:SAMPLE_ITEMS]:
            blocks += _item_blocks(arm, uid, by_uid.get(uid), after_by_uid.get(uid))
    return blocks


# ---- the whole report ------------------------------------------------------------------------------------------------

def report_blocks(compare: Compare, results: dict[str, Any]) -> list[Block]:
    """The report's content, once, for both renderers."""
    config_block: Block = (Code(compare.compare_text) if compare.compare_text is not None
                           else Para("compare.toml was not found; each run folder's config.toml is the record."))
    return [
        Heading(1, f"rlino comparison: {compare.folder.resolve().name}"),
        *_findings(results),
        *_scorecard(results),
        Heading(2, "What was run"),
        Para(_what_was_run(compare, results)),
        Heading(2, "Results"),
        _comparison_table(results),
        Para("Accuracy is on the held-out items: with several seeds, the mean over the finished seeds with a 95% "
             "t-interval over them (it covers the spread between seeds and the evaluation's own noise); with one "
             "seed, a Wilson 95% interval over the items, which covers only the items. Lengths are mean response "
             "lengths in tokens at the final evaluation; Δ is in percentage points."
             f"{_greedy_note(results['base'])}"),
        Heading(3, "Per seed: final held-out accuracy % (wrong-length slope, tokens per 100 steps)"),
        _per_seed_table(results),
        Heading(2, "Plots"),
        *[Image(f"plots/{name}.png", name) for name in PLOTS],
        Heading(2, "Summary"),
        Bullets(results["summary"]),
        Para("Intervals that overlap do not show that two arms are equal, only that this evaluation does not tell "
             "them apart. Length trends are least-squares slopes over the training steps: with several seeds, the "
             "mean of the seeds' slopes with a t-interval over them; with one seed, the run's own interval, which "
             "treats the steps as independent and so is narrower than it should be for slowly drifting series."),
        *_length_blocks(results),
        Heading(2, "The config used"),
        config_block,
        Heading(2, "Sample responses"),
        *_sample_blocks(compare),
    ]
