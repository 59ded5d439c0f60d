"""Reading a compare folder into `Compare` and `ArmRun`, through the run-folder module (`rlino.run_folder`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlino.arms import parse_arms
from rlino.errors import RlinoError
from rlino.files import parse_toml, read_json
from rlino.report.values import num
from rlino.run_folder import EVAL_SAMPLES, METRICS, WEIGHTS, CompareFolder, RunFolder


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
    """weights.jsonl: per step, each response's length, correctness, w_i and measured per-token weight (and, in
    folders written since they were added, the step's aggregation and max_new_tokens)."""
    started: bool = True


@dataclass
class Compare:
    """Everything a report is made from."""

    folder: Path
    compare_text: str | None
    base: dict[str, Any]
    arms: list[ArmRun]


def _one_row_per_step(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Rows sorted by step; if a step was logged twice (a resume), the later line counts."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise RlinoError(f"{path}: a row has no integer 'step': {json.dumps(row)[:120]}")
        latest[step] = row
    return [latest[s] for s in sorted(latest)]


def _arm_entries(folder: CompareFolder, compare_text: str | None) -> list[tuple[str, str | None]]:
    """(arm name, method named in compare.toml) in the compare's order; sorted runs/ subfolders without it."""
    if compare_text is None:
        return [(name, None) for name in folder.arm_names_on_disk()]
    where = folder.config
    section = parse_toml(compare_text, str(where)).get("compare")
    try:
        arms = parse_arms(section.get("arms") if isinstance(section, dict) else None)
    except RlinoError as e:
        raise RlinoError(f"{where}: {e}") from None
    return [(arm.name, arm.method) for arm in arms]


def _last_eval_samples(run: RunFolder) -> list[dict[str, Any]]:
    rows = [row for row in run.read_log(EVAL_SAMPLES) if isinstance(row.get("step"), int)]
    last = max((row["step"] for row in rows), default=None)
    return [row for row in rows if row["step"] == last]


def _load_arm(folder: CompareFolder, name: str, method: str | None) -> ArmRun:
    run = folder.arm(name)
    if not run.path.is_dir():
        # listed in compare.toml but not started yet (an interrupted compare): shown, not an error
        return ArmRun(name, run.path, method=method, started=False)
    metrics = run.file(METRICS)
    if not metrics.is_file():
        raise RlinoError(f"arm '{name}': {metrics} not found; is {run.path} an `rlino train` run folder?")
    config = run.read_config()
    rows = _one_row_per_step(run.read_log(METRICS), metrics)
    arm = ArmRun(name, run.path, method=config.get("method", {}).get("name", method), config=config, rows=rows)
    arm.evals = [row for row in rows if num(row.get("eval/accuracy")) is not None]
    arm.samples = _last_eval_samples(run)
    arm.weights = _one_row_per_step(run.read_log(WEIGHTS), run.file(WEIGHTS))
    return arm


def _read_base(folder: CompareFolder) -> dict[str, Any]:
    path = folder.base_eval
    if not path.is_file():
        raise RlinoError(f"{path} not found: the base model's held-out evaluation is missing")
    base = read_json(path)
    if not isinstance(base, dict) or num(base.get("eval/accuracy")) is None:
        raise RlinoError(f"{path}: expected a JSON object with a numeric 'eval/accuracy'")
    return base


def load_compare(compare_dir: str | Path) -> Compare:
    """Read a compare folder (see the package docstring); RlinoError names the path of whatever is missing."""
    folder = CompareFolder(compare_dir)
    if not folder.path.is_dir():
        raise RlinoError(f"compare folder not found: {folder.path}")
    base = _read_base(folder)
    compare_text = folder.config.read_text() if folder.config.is_file() else None
    arms = [_load_arm(folder, name, method) for name, method in _arm_entries(folder, compare_text)]
    if not any(arm.started for arm in arms):
        raise RlinoError(f"no runs in {folder.runs}: expected one run folder per arm, runs/<arm>/metrics.jsonl")
    return Compare(folder.path, compare_text, base, arms)
