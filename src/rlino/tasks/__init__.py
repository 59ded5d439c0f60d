"""Tasks: prompts to train on and a verifier that scores a completion in [0, 1].

    task = load_task("countdown", num_numbers=4)
    items = task.items("train")          # each item has .prompt (and .uid)
    reward = task.score(completion, items[0])
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from rlino.errors import RlinoError, closest
from rlino.tasks.countdown import CountdownItem, CountdownOptions, CountdownTask, countdown
from rlino.tasks.gsm8k import Gsm8kItem, Gsm8kOptions, Gsm8kTask, gsm8k
from rlino.tasks.gym import GymItem, GymOptions, GymTask, gym_task
from rlino.tasks.math_task import MathItem, MathOptions, MathTask, math_

__all__ = [
    "TASKS",
    "CountdownItem",
    "CountdownOptions",
    "CountdownTask",
    "Gsm8kItem",
    "Gsm8kOptions",
    "Gsm8kTask",
    "GymItem",
    "GymOptions",
    "GymTask",
    "Item",
    "MathItem",
    "MathOptions",
    "MathTask",
    "Task",
    "load_task",
]


@runtime_checkable
class Item(Protocol):
    """What every task item offers; built-in items also carry a stable ``uid`` for logging."""

    @property
    def prompt(self) -> str: ...


@runtime_checkable
class Task(Protocol):
    """A named set of items per split and a verifier returning a reward in [0, 1] (1.0 = correct)."""

    name: str

    def items(self, split: str) -> Sequence[Any]: ...

    def score(self, completion: str, item: Any) -> float: ...


# Built-in tasks by name; each factory takes the task's options as keyword arguments.
TASKS: dict[str, Callable[..., Task]] = {
    "countdown": countdown, "gsm8k": gsm8k, "math": math_, "reasoning_gym": gym_task,
}


def load_task(name: str, **options: object) -> Task:
    """Build a built-in task by name, or a custom one from a ``"package.module:factory"`` path.

    A custom factory is called with ``options`` and must return an object with a ``name`` string
    and ``items`` and ``score`` methods. Every mistake raises RlinoError.
    """
    if ":" in name:
        return _load_custom(name, options)
    if name not in TASKS:
        close = closest(name, TASKS)
        hint = f"did you mean {close!r}? " if close else ""
        raise RlinoError(
            f"unknown task {name!r}; {hint}valid tasks: {', '.join(sorted(TASKS))}, "
            "or a custom 'package.module:factory'"
        )
    return TASKS[name](**options)


def _load_custom(path: str, options: dict[str, object]) -> Task:
    """Import ``module:factory``, call it with ``options`` and check the result is a Task."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise RlinoError(f"custom task {path!r} must look like 'package.module:factory'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a task module next to the config works from the command line too
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, but also any error raised while the module runs
        raise RlinoError(
            f"custom task {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise RlinoError(f"custom task {path!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise RlinoError(f"custom task {path!r}: {attribute!r} is not callable")
    try:
        task = target(**options)
    except RlinoError:
        raise
    except Exception as exc:  # a bad option (TypeError) or a bug in the factory: name the factory
        raise RlinoError(f"custom task {path!r}: the factory failed ({type(exc).__name__}: {exc})") from exc
    missing = [m for m in ("items", "score") if not callable(getattr(task, m, None))]
    if missing:
        raise RlinoError(
            f"custom task {path!r}: the factory returned {type(task).__name__}, which has no "
            f"{' or '.join(repr(m) for m in missing)} method; "
            "a task needs items(split) and score(completion, item)"
        )
    if not isinstance(getattr(task, "name", None), str):
        raise RlinoError(
            f"custom task {path!r}: the factory returned {type(task).__name__}, which has no 'name' string"
        )
    return task  # type: ignore[no-any-return]
