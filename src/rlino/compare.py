"""`rlino compare`: several arms under identical conditions, the base model evaluated once, then a report.

Every arm is an `rlino train` run that differs from the others only in its method settings: same base model, same
seed, same prompts in the same order, same sampling noise (counter-based, so arms see common random numbers), same
steps and the same held-out items evaluated at the same steps. With `compare.seeds` every arm runs once per seed
(`rlino.arms.replicates`), seed by seed, so the arms of one seed are paired and the spread over seeds is measured.

    DIR/compare.toml             the config as run (the [compare] table plus the shared run settings)
    DIR/base/eval.json           the base model on the held-out items (the step-0 point of every arm);
                                 base/base-B/eval.json per base seed B with compare.base_seeds
    DIR/runs/<arm>/seed-S/       one run folder per arm and seed (base-B-seed-S with compare.base_seeds)
    DIR/results.json, report.md, report.html, plots/   written by `rlino.report.build_report`
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from rlino.arms import Arm, Replicate, parse_arms, replicates
from rlino.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    eval_max_new_tokens,
    load_config,
    sampling_autocast,
)
from rlino.errors import RlinoError, did_you_mean
from rlino.files import parse_toml, read_json, read_toml, write_json
from rlino.run_folder import CompareFolder, timestamped

DEFAULT_CONFIG = "compare_default.toml"
BUILT_BASE = "embedded:countdown"  # the one base model a comparison can build with other seeds (compare.base_seeds)
# The --quick profile: the same comparison, shorter (a first look in a few minutes).
QUICK = ["train.steps=10", "eval.every=10", "eval.num_items=100", "compare.seeds=2"]


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
    unknown = set(compare) - {"arms", "seeds", "base_seeds", "workers"}
    if unknown:
        raise RlinoError(f"{where}: unknown key(s) in [compare]: {sorted(unknown)} (valid: arms, seeds, base_seeds, "
                         "workers)")
    workers = compare.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RlinoError(f"{where}: compare.workers must be an integer >= 1 (runs trained at once), got {workers!r}")
    arms = parse_arms(compare.get("arms"))
    if "name" in data.get("method", {}):
        raise RlinoError(f"{where}: method.name does not apply to a compare: each arm names its method in "
                         "compare.arms (a shared [method] table sets the other method keys for every arm)")
    shared = config_from_dict(data, where)
    from rlino.trainer import validate

    for arm in arms:  # every arm must be valid before anything runs
        validate(arm.config(shared))
    try:
        reps = replicates(compare, shared.train.seed)
    except RlinoError as e:
        raise RlinoError(f"{where}: {e}") from None
    if reps[0].base_seed is not None and shared.model.name_or_path != BUILT_BASE:
        raise RlinoError(f"{where}: compare.base_seeds needs a base model the comparison builds ({BUILT_BASE}); "
                         f"{shared.model.name_or_path} has one set of weights (use compare.seeds)")
    return {"compare": compare, **data}, shared, arms


def is_compare_config(path: str | Path | None) -> bool:
    """Whether `path` holds a compare config (a [compare] table); None is the packaged comparison."""
    if path is None:
        return True
    try:
        return Path(path).is_file() and "compare" in read_toml(path)
    except RlinoError:
        return False  # load_config reports it


def load_run_or_compare(path: str | Path | None, overrides: list[str]) -> tuple[Config, list[Arm]]:
    """A run config (and no arms) or a compare config (its shared settings and arms), told apart by a [compare]
    table; None is the packaged comparison."""
    if is_compare_config(path):
        _, shared, arms = load_compare_config(path, overrides)
        return shared, arms
    return load_config(path, overrides), []


def train_arm(path: str | Path | None, overrides: list[str], arm_name: str | None,
              out: str | Path | None = None) -> Path:
    """`rlino train COMPARE.toml --arm NAME`: one arm of a comparison alone, on the shared settings (the seed is
    train.seed's; a comparison's seed k is train.seed + k). Returns the final model's folder."""
    from rlino.trainer import Run

    if path is not None and not is_compare_config(path):
        raise RlinoError(f"--arm {arm_name}: {path} is a run config; --arm picks an arm of a compare config (one with "
                         "a [compare] table)")
    _, shared, arms = load_compare_config(path, overrides)
    names = [a.name for a in arms]
    if arm_name is None and len(arms) > 1:
        raise RlinoError(f"{path or 'the default comparison'} is a compare config of {len(arms)} arms: name one with "
                         f"--arm ({', '.join(names)}), or run them all with rlino compare")
    if arm_name is not None and arm_name not in names:
        raise RlinoError(f"--arm {arm_name!r} is not an arm of {path or 'the default comparison'} (its arms: "
                         f"{', '.join(names)}){did_you_mean(arm_name, names)}")
    arm = arms[names.index(arm_name)] if arm_name is not None else arms[0]
    return Run(arm.config(shared), timestamped(arm.name) if out is None else out).fit()


def replicate_config(cfg: Config, rep: Replicate) -> Config:
    """An arm's config for one replicate: its seed, and its base model when the compare builds several."""
    data = config_to_dict(cfg)
    data["train"]["seed"] = rep.seed
    if rep.base_seed is not None:
        data["model"]["name_or_path"] = f"{BUILT_BASE}@{rep.base_seed}"
    return config_from_dict(data, where=f"seed {rep.label}")


def evaluate_base(shared: Config, path: Path) -> dict[str, Any]:
    """The base model on the held-out items with the arms' eval settings (plus greedy), saved to `path`."""
    from rlino.evaluate import evaluate
    from rlino.models import autocast, load_model
    from rlino.prompts import config_prompt_format
    from rlino.tasks import load_task

    c = shared
    task = load_task(c.task.name, **c.task.options)
    items = task.items("test")[: c.eval.num_items]
    model, tokenizer = load_model(c.model.name_or_path, dtype=c.model.dtype, device=c.model.device,
                                  seed=c.train.seed)
    kw = dict(seed=c.train.seed, top_p=c.eval.top_p, batch_size=c.sampling.batch_size,
              max_new_tokens=eval_max_new_tokens(c), engine=c.sampling.engine,
              prompt_format=config_prompt_format(c, tokenizer))
    with autocast(sampling_autocast(c), next(model.parameters()).device):  # the precision the arms evaluate in
        result = evaluate(model, tokenizer, task, items, temperature=c.eval.temperature,
                          log_samples=c.eval.log_samples, **kw)
        if c.eval.temperature > 0:
            result["eval/greedy_accuracy"] = evaluate(model, tokenizer, task, items, temperature=0.0, **kw)[
                "eval/accuracy"]
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
    reps = replicates(raw["compare"], shared.train.seed)
    if resume and folder.config.exists():
        grown = _resumable(read_toml(folder.config), raw, reps, shared.train.seed, folder)
        if grown:
            log(grown)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.config.write_text(tomli_w.dumps(raw))
    for base_seed in dict.fromkeys(rep.base_seed for rep in reps):
        path = folder.base_eval_for(base_seed)
        cfg = replicate_config(shared, Replicate(shared.train.seed, base_seed))
        base = read_json(path) if path.is_file() else evaluate_base(cfg, path)
        log(f"base{'' if base_seed is None else f' (base seed {base_seed})'}: held-out accuracy "
            f"{100 * base['eval/accuracy']:.1f}% [{100 * base['eval/accuracy_lo']:.1f}, "
            f"{100 * base['eval/accuracy_hi']:.1f}]"
            + (f", greedy {100 * base['eval/greedy_accuracy']:.1f}%" if "eval/greedy_accuracy" in base else ""))
    # seed by seed: an interrupted compare has whole seeds to report
    units = [(arm, rep, replicate_config(arm.config(shared), rep)) for rep in reps for arm in arms]
    run_units(folder, units, raw["compare"].get("workers", 1), log)
    results = build_report(folder.path)
    for name, r in results["arms"].items():
        log(one_line_summary(name, r, results["base"]))
    for i, claim in enumerate(results["claims"], 1):
        log(f"claim {i}: {claim['verdict']}: {claim['claim']}")
    return results


def _results_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that do not change a run's results (compare.workers, compare.seeds), for
    --resume's check."""
    return {**raw, "compare": {k: v for k, v in raw.get("compare", {}).items() if k not in ("workers", "seeds")}}


def _resumable(started: dict[str, Any], raw: dict[str, Any], after: list[Replicate], first_seed: int,
               folder: CompareFolder) -> str | None:
    """--resume's check: the config (`raw`, planning the replicates `after`) must be the one the comparison started
    with, except that it may add seeds (every run is one arm on one seed, so the seeds already run are the same runs
    under the larger plan). Returns the line to log when seeds were added; RlinoError when anything else differs or
    a seed would be dropped."""
    if _results_config(started) != _results_config(raw):
        raise RlinoError(f"--resume {folder.path}: the config differs from the one it was started with")
    before = replicates(started.get("compare", {}), first_seed)
    dropped = [rep.label for rep in before if rep not in after]
    if dropped:
        raise RlinoError(f"--resume {folder.path}: the comparison was started with seed(s) {', '.join(dropped)}, "
                         "which this config leaves out; --resume can add seeds, not drop them")
    added = [rep.label for rep in after if rep not in before]
    return f"adding {', '.join(added)} to the {len(before)} seed(s) started with" if added else None


def run_arm(folder: CompareFolder, arm: Arm, rep: Replicate, cfg: Config, quiet: bool = False) -> None:
    """Train one arm on one seed to its last step: resumed from its last checkpoint, else from scratch."""
    from rlino.trainer import Run

    run_folder = folder.run(arm.name, rep.label)
    label = f"{arm.name} {rep.label}"
    if run_folder.complete_checkpoints():
        run = Run(cfg, run_folder.path, resume=True, label=label, quiet=quiet)
    else:
        shutil.rmtree(run_folder.path, ignore_errors=True)  # a run that never checkpointed starts over
        run = Run(cfg, run_folder.path, label=label, quiet=quiet)
    run.fit()


def _worker(path: str, arm: Arm, rep: Replicate, cfg: dict[str, Any], threads: int) -> float:
    """One (arm, seed) run in a worker process with `threads` intra-op threads; returns its wall seconds."""
    import time

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()  # the parent prints one line per finished run instead
    t0 = time.perf_counter()
    run_arm(CompareFolder(path), arm, rep, config_from_dict(cfg, f"{arm.name} {rep.label}"), quiet=True)
    return time.perf_counter() - t0


POLL_S = 2.0  # seconds between looks at the run folders for the progress line


def run_units(folder: CompareFolder, units: list[tuple[Arm, Replicate, Config]], workers: int, log=print) -> None:
    """Train every (arm, seed) run not finished yet: in this process, or `workers` at a time in worker processes
    that share the CPU cores (each run's numbers do not depend on which; tests/test_compare.py checks it)."""
    todo = []
    for arm, rep, cfg in units:
        if folder.run(arm.name, rep.label).finished(cfg.train.steps):
            log(f"{arm.name} {rep.label}: already finished, skipped")
        else:
            todo.append((arm, rep, cfg))
    if workers == 1 or len(todo) < 2:
        for arm, rep, cfg in todo:
            run_arm(folder, arm, rep, cfg)
        return
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from rlino.progress import CompareProgress

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    log(f"training {len(todo)} runs, {workers} at a time ({threads} thread(s) each)")
    progress = CompareProgress([(folder.run(a.name, r.label), c.train.steps) for a, r, c in todo], log=log)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_worker, str(folder.path), arm, rep, config_to_dict(cfg), threads): (arm, rep)
                       for arm, rep, cfg in todo}
            pending, done = set(futures), 0
            while pending:
                finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                progress.poll()
                for future in finished:
                    arm, rep = futures[future]
                    seconds, done = future.result(), done + 1
                    progress.write(f"{arm.name} {rep.label}: finished in {seconds:.0f} s ({done} of {len(todo)})")
    finally:
        progress.close()


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
            f"{arm.get('wall_time_s', 0) or 0:.0f}s" + (f" per seed, {len(arm['seeds'])} seeds"
                                                       if len(arm.get("seeds") or []) > 1 else ""))
