"""A custom task for tests (loaded by dotted path `toy_task:make`): the random tiny model gets reward variance on it.

A response is correct when its first character is a lowercase ASCII letter, roughly a coin flip for an untrained
byte-level model, so groups have mixed rewards and every method gets a real gradient.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ToyItem:
    prompt: str
    uid: str


class ToyTask:
    name = "toy"

    def __init__(self, size: int = 32):
        self._items = [ToyItem(f"{i} says:", f"toy-{i}") for i in range(size)]

    def items(self, split: str):
        return self._items

    def score(self, completion: str, item) -> float:
        return 1.0 if completion[:1].isascii() and completion[:1].islower() else 0.0


def make(size: int = 32) -> ToyTask:
    return ToyTask(size)
