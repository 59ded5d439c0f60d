"""`rlino compare`: several arms under identical conditions, the base model evaluated once, then a report.

Every arm is an `rlino train` run that differs from the others only in its method settings: same base model, same
seed, same prompts in the same order, same sampling noise (counter-based, so arms see common random numbers), same
steps and the same held-out items evaluated at the same steps.

    DIR/compare.toml        the config as run (the [compare] table plus the shared run settings)
    DIR/base/eval.json      the base model on the held-out items (the step-0 point of every arm)
    DIR/runs/<arm>/         one run folder per arm
    DIR/results.json, report.md, report.html, plots/   written by `rlino.report.build_report`
"""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from rlino.config import Config, apply_overrides, config_from_dict, config_to_dict, read_toml
from rlino.errors import RlinoError
from rlino.objectives import METHODS

DEFAULT_CONFIG = "compare_default.toml"
# The --quick profile: the same comparison, shorter (a first look in a few minutes).
QUICK = ["train.steps=20", "eval.every=10"]


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    overrides: tuple[str, ...] = ()

    def config(self, shared: Config) -> Config:
        data = config_to_dict(shared)
        # the arm names the method row; shared [method] keys (e.g. --set method.neg_weight=0.5) apply to every arm,
        # and the arm's own `set` entries come last
        data["method"] = {**{k: v for k, v in data.get("method", {}).items() if k != "name"}, "name": self.method}
        apply_overrides(data, list(self.overrides))
        return config_from_dict(data, where=f"arm '{self.name}'")


def parse_arms(raw: Any) -> list[Arm]:
    """Arms from the config: a method name, or a table {name, method, set = ["method.key=value", ...]}."""
    from rlino.config import _closest

    if not isinstance(raw, list) or not raw:
        raise RlinoError("compare.arms must be a non-empty list of method names or {name, method, set} tables")
    arms = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"name": entry, "method": entry}
        if not isinstance(entry, dict):
            raise RlinoError(f"compare.arms[{i}]: expected a method name or a table, got {entry!r}")
        unknown = set(entry) - {"name", "method", "set"}
        if unknown:
            raise RlinoError(f"compare.arms[{i}]: unknown key(s) {sorted(unknown)}; use name, method, set")
        method = entry.get("method", entry.get("name"))
        name = entry.get("name", method)
        if method not in METHODS:
            raise RlinoError(f"compare.arms[{i}]: unknown method '{method}'{_closest(str(method), list(METHODS))}; "
                             f"valid: {', '.join(METHODS)}")
        sets = entry.get("set", [])
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise RlinoError(f"compare.arms[{i}].set must be a list of 'section.key=value' strings")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise RlinoError(f"compare.arms[{i}]: name must be a plain folder name, got {name!r}")
        arms.append(Arm(name, method, tuple(sets)))
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RlinoError(f"compare.arms: duplicate arm name(s) {dupes}; give each arm a distinct name")
    return arms


def load_compare_config(path: str | Path | None, overrides: list[str], quick: bool = False
                        ) -> tuple[dict[str, Any], Config, list[Arm]]:
    """Read a compare config (the packaged default when `path` is None): raw dict, shared Config, arms."""
    if path is None:
        data = tomllib.loads(resources.files("rlino").joinpath(DEFAULT_CONFIG).read_text())
        where = f"(default) {DEFAULT_CONFIG}"
    else:
        data, where = read_toml(path), str(path)
    apply_overrides(data, (QUICK if quick else []) + list(overrides))
    compare = data.pop("compare", {})
    unknown = set(compare) - {"arms"}
    if unknown:
        raise RlinoError(f"{where}: unknown key(s) in [compare]: {sorted(unknown)} (valid: arms)")
    arms = parse_arms(compare.get("arms"))
    if "name" in data.get("method", {}):
        raise RlinoError(f"{where}: method.name does not apply to a compare: each arm names its method in "
                         "compare.arms (a shared [method] table sets the other method keys for every arm)")
    shared = config_from_dict(data, where)
    for arm in arms:  # every arm must be valid before anything runs
        from rlino.trainer import validate

        validate(arm.config(shared))
    return {"compare": compare, **data}, shared, arms


def evaluate_base(shared: Config, out: Path) -> dict[str, Any]:
    """The base model on the held-out items with the arms' eval settings (plus greedy), saved to base/eval.json."""
    from rlino.evaluate import evaluate
    from rlino.models import load_model
    from rlino.tasks import load_task

    c = shared
    task = load_task(c.task.name, **c.task.options)
    items = task.items("test")[: c.eval.num_items]
    model, tokenizer = load_model(c.model.name_or_path, dtype=c.model.dtype, device=c.model.device,
                                  seed=c.train.seed)
    kw = dict(seed=c.train.seed, top_p=c.eval.top_p, batch_size=c.sampling.batch_size,
              max_new_tokens=c.eval.max_new_tokens or c.sampling.max_new_tokens)
    result = evaluate(model, tokenizer, task, items, temperature=c.eval.temperature, log_samples=c.eval.log_samples,
                      **kw)
    if c.eval.temperature > 0:
        result["eval/greedy_accuracy"] = evaluate(model, tokenizer, task, items, temperature=0.0, **kw)[
            "eval/accuracy"]
    (out / "base").mkdir(parents=True, exist_ok=True)
    (out / "base" / "eval.json").write_text(json.dumps(result, indent=1))
    return result


def _finished(run_dir: Path, steps: int) -> bool:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return False
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return bool(lines) and json.loads(lines[-1])["step"] >= steps


def compare(config_path: str | Path | None, overrides: list[str], out: str | Path, *, quick: bool = False,
            resume: bool = False, log=print) -> dict[str, Any]:
    """Run every arm and the base evaluation, then write the report; returns the results dict."""
    from rlino.report import build_report
    from rlino.trainer import Run, complete_checkpoints

    raw, shared, arms = load_compare_config(config_path, overrides, quick)
    out = Path(out)
    if (out / "compare.toml").exists() and not resume:
        raise RlinoError(f"{out} already holds a comparison: pass --resume to finish it, or choose another --out")
    if resume and (out / "compare.toml").exists():
        if tomllib.loads((out / "compare.toml").read_text()) != raw:
            raise RlinoError(f"--resume {out}: the config differs from the one it was started with")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.toml").write_text(tomli_w.dumps(raw))

    if not (out / "base" / "eval.json").is_file():
        base = evaluate_base(shared, out)
    else:
        base = json.loads((out / "base" / "eval.json").read_text())
    log(f"base: held-out accuracy {100 * base['eval/accuracy']:.1f}% "
        f"[{100 * base['eval/accuracy_lo']:.1f}, {100 * base['eval/accuracy_hi']:.1f}]"
        + (f", greedy {100 * base['eval/greedy_accuracy']:.1f}%" if "eval/greedy_accuracy" in base else ""))

    for arm in arms:
        run_dir = out / "runs" / arm.name
        cfg = arm.config(shared)
        if _finished(run_dir, cfg.train.steps):
            log(f"{arm.name}: already finished, skipped")
            continue
        if complete_checkpoints(run_dir):
            run = Run(cfg, run_dir, resume=True, label=arm.name)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # an arm that never checkpointed starts over
            run = Run(cfg, run_dir, label=arm.name)
        run.fit()
    results = build_report(out)
    for name, r in results["arms"].items():
        log(one_line_summary(name, r, results["base"]))
    return results


def one_line_summary(name: str, arm: dict[str, Any], base: dict[str, Any]) -> str:
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}"

    def tok(x):
        return "—" if x is None else f"{x:.0f}"

    delta = arm.get("delta_vs_base")
    return (f"{name}: held-out {pct(arm.get('accuracy'))}% [{pct(arm.get('accuracy_lo'))}, "
            f"{pct(arm.get('accuracy_hi'))}] ({'—' if delta is None else f'{delta:+.1f}'} points vs base "
            f"{pct(base.get('accuracy'))}%), length correct {tok(arm.get('length_correct_mean'))} / wrong "
            f"{tok(arm.get('length_wrong_mean'))} tokens, {arm.get('steps')} steps in "
            f"{arm.get('wall_time_s', 0) or 0:.0f}s")
