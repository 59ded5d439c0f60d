"""Typed values from TOML or the command line: the one coercer behind config keys, task options and recipe fields.

`coerce(value, annotation)` returns the value converted where that is lossless (an int for a float, a tuple for a
list) and raises `Mismatch` otherwise; each caller words its own error message (it knows whether the value was a
config key, a task option or a recipe field). `bool` is never accepted for a number: `true` for a count is a mistake.
"""

from __future__ import annotations

import types
import typing
from typing import Any


class Mismatch(Exception):
    """The value does not fit the annotation."""


def type_name(tp: Any) -> str:
    """A short readable name for an annotation, e.g. `list[int]` or `str | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """`value` converted to the annotation `tp` (int -> float, tuple -> list), else raise Mismatch."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg)
            except Mismatch:
                continue
        raise Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise Mismatch
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
        raise Mismatch
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise Mismatch
        (item_type,) = typing.get_args(tp) or (Any,)
        return [coerce(v, item_type) for v in value]
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise Mismatch
