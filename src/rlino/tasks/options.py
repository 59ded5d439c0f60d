"""Checking a task's keyword options against its frozen options dataclass."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TypeVar

from rlino.errors import RlinoError, closest
from rlino.typed import Mismatch, coerce, type_name

T = TypeVar("T")


def build_options(cls: type[T], options: Mapping[str, object], task: str) -> T:
    """Return ``cls(**options)`` after checking every option name and type.

    Unknown names raise RlinoError with the closest valid name; values of the wrong type raise
    RlinoError naming the option, the expected type and the value. Ints are accepted for floats
    and tuples for lists.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    checked: dict[str, object] = {}
    for key, value in options.items():
        if key not in fields:
            close = closest(key, fields)
            hint = f" (did you mean {close!r}?)" if close else f" (valid options: {', '.join(fields)})"
            raise RlinoError(f"task {task!r} has no option {key!r}{hint}")
        try:
            checked[key] = coerce(value, hints[key])
        except Mismatch:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise RlinoError(
                f"task {task!r} option {key!r} must be {type_name(hints[key])}, "
                f"got {shown} ({type(value).__name__})"
            ) from None
    return cls(**checked)
