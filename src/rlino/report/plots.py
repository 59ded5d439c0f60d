"""The report's plots (plots/*.png): accuracy, length and reward vs step, per-token weight vs response length.

Each is a matplotlib `Figure` made without pyplot: it draws with Agg and leaves the caller's backend alone.
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean, median
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlino.report.length import MIN_BIN, analytic_curve, curve_settings, responses
from rlino.report.read import ArmGroup, ArmRun
from rlino.report.values import has_interval, num, pct

NUM_BINS = 12


def colors_for(names: list[str]) -> dict[str, Any]:
    """One color per arm, the same in every plot."""
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(7 if ncols == 1 else 11, 4), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("training step")
    return fig, list(axes)


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} logged yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


CROWDED = 5
"""More legend entries than this go below the plot (inside, they hide the curves)."""


def _legend(fig: Figure, axes: list[Axes], inside: bool = True) -> None:
    """One legend per axes where it is short; one shared legend under the figure where it is crowded (or where
    `inside` is False: curves and bands that fan out over the whole axes leave no free corner), naming every entry
    of every axes once (a panel may lack an arm the other one shows). Axes with nothing labelled get none."""
    axes = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    handles, labels = list(entries.values()), list(entries)
    if not handles:
        return
    if inside and len(handles) <= CROWDED:
        for ax in axes:
            ax.legend(loc="best", fontsize="small")
    else:
        fig.set_figheight(fig.get_figheight() + 0.2 * ((len(handles) + 1) // 2))  # room for it, not off the axes
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")


def moving_average(values: list[float], window: int) -> list[float]:
    """Centred moving average (the window shrinks at the ends, so the curve covers every step)."""
    half = max(window, 1) // 2
    return [fmean(values[max(0, i - half): i + half + 1]) for i in range(len(values))]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], num(row.get(key))) for row in rows]
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


# ---- training curves -------------------------------------------------------------------------------------------------

def plot_accuracy(path: Path, results: dict[str, Any], colors: dict[str, Any]) -> None:
    """Held-out accuracy vs step per arm, the base as step 0 and as a dashed line, 95% bands."""
    fig, (ax,) = _figure()
    base = results["base"]
    crowded = len(results["arms"]) > CROWDED  # overlapping bands of many arms hide the curves
    ax.axhline(100 * base["accuracy"], color="black", linestyle="--", linewidth=1,
               label=f"base {pct(base['accuracy'])}% (gray: its 95% interval)")
    if has_interval(base):
        ax.axhspan(100 * base["accuracy_lo"], 100 * base["accuracy_hi"], color="gray", alpha=0.12)
    for name, arm in results["arms"].items():
        steps, acc, lo, hi = (arm[k] for k in ("eval_steps", "eval_accuracy", "eval_accuracy_lo", "eval_accuracy_hi"))
        if not steps:
            continue
        if steps[0] > 0:  # the base model is every arm's step 0
            steps, acc = [0, *steps], [base["accuracy"], *acc]
            lo, hi = [base["accuracy_lo"], *lo], [base["accuracy_hi"], *hi]
        seeds = arm.get("seeds") or []
        label = name if len(seeds) < 2 else f"{name} (mean of {len(seeds)} seeds)"
        ax.plot(steps, [100 * a for a in acc], color=colors[name], marker="o", markersize=4, linewidth=2, label=label)
        for seed in seeds if len(seeds) > 1 else []:
            run = arm["per_seed"][seed]
            ax.plot([0, *run["eval_steps"]], [100 * a for a in [base["accuracy"], *run["eval_accuracy"]]],
                    color=colors[name], linewidth=0.7, alpha=0.5)
        if None not in lo and None not in hi and not crowded:
            ax.fill_between(steps, [100 * v for v in lo], [100 * v for v in hi], color=colors[name], alpha=0.15)
    shading = "arms' 95% intervals in the table" if crowded else "shaded: 95% interval"
    ax.set_title(f"Held-out accuracy ({shading}; thin: each seed; step 0 = base model)", fontsize="medium")
    ax.set_ylabel("accuracy (%)")
    _legend(fig, [ax], inside=False)  # the arms fan out from the base at step 0 over the whole height
    _save(fig, path)


def _seed_mean_rows(group: ArmGroup, key: str) -> list[dict[str, Any]]:
    """Per step, the mean of `key` over the seeds that logged it (rows shaped like a run's metrics rows)."""
    by_step: dict[int, list[float]] = {}
    for run in group.runs:
        for row in run.rows:
            value = num(row.get(key))
            if value is not None:
                by_step.setdefault(row["step"], []).append(value)
    return [{"step": step, key: fmean(values)} for step, values in sorted(by_step.items())]


def _group_series(ax: Axes, group: ArmGroup, key: str, color: Any) -> bool:
    """One arm: each seed's moving average thin, the mean over seeds as the light raw and bold smoothed line."""
    if len(group.runs) > 1:
        for run in group.runs:
            xs, ys = _series(run.rows, key)
            if xs:
                ax.plot(xs, moving_average(ys, max(1, len(ys) // 10)), color=color, alpha=0.35, linewidth=0.7)
    label = group.name if len(group.runs) < 2 else f"{group.name} (mean of {len(group.runs)} seeds)"
    return _raw_and_smoothed(ax, _seed_mean_rows(group, key), key, color, label)


def plot_lengths(path: Path, arms: list[ArmGroup], colors: dict[str, Any]) -> None:
    """Training mean response length vs step, correct responses left, wrong right."""
    fig, axes = _figure(ncols=2)
    for ax, key, title in zip(axes, ("length_correct_mean", "length_wrong_mean"), ("correct", "wrong")):
        drawn = [_group_series(ax, arm, key, colors[arm.name]) for arm in arms]
        ax.set_title(f"{title} responses")
        ax.set_ylabel("mean response length (tokens)")
        if not any(drawn):
            _no_data(ax, f"{title} responses")
    _legend(fig, axes)
    fig.suptitle("Training response length (light: per step, bold: moving average; thin: each seed)")
    _save(fig, path)


def plot_reward(path: Path, arms: list[ArmGroup], colors: dict[str, Any]) -> None:
    """Training mean reward vs step per arm (the mean over its seeds; thin: each seed)."""
    fig, (ax,) = _figure()
    drawn = [_group_series(ax, arm, "reward_mean", colors[arm.name]) for arm in arms]
    ax.set_title("Training reward (light: per step, bold: moving average; thin: each seed)")
    ax.set_ylabel("mean reward per response")
    if any(drawn):
        _legend(fig, [ax])
    else:
        _no_data(ax, "training steps")
    _save(fig, path)


# ---- per-token weight vs length (the length study) -------------------------------------------------------------------

def _binned(points: list[tuple[int, float]], edges: list[float]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for lo, hi in zip(edges, edges[1:]):
        inside = [(L, t) for L, t in points if lo <= L < hi or (hi == edges[-1] and L == hi)]
        if len(inside) >= MIN_BIN:
            xs.append(fmean(L for L, _ in inside))
            ys.append(fmean(t for _, t in inside))
    return xs, ys


def _token_weight_panel(ax: Axes, arm: ArmRun) -> None:
    """Measured per-token weight (× N) vs length, binned, over the analytic curves where the aggregation and
    max_new_tokens are known (weights.jsonl, or config.toml for older folders)."""
    aggregation, max_new = curve_settings(arm.weights, arm.config)
    logged = responses(arm.weights)
    n = int(median(row["num_responses"] for row in arm.weights))
    mean_length = median(row["num_tokens"] / row["num_responses"] for row in arm.weights)
    ordered = sorted(L for L, *_ in logged)  # from the 2nd percentile: a few very short responses would
    low, top = ordered[len(ordered) // 50], ordered[-1]  # stretch the 1/L curve over the whole panel
    edges = [low + (top - low) * k / NUM_BINS for k in range(NUM_BINS + 1)]
    grid = list(range(max(low, 1), top + 1))
    ax.axhline(0, color="black", linewidth=0.6)
    for label, want, color, marker in (("correct", True, "tab:green", "o"), ("wrong", False, "tab:red", "x")):
        group = [(L, w, t) for L, c, w, t in logged if c == want]
        if not group:
            continue
        if aggregation is not None and max_new is not None:
            w_mean = fmean(w for _, w, _ in group)
            ax.plot(grid, analytic_curve(grid, aggregation, w_mean, num_responses=n, mean_length=mean_length,
                                         max_new_tokens=max_new), color=color, linewidth=1.5,
                    label=f"{label}: analytic (mean w = {w_mean:+.2f})")
        xs, ys = _binned([(L, t) for L, _, t in group], edges)
        ax.plot(xs, ys, linestyle="none", marker=marker, color=color, markersize=5, label=f"{label}: measured")
    named = aggregation is None or aggregation in arm.name
    ax.set_title(arm.name if named else f"{arm.name}\n{aggregation}", fontsize="small")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("per-token weight × N")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", loc="best")


def plot_token_weights(path: Path, arms: list[ArmRun]) -> None:
    """One panel per arm with weights.jsonl: measured per-token weight (× N) vs length over the analytic curves."""
    arms = [arm for arm in arms if arm.weights]
    ncols = min(4, max(1, len(arms)))
    nrows = max(1, -(-len(arms) // ncols))
    fig = Figure(figsize=(3.6 * ncols, 3.1 * nrows + 0.6), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(arms):]:
        ax.axis("off")
    if not arms:
        axes[0].text(0.5, 0.5, "no weights.jsonl logged yet", ha="center", va="center", color="gray")
    for ax, arm in zip(axes, arms):
        _token_weight_panel(ax, arm)
    fig.suptitle("Per-token weight vs response length (lines: analytic; markers: measured on the training steps, "
                 "mean per length bin)", fontsize="small")
    _save(fig, path)


# ---- per-token weight along the response (credit assignment) ---------------------------------------------------------

THIRDS = ["first third", "middle third", "last third"]


def plot_position_weights(path: Path, results: dict[str, Any], colors: dict[str, Any]) -> None:
    """Per arm, the mean weight of the first, middle and last third of a response's tokens, divided by the mean size
    of the three: ±1 throughout for the outcome methods (one weight per response), a shape for a critic's."""
    fig = Figure(figsize=(11, 4), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    arms = {name: arm.get("token_weight_position") for name, arm in results["arms"].items()}
    for ax, label in zip(axes, ("correct", "wrong")):
        ax.axhline(0, color="black", linewidth=0.6)
        drawn = False
        for name, summary in arms.items():
            if summary and summary.get(label):
                ax.plot(range(3), summary[label], marker="o", color=colors.get(name), label=name)
                drawn = True
        if not drawn:
            _no_data(ax, f"per-position weight of {label} responses")
        ax.set_xticks(range(3), THIRDS)
        ax.set_ylabel("weight ÷ the response's mean |weight|")
        ax.set_title(f"{label} responses", fontsize="small")
        ax.grid(True, alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Where along the response the per-token weight sits (measured on the training steps, "
                 "−∂loss/∂log π_t, mean over responses)", fontsize="small")
    _save(fig, path)
