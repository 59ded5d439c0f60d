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

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from rlino.arms import Arm, parse_arms
from rlino.config import Config, apply_overrides, config_from_dict, eval_max_new_tokens, sampling_autocast
from rlino.errors import RlinoError
from rlino.files import parse_toml, read_json, read_toml, write_json
from rlino.run_folder import CompareFolder

DEFAULT_CONFIG = "compare_default.toml"
# The --quick profile: the same comparison, shorter (a first look in a few minutes).
QUICK = ["train.steps=20", "eval.every=10"]


def load_compare_config(path: str | Path | None, overrides: list[str], quick: bool = False
                        ) -> tuple[dict[str, Any], Config, list[Arm]]:
    """Read a compare config (the packaged default when `path` is None): raw dict, shared Config, arms."""
    if path is None:
        where = f"(default) {DEFAULT_CONFIG}"
        data = parse_toml(resources.files("rlino").joinpath(DEFAULT_CONFIG).read_text(), where)
    else:
        data, where = read_toml(path, missing="config file not found"), str(path)
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
    from rlino.trainer import validate

    for arm in arms:  # every arm must be valid before anything runs
        validate(arm.config(shared))
    return {"compare": compare, **data}, shared, arms


def evaluate_base(shared: Config, out: Path) -> dict[str, Any]:
    """The base model on the held-out items with the arms' eval settings (plus greedy), saved to base/eval.json."""
    from rlino.evaluate import evaluate
    from rlino.models import autocast, load_model
    from rlino.tasks import load_task

    c = shared
    task = load_task(c.task.name, **c.task.options)
    items = task.items("test")[: c.eval.num_items]
    model, tokenizer = load_model(c.model.name_or_path, dtype=c.model.dtype, device=c.model.device,
                                  seed=c.train.seed)
    kw = dict(seed=c.train.seed, top_p=c.eval.top_p, batch_size=c.sampling.batch_size,
              max_new_tokens=eval_max_new_tokens(c), engine=c.sampling.engine)
    with autocast(sampling_autocast(c), next(model.parameters()).device):  # the precision the arms evaluate in
        result = evaluate(model, tokenizer, task, items, temperature=c.eval.temperature,
                          log_samples=c.eval.log_samples, **kw)
        if c.eval.temperature > 0:
            result["eval/greedy_accuracy"] = evaluate(model, tokenizer, task, items, temperature=0.0, **kw)[
                "eval/accuracy"]
    path = CompareFolder(out).base_eval
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def compare(config_path: str | Path | None, overrides: list[str], out: str | Path, *, quick: bool = False,
            resume: bool = False, log=print) -> dict[str, Any]:
    """Run every arm and the base evaluation, then write the report; returns the results dict."""
    from rlino.report import build_report

    raw, shared, arms = load_compare_config(config_path, overrides, quick)
    folder = CompareFolder(out)
    if folder.config.exists() and not resume:
        raise RlinoError(f"{folder.path} already holds a comparison: pass --resume to finish it, or choose another "
                         "--out")
    if resume and folder.config.exists() and read_toml(folder.config) != raw:
        raise RlinoError(f"--resume {folder.path}: the config differs from the one it was started with")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.config.write_text(tomli_w.dumps(raw))
    base = read_json(folder.base_eval) if folder.base_eval.is_file() else evaluate_base(shared, folder.path)
    log(f"base: held-out accuracy {100 * base['eval/accuracy']:.1f}% "
        f"[{100 * base['eval/accuracy_lo']:.1f}, {100 * base['eval/accuracy_hi']:.1f}]"
        + (f", greedy {100 * base['eval/greedy_accuracy']:.1f}%" if "eval/greedy_accuracy" in base else ""))
    for arm in arms:
        run_arm(folder, arm, arm.config(shared), log)
    results = build_report(folder.path)
    for name, r in results["arms"].items():
        log(one_line_summary(name, r, results["base"]))
    return results


def run_arm(folder: CompareFolder, arm: Arm, cfg: Config, log=print) -> None:
    """Train one arm to its last step: skipped when finished, resumed from its last checkpoint, else from scratch."""
    from rlino.trainer import Run

    run_folder = folder.arm(arm.name)
    if run_folder.finished(cfg.train.steps):
        log(f"{arm.name}: already finished, skipped")
        return
    if run_folder.complete_checkpoints():
        run = Run(cfg, run_folder.path, resume=True, label=arm.name)
    else:
        shutil.rmtree(run_folder.path, ignore_errors=True)  # an arm that never checkpointed starts over
        run = Run(cfg, run_folder.path, label=arm.name)
    run.fit()


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
