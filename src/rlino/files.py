"""Reading and writing the plain files rlino keeps: TOML, JSON (never NaN: null instead) and JSON lines."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from rlino.errors import RlinoError


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """TOML text as nested dicts; bad TOML is an error naming `where`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RlinoError(f"{where}: not valid TOML: {e}") from None


def read_toml(path: str | Path, missing: str = "file not found") -> dict[str, Any]:
    """A TOML file as nested dicts; a missing file or bad TOML is an error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise RlinoError(f"{missing}: {p}")
    return parse_toml(p.read_text(), str(p))


def json_safe(value: Any) -> Any:
    """The same structure with NaN and infinities as None, so that strict JSON readers accept it."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any, indent: int = 1) -> None:
    """Write `data` as JSON (NaN and infinities as null), ending with a newline."""
    Path(path).write_text(json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise RlinoError(f"{path}: not valid JSON: {e}") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; a partial last line (a process killed mid-write) is skipped."""
    lines = Path(path).read_text().splitlines()
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


def cache_root() -> Path:
    """rlino's cache of built models: `$RLINO_CACHE`, else `$XDG_CACHE_HOME/rlino`, else `~/.cache/rlino`."""
    if os.environ.get("RLINO_CACHE"):
        return Path(os.environ["RLINO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlino"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
