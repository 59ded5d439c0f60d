"""One exception type for every mistake a user can make (the CLI prints its message, never a traceback), and the
closest-name hint every "unknown name" message uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RlinoError(Exception):
    """Bad input (config, data, model path, arguments) or a run that must stop, with a message naming what and where."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name closest to a misspelt one, or None when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest valid name, or "" when nothing is close."""
    match = closest(word, choices)
    return f" (did you mean '{match}'?)" if match else ""
