"""A custom task for tests (loaded by dotted path `toy_task:make`): a random model gets reward variance on it.

With `rule="lowercase"` (the default) a response is correct when its first character is a lowercase ASCII letter
(~10% of a random byte-level model's responses); with `rule="ascii"`, when its first character is ASCII (~50%, a coin
flip), so groups have mixed rewards and every method gets a real gradient; with `rule="even"`, when its length in
characters is even (a coin flip for a pretrained model too, whose first character is nearly always ASCII).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ToyItem:
    prompt: str
    uid: str


RULES = {
    "lowercase": lambda c: c[:1].isascii() and c[:1].islower(),
    "ascii": lambda c: c[:1].isascii() and c[:1] != "",
    "even": lambda c: len(c) % 2 == 0,  # a coin flip for any model, a pretrained one included
}


class ToyTask:
    name = "toy"

    def __init__(self, size: int = 32, rule: str = "lowercase"):
        self._items = [ToyItem(f"{i} says:", f"toy-{i}") for i in range(size)]
        self._rule = RULES[rule]

    def items(self, split: str):
        return self._items

    def score(self, completion: str, item) -> float:
        return 1.0 if self._rule(completion) else 0.0


def make(size: int = 32, rule: str = "lowercase") -> ToyTask:
    return ToyTask(size, rule)
