"""The arms of a comparison: each a method row plus `--set` style changes over the shared run settings.

`compare.arms` in a compare config is a list whose entries are a method name (`"grpo"`) or a table
`{name = "...", method = "...", set = ["section.key=value", ...]}`. `compare` runs them; the report reads them back
from `compare.toml` through the same parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlino.config import Config, apply_overrides, config_from_dict, config_to_dict
from rlino.errors import RlinoError, did_you_mean
from rlino.objectives import METHODS


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
