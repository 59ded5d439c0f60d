"""The arms of a comparison: each a method row plus `--set` style changes over the shared run settings.

`compare.arms` in a compare config is a list whose entries are a method name (`"grpo"`) or a table
`{name = "...", method = "...", set = ["section.key=value", ...]}`. `compare` runs them; the report reads them back
from `compare.toml` through the same parser.

`compare.seeds` (a count N: seeds train.seed, train.seed + 1, ...; or a list of distinct seeds) runs every arm once
per seed: a seed changes the prompt order, the sampling noise and the evaluation's noise, nothing else. By default
every seed starts from the same base model; `compare.base_seeds` (a count or a list) builds one embedded base model
per base seed and crosses them with the seeds, the stronger test (each (base seed, seed) pair is one replicate).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from rlino.config import Config, apply_overrides, config_from_dict, config_to_dict
from rlino.errors import RlinoError, did_you_mean
from rlino.objectives import METHODS, resolve_method


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
        cfg = self._with_own_sets(data)
        if not resolve_method(cfg.method).has_critic:
            # the shared [critic] section is for the arms with a critic (an arm's own `set` of it is still checked)
            data.pop("critic", None)
            cfg = self._with_own_sets(data)
        return cfg

    def _with_own_sets(self, data: dict[str, Any]) -> Config:
        data = copy.deepcopy(data)
        apply_overrides(data, list(self.overrides))
        return config_from_dict(data, where=f"arm '{self.name}'")


def _arm(i: int, entry: Any) -> Arm:
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
        raise RlinoError(f"compare.arms[{i}]: unknown method '{method}'{did_you_mean(str(method), METHODS)}; "
                         f"valid: {', '.join(METHODS)}")
    sets = entry.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise RlinoError(f"compare.arms[{i}].set must be a list of 'section.key=value' strings")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise RlinoError(f"compare.arms[{i}]: name must be a plain folder name, got {name!r}")
    return Arm(name, method, tuple(sets))


@dataclass(frozen=True)
class Replicate:
    """One run of every arm: the run's seed and, when the compare builds several base models, the base's seed."""

    seed: int
    base_seed: int | None = None

    @property
    def label(self) -> str:
        """The run folder's name under runs/<arm>/: `seed-3`, or `base-1-seed-3` with several bases."""
        return f"seed-{self.seed}" if self.base_seed is None else f"base-{self.base_seed}-seed-{self.seed}"


def parse_seeds(raw: Any, key: str, first: int) -> list[int]:
    """A count N (seeds first, first + 1, ..., first + N - 1) or a list of distinct non-negative integer seeds."""
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    if is_int(raw):
        if raw < 1:
            raise RlinoError(f"{key} must be at least 1 (the number of seeds per arm), got {raw}")
        return [first + i for i in range(raw)]
    if not isinstance(raw, list) or not raw or not all(is_int(x) and x >= 0 for x in raw):
        raise RlinoError(f"{key} must be a count (e.g. 3) or a non-empty list of non-negative integer seeds, got "
                         f"{raw!r}")
    dupes = sorted({x for x in raw if raw.count(x) > 1})
    if dupes:
        raise RlinoError(f"{key}: duplicate seed(s) {dupes}; each seed runs once per arm")
    return list(raw)


def replicates(compare: dict[str, Any], first_seed: int) -> list[Replicate]:
    """The replicates of a compare table, seed by seed (so an interrupted compare has whole seeds done first)."""
    seeds = parse_seeds(compare.get("seeds", 1), "compare.seeds", first_seed)
    if compare.get("base_seeds") is None:
        return [Replicate(s) for s in seeds]
    bases = parse_seeds(compare["base_seeds"], "compare.base_seeds", 0)
    return [Replicate(s, b) for b in bases for s in seeds]


def parse_arms(raw: Any) -> list[Arm]:
    """Arms from the config: a method name, or a table {name, method, set = ["method.key=value", ...]}."""
    if not isinstance(raw, list) or not raw:
        raise RlinoError("compare.arms must be a non-empty list of method names or {name, method, set} tables")
    arms = [_arm(i, entry) for i, entry in enumerate(raw)]
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RlinoError(f"compare.arms: duplicate arm name(s) {dupes}; give each arm a distinct name")
    return arms
