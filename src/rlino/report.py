"""The report of a compare folder: results.json, report.md, report.html and plots/*.png, read back from the files.

A compare folder holds `compare.toml` (the compare config as run), `base/eval.json` (the base model's held-out
evaluation) and `runs/<arm>/` (one `rlino train` run folder per arm). `build_report` reads only those files, so a
report can be rendered again at any time, also for a compare that was interrupted: an arm with no evaluation yet is
shown with "—" and noted, an arm whose folder does not exist yet is listed as not started.

Accuracies in results.json are fractions (0.372), as in the run files; differences between accuracies are in
percentage points; lengths are in tokens; length slopes are tokens per 100 training steps.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlino.errors import RlinoError
from rlino.length_study import causal_verdicts, plot_token_weights, token_weight_summary
from rlino.stats import ols_slope, t_quantile_975, wilson_interval  # noqa: F401 (re-exported)

PLOTS = ("accuracy", "length", "reward")
SAMPLE_ITEMS = 3
SAMPLE_CHARS = 4000  # longer responses are cut in the report (not in the run files) to keep it readable
DASH = "—"

def trend(slope: dict[str, Any] | None) -> str:
    """'grew', 'shrank' or 'no clear trend' from a slope's 95% interval; 'too few steps to tell' without one."""
    if slope is None:
        return "too few steps to tell"
    if slope["lo"] > 0:
        return "grew"
    if slope["hi"] < 0:
        return "shrank"
    return "no clear trend"


def _num(value: Any) -> float | None:
    """A finite number as float, else None (the run files write null, and may write NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _round(value: Any, digits: int) -> float | None:
    number = _num(value)
    return None if number is None else round(number, digits)


# ---- reading the folder --------------------------------------------------------------------------------------------

@dataclass
class ArmRun:
    """One arm as read from its run folder; `rows` holds one metrics row per step, `evals` the rows with eval/."""

    name: str
    folder: Path
    method: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    """weights.jsonl: per step, each response's length, correctness, w_i and measured per-token weight."""
    started: bool = True


@dataclass
class Compare:
    """Everything a report is made from."""

    folder: Path
    compare_text: str | None
    base: dict[str, Any]
    arms: list[ArmRun]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RlinoError(f"{path}: not valid TOML: {e}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RlinoError(f"{path}: not valid JSON: {e}") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; a partial last line (a run killed mid-write) is skipped."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                break
            raise RlinoError(f"{path}, line {number}: not valid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise RlinoError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _one_row_per_step(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Rows sorted by step; if a step was logged twice (a resume), the later line counts."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise RlinoError(f"{path}: a row has no integer 'step': {json.dumps(row)[:120]}")
        latest[step] = row
    return [latest[s] for s in sorted(latest)]


def _arm_entries(folder: Path, compare_cfg: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    """(arm name, method named in compare.toml) in the compare's order; sorted runs/ subfolders without it."""
    if compare_cfg is None:
        runs = folder / "runs"
        names = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
        return [(name, None) for name in names]
    where = folder / "compare.toml"
    section = compare_cfg.get("compare")
    arms = section.get("arms") if isinstance(section, dict) else None
    if not isinstance(arms, list):
        raise RlinoError(f"{where}: [compare] needs 'arms', a list of method names or {{name=..., method=...}} tables")
    entries = []
    for i, arm in enumerate(arms):
        if isinstance(arm, str):
            entries.append((arm, arm))
        elif isinstance(arm, dict) and isinstance(arm.get("name", arm.get("method")), str):
            entries.append((arm.get("name", arm.get("method")), arm.get("method")))
        else:
            raise RlinoError(f"{where}: compare.arms[{i}] must be a method name or a table with 'name', got {arm!r}")
    names = [name for name, _ in entries]
    for name in names:
        if names.count(name) > 1:
            raise RlinoError(f"{where}: arm name '{name}' appears twice in compare.arms; give each arm its own name")
    return entries


def _load_arm(folder: Path, name: str, method: str | None) -> ArmRun:
    run = folder / "runs" / name
    if not run.is_dir():
        # listed in compare.toml but not started yet (an interrupted compare): shown, not an error
        return ArmRun(name, run, method=method, started=False)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise RlinoError(f"arm '{name}': {metrics} not found; is {run} an `rlino train` run folder?")
    config = _read_toml(run / "config.toml") if (run / "config.toml").is_file() else {}
    rows = _one_row_per_step(_read_jsonl(metrics), metrics)
    arm = ArmRun(name, run, method=config.get("method", {}).get("name", method), config=config, rows=rows)
    arm.evals = [row for row in rows if _num(row.get("eval/accuracy")) is not None]
    arm.samples = _last_eval_samples(run / "eval_samples.jsonl")
    if (run / "weights.jsonl").is_file():
        arm.weights = _one_row_per_step(_read_jsonl(run / "weights.jsonl"), run / "weights.jsonl")
    return arm


def _last_eval_samples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [row for row in _read_jsonl(path) if isinstance(row.get("step"), int)]
    last = max((row["step"] for row in rows), default=None)
    return [row for row in rows if row["step"] == last]


def load_compare(compare_dir: str | Path) -> Compare:
    """Read a compare folder (see the module docstring); RlinoError names the path of whatever is missing."""
    folder = Path(compare_dir)
    if not folder.is_dir():
        raise RlinoError(f"compare folder not found: {folder}")
    base_path = folder / "base" / "eval.json"
    if not base_path.is_file():
        raise RlinoError(f"{base_path} not found: the base model's held-out evaluation is missing")
    base = _read_json(base_path)
    if not isinstance(base, dict) or _num(base.get("eval/accuracy")) is None:
        raise RlinoError(f"{base_path}: expected a JSON object with a numeric 'eval/accuracy'")
    compare_path = folder / "compare.toml"
    compare_text = compare_path.read_text() if compare_path.is_file() else None
    compare_cfg = _read_toml(compare_path) if compare_text is not None else None
    arms = [_load_arm(folder, name, method) for name, method in _arm_entries(folder, compare_cfg)]
    if not any(arm.started for arm in arms):
        raise RlinoError(f"no runs in {folder / 'runs'}: expected one run folder per arm, runs/<arm>/metrics.jsonl")
    return Compare(folder, compare_text, base, arms)


# ---- results -------------------------------------------------------------------------------------------------------

def _interval(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(accuracy, lo, hi) of an eval row (a metrics row or base/eval.json), Wilson when the row lacks lo/hi."""
    acc, lo, hi = (_num(row.get(f"eval/accuracy{s}")) for s in ("", "_lo", "_hi"))
    n = row.get("eval/num_items")
    if acc is not None and (lo is None or hi is None) and isinstance(n, int):
        lo, hi = wilson_interval(acc, n)
    return acc, lo, hi


def _base_results(base: dict[str, Any]) -> dict[str, Any]:
    acc, lo, hi = _interval(base)
    out = {"accuracy": _round(acc, 4), "accuracy_lo": _round(lo, 4), "accuracy_hi": _round(hi, 4),
           "num_items": base.get("eval/num_items"),
           "length_correct_mean": _round(base.get("eval/length_correct_mean"), 1),
           "length_wrong_mean": _round(base.get("eval/length_wrong_mean"), 1)}
    if "eval/greedy_accuracy" in base:
        out["greedy_accuracy"] = _round(base["eval/greedy_accuracy"], 4)
    return out


def length_slope(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """OLS trend of a per-step training metric (e.g. length_wrong_mean) in units per 100 steps, nulls skipped."""
    points = [(row["step"], _num(row.get(key))) for row in rows]
    points = [(x, y) for x, y in points if y is not None]
    fit = ols_slope([float(x) for x, _ in points], [y for _, y in points])
    if fit is None:
        return None
    out = {"per_100_steps": round(100 * fit["slope"], 3), "lo": round(100 * fit["lo"], 3),
           "hi": round(100 * fit["hi"], 3), "num_steps": fit["n"]}
    out["trend"] = trend(out)
    return out


def _arm_results(arm: ArmRun, base_accuracy: float) -> dict[str, Any]:
    final = arm.evals[-1] if arm.evals else {}
    acc, lo, hi = _interval(final)
    last = arm.rows[-1] if arm.rows else {}
    intervals = [_interval(row) for row in arm.evals]
    return {
        "method": arm.method,
        "aggregation": arm.config.get("method", {}).get("aggregation"),
        "accuracy": _round(acc, 4), "accuracy_lo": _round(lo, 4), "accuracy_hi": _round(hi, 4),
        "delta_vs_base": None if acc is None else round(100 * (acc - base_accuracy), 2),
        "length_correct_mean": _round(final.get("eval/length_correct_mean"), 1),
        "length_wrong_mean": _round(final.get("eval/length_wrong_mean"), 1),
        "steps": last.get("step"),
        "planned_steps": arm.config.get("train", {}).get("steps"),
        "wall_time_s": _round(last.get("time_s"), 1),
        "eval_steps": [row["step"] for row in arm.evals],
        "eval_accuracy": [_round(a, 4) for a, _, _ in intervals],
        "eval_accuracy_lo": [_round(lo_, 4) for _, lo_, _ in intervals],
        "eval_accuracy_hi": [_round(hi_, 4) for _, _, hi_ in intervals],
        "length_wrong_slope": length_slope(arm.rows, "length_wrong_mean"),
        "length_correct_slope": length_slope(arm.rows, "length_correct_mean"),
        "token_weight": token_weight_summary(arm.weights),
    }


def compute_results(compare: Compare) -> dict[str, Any]:
    """The results dict (as written to results.json) of a loaded compare folder."""
    base = _base_results(compare.base)
    arms = {arm.name: _arm_results(arm, compare.base["eval/accuracy"]) for arm in compare.arms}
    results = {"base": base, "arms": arms}
    results["summary"] = summary_sentences(results, [arm.name for arm in compare.arms if not arm.started])
    results["length_verdicts"] = causal_verdicts(arms)
    return _json_safe(results)


def _json_safe(value: Any) -> Any:
    """The same structure with NaN and infinities as None, so json.dumps(allow_nan=False) accepts it."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---- the summary ---------------------------------------------------------------------------------------------------

def _pct(acc: float | None) -> str:
    return DASH if acc is None else f"{100 * acc:.1f}"


def _acc_ci(r: dict[str, Any]) -> str:
    """'37.2% [33.1, 41.5]' (or '37.2%' when the interval is unknown)."""
    if r.get("accuracy") is None:
        return DASH
    if r.get("accuracy_lo") is None or r.get("accuracy_hi") is None:
        return f"{_pct(r['accuracy'])}%"
    return f"{_pct(r['accuracy'])}% [{_pct(r['accuracy_lo'])}, {_pct(r['accuracy_hi'])}]"


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["accuracy_lo"] <= b["accuracy_hi"] and b["accuracy_lo"] <= a["accuracy_hi"]


def _has_interval(r: dict[str, Any]) -> bool:
    return all(r.get(k) is not None for k in ("accuracy", "accuracy_lo", "accuracy_hi"))


def _accuracy_sentence(name: str, arm: dict[str, Any], base: dict[str, Any]) -> str:
    delta = arm["delta_vs_base"]
    where = "over" if delta >= 0 else "under"
    text = f"{name}: {_acc_ci(arm)}, {delta:+.1f} points {where} the base ({_acc_ci(base)}) after {arm['steps']} steps"
    if _has_interval(arm) and _has_interval(base):
        text += "; the 95% intervals overlap" if _overlap(arm, base) else "; the 95% intervals do not overlap"
    return text + "."


def _pair_sentence(a_name: str, a: dict[str, Any], b_name: str, b: dict[str, Any]) -> str:
    """Whether two arms' 95% intervals overlap, higher arm first."""
    if a["accuracy"] < b["accuracy"]:
        a_name, a, b_name, b = b_name, b, a_name, a
    if not _overlap(a, b):
        return f"{a_name} is above {b_name}: the 95% intervals do not overlap ({_acc_ci(a)} vs {_acc_ci(b)})."
    def holds(x: dict[str, Any], y: dict[str, Any]) -> bool:
        return x["accuracy_lo"] <= y["accuracy"] <= x["accuracy_hi"]

    if holds(a, b) and holds(b, a):
        return f"{a_name} and {b_name} are within each other's intervals ({_acc_ci(a)} and {_acc_ci(b)})."
    return (f"The 95% intervals of {a_name} and {b_name} overlap ({_acc_ci(a)} and {_acc_ci(b)}), "
            f"so this evaluation does not separate them.")


def _fmt_slope(slope: dict[str, Any]) -> str:
    """'+12.3 tokens per 100 steps, 95% CI [8.1, 16.5]', with more decimals when every number is below 1."""
    digits = 1 if max(abs(slope["lo"]), abs(slope["hi"])) >= 1 else 3
    x, lo, hi = (f"{slope[k]:.{digits}f}" for k in ("per_100_steps", "lo", "hi"))
    return f"{'' if x.startswith('-') else '+'}{x} tokens per 100 steps, 95% CI [{lo}, {hi}]"


def _length_sentence(name: str, arm: dict[str, Any]) -> str:
    wrong, correct = arm["length_wrong_slope"], arm["length_correct_slope"]
    if wrong is None:
        text = f"{name}: too few training steps with wrong responses to estimate a trend in their length"
    else:
        text = f"{name}: wrong-response length: {trend(wrong)} ({_fmt_slope(wrong)})"
    if correct is not None:
        text += f"; correct-response length: {trend(correct)} ({_fmt_slope(correct)})"
    return text + "."


def _progress_notes(name: str, arm: dict[str, Any]) -> list[str]:
    """Notes for arms that are unfinished: no step, no evaluation, fewer steps than configured."""
    if arm["steps"] is None:
        return [f"{name}: no training step logged yet."]
    notes = []
    planned = arm["planned_steps"]
    if isinstance(planned, int) and arm["steps"] < planned:
        notes.append(f"{name}: the run stopped at step {arm['steps']} of the {planned} configured.")
    if arm["accuracy"] is None:
        notes.append(f"{name}: no held-out evaluation yet, so it has no accuracy in the table.")
    return notes


def summary_sentences(results: dict[str, Any], not_started: list[str] | None = None) -> list[str]:
    """Plain sentences read off the numbers: accuracy vs base, pairwise interval overlap, length trends."""
    base, arms = results["base"], results["arms"]
    not_started = not_started or []
    out = [f"{name}: not started (no folder in runs/)." for name in not_started]
    for name, arm in arms.items():
        if name not in not_started:
            out += _progress_notes(name, arm)
    evaluated = [(name, arm) for name, arm in arms.items() if arm["accuracy"] is not None]
    out += [_accuracy_sentence(name, arm, base) for name, arm in evaluated]
    with_ci = [(name, arm) for name, arm in evaluated if _has_interval(arm)]
    for i, (a_name, a) in enumerate(with_ci):
        out += [_pair_sentence(a_name, a, b_name, b) for b_name, b in with_ci[i + 1:]]
    out += [_length_sentence(name, arm) for name, arm in arms.items() if arm["steps"] is not None]
    return out


# ---- plots ---------------------------------------------------------------------------------------------------------

def _colors(names: list[str]) -> dict[str, Any]:
    """One color per arm, the same in every plot."""
    palette = matplotlib.colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    # Figure without pyplot: draws with Agg and leaves the caller's matplotlib backend alone
    fig = Figure(figsize=(7 if ncols == 1 else 11, 4), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("training step")
    return fig, list(axes)


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} logged yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def moving_average(values: list[float], window: int) -> list[float]:
    """Centred moving average (the window shrinks at the ends, so the curve covers every step)."""
    half = max(window, 1) // 2
    return [fmean(values[max(0, i - half): i + half + 1]) for i in range(len(values))]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], _num(row.get(key))) for row in rows]
    points = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in points], [y for _, y in points]


def _raw_and_smoothed(ax: Axes, rows: list[dict[str, Any]], key: str, color: Any, label: str) -> bool:
    """A light per-step line and a bold moving average; False when the series is empty."""
    xs, ys = _series(rows, key)
    if not xs:
        return False
    ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
    ax.plot(xs, moving_average(ys, max(1, len(ys) // 20)), color=color, linewidth=2, label=label)
    return True


def plot_accuracy(path: Path, results: dict[str, Any], colors: dict[str, Any]) -> None:
    """Held-out accuracy vs step per arm, the base as step 0 and as a dashed line, 95% bands."""
    fig, (ax,) = _figure()
    base = results["base"]
    ax.axhline(100 * base["accuracy"], color="black", linestyle="--", linewidth=1,
               label=f"base {_pct(base['accuracy'])}% (gray: its 95% interval)")
    if _has_interval(base):
        ax.axhspan(100 * base["accuracy_lo"], 100 * base["accuracy_hi"], color="gray", alpha=0.12)
    for name, arm in results["arms"].items():
        steps, acc, lo, hi = (arm[k] for k in ("eval_steps", "eval_accuracy", "eval_accuracy_lo", "eval_accuracy_hi"))
        if not steps:
            continue
        if steps[0] > 0:  # the base model is every arm's step 0
            steps, acc = [0, *steps], [base["accuracy"], *acc]
            lo, hi = [base["accuracy_lo"], *lo], [base["accuracy_hi"], *hi]
        ax.plot(steps, [100 * a for a in acc], color=colors[name], marker="o", markersize=4, linewidth=2, label=name)
        if None not in lo and None not in hi:
            ax.fill_between(steps, [100 * v for v in lo], [100 * v for v in hi], color=colors[name], alpha=0.15)
    ax.set_title("Held-out accuracy (shaded: 95% interval; step 0 = base model)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def plot_lengths(path: Path, arms: list[ArmRun], colors: dict[str, Any]) -> None:
    """Training mean response length vs step, correct responses left, wrong right."""
    fig, axes = _figure(ncols=2)
    for ax, key, title in zip(axes, ("length_correct_mean", "length_wrong_mean"), ("correct", "wrong")):
        drawn = [_raw_and_smoothed(ax, arm.rows, key, colors[arm.name], arm.name) for arm in arms]
        ax.set_title(f"{title} responses")
        ax.set_ylabel("mean response length (tokens)")
        if any(drawn):
            ax.legend(loc="best", fontsize="small")
        else:
            _no_data(ax, f"{title} responses")
    fig.suptitle("Training response length (light: per step, bold: moving average)")
    _save(fig, path)


def plot_reward(path: Path, arms: list[ArmRun], colors: dict[str, Any]) -> None:
    """Training mean reward vs step per arm."""
    fig, (ax,) = _figure()
    drawn = [_raw_and_smoothed(ax, arm.rows, "reward_mean", colors[arm.name], arm.name) for arm in arms]
    ax.set_title("Training reward (light: per step, bold: moving average)")
    ax.set_ylabel("mean reward per response")
    if any(drawn):
        ax.legend(loc="best", fontsize="small")
    else:
        _no_data(ax, "training steps")
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


# ---- the document: blocks rendered to markdown and to HTML ---------------------------------------------------------

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


Block = Heading | Para | Bullets | Table | Image | Code


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _fmt(value: Any, spec: str = "") -> str:
    return DASH if value is None else format(value, spec)


def _comparison_table(results: dict[str, Any]) -> Table:
    header = ["", "method", "held-out accuracy % [95% CI]", "Δ vs base (points)", "mean length correct (tokens)",
              "mean length wrong (tokens)", "steps", "wall time"]
    base = results["base"]
    rows = [["Base", DASH, _acc_ci(base).replace("%", ""), DASH, _fmt(base["length_correct_mean"], ".1f"),
             _fmt(base["length_wrong_mean"], ".1f"), "0", DASH]]
    for name, arm in results["arms"].items():
        rows.append([name, arm["method"] or DASH, _acc_ci(arm).replace("%", ""), _fmt(arm["delta_vs_base"], "+.1f"),
                     _fmt(arm["length_correct_mean"], ".1f"), _fmt(arm["length_wrong_mean"], ".1f"),
                     _fmt(arm["steps"]), _fmt_duration(arm["wall_time_s"])])
    return Table(header, rows)


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
    if results.get("length_verdicts"):
        blocks += [Heading(3, "Does the aggregation cause the length growth?"), Bullets(results["length_verdicts"])]
    return blocks


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
    return (f"Each arm trained {s('model', 'name_or_path')} on the {s('task', 'name')} task for "
            f"{s('train', 'steps')} steps of {s('train', 'prompts_per_step')} prompts × {s('train', 'group_size')} "
            f"sampled responses (learning rate {s('train', 'learning_rate')}, sampling temperature "
            f"{s('sampling', 'temperature')}, at most {s('sampling', 'max_new_tokens')} new tokens). Held-out "
            f"accuracy is measured on {results['base']['num_items'] or '?'} test items (eval temperature "
            f"{s('eval', 'temperature')}; 0 is greedy) {when}; the base model is step 0. "
            f"Arms: {'; '.join(descriptions)}.")


def _greedy_note(base: dict[str, Any]) -> str:
    greedy = base.get("greedy_accuracy")
    return "" if greedy is None else f" The base model's accuracy with greedy decoding is {_pct(greedy)}%."


def _clip(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return text[:SAMPLE_CHARS] + f"\n… [cut here: {len(text) - SAMPLE_CHARS} more characters]"


def _sample_caption(label: str, sample: dict[str, Any] | None) -> str:
    if sample is None:
        return f"{label}: no sample logged for this item."
    return f"{label}: reward {_fmt(sample.get('reward'))}, {_fmt(sample.get('length'))} tokens"


def _sample_blocks(compare: Compare) -> list[Block]:
    """Per arm, the first sampled items: prompt, base response (before), last-evaluation response (after)."""
    base_samples = [s for s in compare.base.get("samples") or [] if isinstance(s, dict)]
    uids = list(dict.fromkeys(s.get("uid") for s in base_samples))[:SAMPLE_ITEMS]
    by_uid = {s.get("uid"): s for s in base_samples}
    blocks: list[Block] = []
    for arm in compare.arms:
        blocks.append(Heading(3, arm.name))
        after_by_uid = {s.get("uid"): s for s in arm.samples}
        if not arm.samples:
            blocks.append(Para("No held-out responses logged yet (eval_samples.jsonl is missing or empty)."))
            continue
        for uid in uids or list(after_by_uid)[:SAMPLE_ITEMS]:
            before, after = by_uid.get(uid), after_by_uid.get(uid)
            prompt = (before or after or {}).get("prompt", "")
            blocks += [Heading(4, f"item {uid}"), Para("prompt"), Code(_clip(str(prompt))),
                       Para(_sample_caption("before (base model)", before))]
            if before is not None:
                blocks.append(Code(_clip(str(before.get("response", "")))))
            blocks.append(Para(_sample_caption(f"after ({arm.name}, step {arm.samples[0]['step']})", after)))
            if after is not None:
                blocks.append(Code(_clip(str(after.get("response", "")))))
    return blocks


def report_blocks(compare: Compare, results: dict[str, Any]) -> list[Block]:
    """The report's content, once, for both renderers."""
    config_block: Block = (Code(compare.compare_text) if compare.compare_text is not None
                           else Para("compare.toml was not found; each run folder's config.toml is the record."))
    return [
        Heading(1, f"rlino comparison: {compare.folder.resolve().name}"),
        Para(_what_was_run(compare, results)),
        Heading(2, "Results"),
        _comparison_table(results),
        Para("Accuracy is on the held-out items with a Wilson 95% interval; lengths are mean response lengths in "
             f"tokens at the final evaluation; Δ is in percentage points.{_greedy_note(results['base'])}"),
        Heading(2, "Plots"),
        *[Image(f"plots/{name}.png", name) for name in PLOTS],
        Heading(2, "Summary"),
        Bullets(results["summary"]),
        Para("Intervals that overlap do not show that two arms are equal, only that this evaluation does not tell "
             "them apart. Length trends are least-squares slopes over the training steps; their intervals treat the "
             "steps as independent, so they are narrower than they should be for slowly drifting series."),
        *_length_blocks(results),
        Heading(2, "The config used"),
        config_block,
        Heading(2, "Sample responses"),
        *_sample_blocks(compare),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text, so model output cannot close it."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def to_markdown(blocks: list[Block]) -> str:
    """Render the blocks as GitHub-flavoured markdown (plots linked relatively)."""
    parts = []
    for block in blocks:
        match block:
            case Heading(level, text):
                parts.append(f"{'#' * level} {text}")
            case Para(text):
                parts.append(text)
            case Bullets(items):
                parts.append("\n".join(f"- {item}" for item in items))
            case Table(header, rows):
                lines = [header, ["---"] * len(header), *rows]
                parts.append("\n".join("| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines))
            case Image(path, alt):
                parts.append(f"![{alt}]({path})")
            case Code(text):
                fence = _md_fence(text)
                parts.append(f"{fence}\n{text.rstrip()}\n{fence}")
    return "\n\n".join(parts) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .35em .7em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .8em; white-space: pre-wrap;
      word-break: break-word; font-size: .88em; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], folder: Path) -> str:
    """Render the blocks as one self-contained HTML page; every text is escaped (model output is untrusted)."""
    e = html.escape
    parts = []
    for block in blocks:
        match block:
            case Heading(level, text):
                parts.append(f"<h{level}>{e(text)}</h{level}>")
            case Para(text):
                parts.append(f"<p>{e(text)}</p>")
            case Bullets(items):
                parts.append("<ul>\n" + "\n".join(f"<li>{e(item)}</li>" for item in items) + "\n</ul>")
            case Table(header, rows):
                head = "".join(f"<th>{e(c)}</th>" for c in header)
                body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                parts.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")
            case Image(path, alt):
                parts.append(f'<img alt="{e(alt)}" src="{_data_uri(folder / path)}">')
            case Code(text):
                parts.append(f"<pre><code>{e(text.rstrip())}</code></pre>")
    title = next((b.text for b in blocks if isinstance(b, Heading)), "rlino report")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")


# ---- entry point ---------------------------------------------------------------------------------------------------

def build_report(compare_dir: str | Path) -> dict[str, Any]:
    """Read a compare folder, write results.json, report.md, report.html and plots/*.png into it; return the results."""
    compare = load_compare(compare_dir)
    folder = compare.folder
    results = compute_results(compare)
    colors = _colors([arm.name for arm in compare.arms])
    started = [arm for arm in compare.arms if arm.started]
    plot_accuracy(folder / "plots" / "accuracy.png", results, colors)
    plot_lengths(folder / "plots" / "length.png", started, colors)
    plot_reward(folder / "plots" / "reward.png", started, colors)
    plot_token_weights(folder / "plots" / "token_weights.png", started)
    blocks = report_blocks(compare, results)
    (folder / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (folder / "report.md").write_text(to_markdown(blocks))
    (folder / "report.html").write_text(to_html(blocks, folder))
    return results
