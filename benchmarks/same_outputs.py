"""Do two versions of rlino write the same outputs? Compares what a refactor must leave unchanged.

    python benchmarks/same_outputs.py results  OLD/results.json   NEW/results.json
    python benchmarks/same_outputs.py metrics  OLD/metrics.jsonl  NEW/metrics.jsonl [--added KEY ...]
    python benchmarks/same_outputs.py json     OLD/equiv.json     NEW/equiv.json

`results`: every field equal except the arms' wall times (`wall_time_s`). `metrics`: the same number of lines,
each equal except the timing keys of `rlino.run_folder.TIMING_KEYS`; keys named with `--added` may appear only in
the new file (new metrics). `json`: equal as parsed JSON. Numbers must be equal exactly (same code path, same
machine, same seed). Exit status 0 when the outputs are the same; otherwise the first differences are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlino.run_folder import TIMING_KEYS

WALL_KEYS = {"wall_time_s"}


def differences(old: Any, new: Any, path: str = "", ignore: set[str] = frozenset(),
                added: set[str] = frozenset()) -> list[str]:
    """Paths where two parsed JSON values differ, keys in `ignore` skipped, keys in `added` allowed only in `new`."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            if key in ignore:
                continue
            if key not in old and key in added:
                continue
            if key not in old or key not in new:
                out.append(f"{path}/{key}: only in {'new' if key not in old else 'old'}")
                continue
            out += differences(old[key], new[key], f"{path}/{key}", ignore, added)
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items vs {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]", ignore, added)]
    return [] if old == new and type(old) is type(new) else [f"{path}: {old!r} vs {new!r}"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=["results", "metrics", "json"])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--added", nargs="*", default=[], help="keys the new version adds (metrics only)")
    args = p.parse_args(argv)
    if args.kind == "metrics":
        diffs = differences(read_jsonl(args.old), read_jsonl(args.new), ignore=set(TIMING_KEYS), added=set(args.added))
    else:
        old, new = json.loads(args.old.read_text()), json.loads(args.new.read_text())
        diffs = differences(old, new, ignore=WALL_KEYS if args.kind == "results" else set())
    for d in diffs[:30]:
        print(d)
    print(f"{args.kind}: {'the same' if not diffs else f'{len(diffs)} difference(s)'} ({args.old} vs {args.new})")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
