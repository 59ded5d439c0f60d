"""Reading a compare folder into `Compare` and `ArmRun`, through the run-folder module (`rlino.run_folder`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlino.arms import Arm, Replicate, parse_arms, replicates
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
    replicate: str = ""
    """The run's seed folder (`seed-3`, `base-1-seed-3`); "" for a folder written before seeds existed."""


@dataclass
class ArmGroup:
    """One arm: its runs, one per seed (replicate), in (base seed, seed) order."""

    name: str
    method: str | None = None
    overrides: tuple[str, ...] = ()
    runs: list[ArmRun] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return bool(self.runs)

    @property
    def config(self) -> dict[str, Any]:
        """The first run's config (the seeds' configs differ only in train.seed and the base model)."""
        return self.runs[0].config if self.runs else {}

    def pooled(self) -> ArmRun:
        """The runs' weights.jsonl rows together (for the per-token weight study), as one ArmRun."""
        return ArmRun(self.name, self.runs[0].folder if self.runs else Path(), method=self.method, config=self.config,
                      weights=[row for run in self.runs for row in run.weights])


@dataclass
class Compare:
    """Everything a report is made from; `bases` maps a base seed (None: the one base) to its base/eval.json."""

    folder: Path
    compare_text: str | None
    base: dict[str, Any]
    arms: list[ArmGroup]
    bases: dict[int | None, dict[str, Any]] = field(default_factory=dict)
    equivalence: dict[str, Any] | None = None
    """`rlino equivalence --json DIR/equivalence.json`'s results, when the folder has them (for the scorecard)."""


def _one_row_per_step(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Rows sorted by step; if a step was logged twice (a resume), the later line counts."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise RlinoError(f"{path}: a row has no integer 'step': {json.dumps(row)[:120]}")
        latest[step] = row
    return [latest[s] for s in sorted(latest)]


def _compare_plan(folder: CompareFolder, compare_text: str | None) -> tuple[list[Arm], list[Replicate]]:
    """The arms (in the compare's order) and replicates compare.toml plans; without it the sorted runs/ subfolders
    and no known replicates."""
    if compare_text is None:
        return [Arm(name, None) for name in folder.arm_names_on_disk()], []  # type: ignore[arg-type]
    where = folder.config
    data = parse_toml(compare_text, str(where))
    section = data.get("compare")
    section = section if isinstance(section, dict) else {}
    first = data.get("train", {}).get("seed", 0) if isinstance(data.get("train"), dict) else 0
    try:
        return parse_arms(section.get("arms")), replicates(section, first if isinstance(first, int) else 0)
    except RlinoError as e:
        raise RlinoError(f"{where}: {e}") from None


def _last_eval_samples(run: RunFolder) -> list[dict[str, Any]]:
    rows = [row for row in run.read_log(EVAL_SAMPLES) if isinstance(row.get("step"), int)]
    last = max((row["step"] for row in rows), default=None)
    return [row for row in rows if row["step"] == last]


def _load_group(folder: CompareFolder, arm: Arm) -> ArmGroup:
    """An arm's runs: runs/<arm>/<replicate>/ for each replicate folder present, or runs/<arm>/ itself when it is a
    run folder (written before seeds existed); a planned replicate not on disk yet is simply absent."""
    group = ArmGroup(arm.name, arm.method, arm.overrides)
    top = folder.arm(arm.name)
    if top.holds_run():
        group.runs = [_load_run(top, arm.name, arm.method, "")]
    else:
        on_disk = folder.replicates_on_disk(arm.name)
        labels = [label for label in on_disk if folder.run(arm.name, label).holds_run()]  # no step logged: not started
        group.runs = [_load_run(folder.run(arm.name, label), arm.name, arm.method, label) for label in labels]
        if top.path.is_dir() and not on_disk:
            raise RlinoError(f"arm '{arm.name}': {top.file(METRICS)} not found and no seed folders (seed-N) in "
                             f"{top.path}; is it an `rlino train` run folder?")
    if group.runs and group.method is None:
        group.method = group.runs[0].method
    return group


def _load_run(run: RunFolder, name: str, method: str | None, replicate: str) -> ArmRun:
    metrics = run.file(METRICS)
    if not metrics.is_file():
        raise RlinoError(f"arm '{name}': {metrics} not found; is {run.path} an `rlino train` run folder?")
    config = run.read_config()
    rows = _one_row_per_step(run.read_log(METRICS), metrics)
    arm = ArmRun(name, run.path, method=config.get("method", {}).get("name", method), config=config, rows=rows,
                 replicate=replicate)
    arm.evals = [row for row in rows if num(row.get("eval/accuracy")) is not None]
    arm.samples = _last_eval_samples(run)
    arm.weights = _one_row_per_step(run.read_log(WEIGHTS), run.file(WEIGHTS))
    return arm


def _read_base(folder: CompareFolder, base_seed: int | None = None) -> dict[str, Any]:
    path = folder.base_eval_for(base_seed)
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
    compare_text = folder.config.read_text() if folder.config.is_file() else None
    arms, reps = _compare_plan(folder, compare_text)
    base_seeds = list(dict.fromkeys(rep.base_seed for rep in reps)) or [None]
    bases = {b: _read_base(folder, b) for b in base_seeds}
    groups = [_load_group(folder, arm) for arm in arms]
    if not any(group.started for group in groups):
        raise RlinoError(f"no runs in {folder.runs}: expected one run folder per arm and seed, "
                         "runs/<arm>/seed-N/metrics.jsonl")
    equivalence = folder.path / "equivalence.json"
    return Compare(folder.path, compare_text, bases[base_seeds[0]], groups, bases,
                   read_json(equivalence) if equivalence.is_file() else None)
