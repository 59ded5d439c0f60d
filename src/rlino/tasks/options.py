"""Checking a task's keyword options against its frozen options dataclass."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from rlino.errors import RlinoError

T = TypeVar("T")


class _Mismatch(Exception):
    """Raised internally when a value does not fit a type annotation."""


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
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid options: {', '.join(fields)})"
            raise RlinoError(f"task {task!r} has no option {key!r}{hint}")
        try:
            checked[key] = _convert(value, hints[key])
        except _Mismatch:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise RlinoError(
                f"task {task!r} option {key!r} must be {type_name(hints[key])}, "
                f"got {shown} ({type(value).__name__})"
            ) from None
    return cls(**checked)


def type_name(tp: Any) -> str:
    """Return a short readable name for a type annotation, e.g. ``list[int]`` or ``str | None``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: object, tp: Any) -> object:
    """Return ``value`` converted to ``tp`` (int -> float, tuple -> list) or raise _Mismatch."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    # bool is a subclass of int, but True is almost surely a mistake for a count or a size.
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        (item_type,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_type) for v in value]
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Mismatch
