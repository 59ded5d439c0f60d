"""Loading task rows from local files or the Hugging Face hub through ``datasets``, with clear errors."""

from __future__ import annotations

import os
import random
from typing import Any

from rlino.errors import RlinoError

# File suffix -> the ``datasets`` builder that reads it.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def looks_like_file(source: str) -> bool:
    """Whether ``source`` names a local file or folder rather than a hub id like ``owner/name``."""
    if os.path.exists(source):
        return True
    return source.lower().endswith(tuple(FILE_BUILDERS)) or source.startswith(("/", ".", "~"))


def load_file_rows(
    path: str, fields: tuple[str, ...], task: str, optional: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Return the rows of a local JSON/JSONL/Parquet file, keeping only ``fields`` (and ``optional`` ones).

    Raises RlinoError naming the path when the file is missing, unreadable or empty, and naming
    the row index (0-based) and field when a row lacks one of ``fields``.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise RlinoError(f"task {task!r}: data file not found: {path}")
    builder = FILE_BUILDERS.get(os.path.splitext(path)[1].lower())
    if builder is None:
        raise RlinoError(
            f"task {task!r}: cannot read {path}: expected one of {', '.join(sorted(FILE_BUILDERS))}"
        )
    if os.path.getsize(path) == 0:
        raise RlinoError(f"task {task!r}: data file is empty: {path}")
    datasets = _import_datasets()
    try:
        table = datasets.load_dataset(builder, data_files=path, split="train")
    except Exception as exc:  # datasets raises many unrelated types for unreadable files
        raise RlinoError(f"task {task!r}: cannot read {path}: {_short(exc)}") from exc
    return rows_with_fields(table, fields, f"{path}", task, optional)


def load_hub(source: str, config: str | None, task: str, hint: str) -> Any:
    """Return ``datasets.load_dataset(source, config)`` (a DatasetDict), or RlinoError with ``hint``."""
    datasets = _import_datasets()
    try:
        return datasets.load_dataset(os.path.expanduser(source), config)
    except Exception as exc:  # offline, OSError, ConnectionError, DatasetNotFoundError, ...
        raise RlinoError(
            f"task {task!r}: could not load dataset {source!r} from the Hugging Face hub "
            f"({_short(exc)}); {hint}"
        ) from exc


def rows_with_fields(
    table: Any, fields: tuple[str, ...], where: str, task: str, optional: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Turn a ``datasets.Dataset`` into a list of dicts of ``fields``, checking each row has them.

    Each field of ``optional`` is kept as well, None in rows (or tables) that lack it."""
    if len(table) == 0:
        raise RlinoError(f"task {task!r}: no rows in {where}")
    columns: dict[str, list[Any]] = {}
    for field in fields:
        if field not in table.column_names:
            raise RlinoError(f"task {task!r}: {where} row 0 has no field {field!r}")
        columns[field] = list(table[field])
    extra = {field: list(table[field]) for field in optional if field in table.column_names}
    rows = []
    for index in range(len(table)):
        row = {field: columns[field][index] for field in fields}
        for field, value in row.items():
            # datasets fills a field that some rows lack with None.
            if value is None:
                raise RlinoError(f"task {task!r}: {where} row {index} has no field {field!r}")
        rows.append(row | {field: extra[field][index] if field in extra else None for field in optional})
    return rows


def _import_datasets() -> Any:
    """Import ``datasets`` late: it takes about a second, which a generated task never needs."""
    import datasets

    return datasets


def _short(exc: BaseException) -> str:
    """One line describing ``exc``, short enough for an error message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_split(split: str, task: str) -> None:
    """The splits every task serves: "train" and "test"."""
    if split not in ("train", "test"):
        raise RlinoError(f"task {task!r}: unknown split {split!r}; use 'train' or 'test'")


def kept_indices(count: int, size: int, task: str, seed: int, split: str) -> list[int]:
    """The indices of the rows a split keeps: all of them when ``size`` is 0 or not smaller than ``count``, else
    ``size`` of them chosen by ``seed`` (the same on every machine: a string seed is hashed with SHA-512)."""
    indices = list(range(count))
    if 0 < size < count:
        indices = sorted(random.Random(f"{task}-{seed}-{split}").sample(indices, size))
    return indices
