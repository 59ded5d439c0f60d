"""Countdown: combine the given numbers with + - * / to reach a target (TinyZero-style)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from fractions import Fraction

from rlino.errors import RlinoError
from rlino.tasks.expression import ALL_OPERATORS, MAX_CHARS, ParseError, parse_expression
from rlino.tasks.options import build_options
from rlino.tasks.sources import check_split, load_file_rows, load_hub, looks_like_file, rows_with_fields

NAME = "countdown"
DEFAULT_PROMPT = (
    "Using the numbers [{numbers}], create an equation that equals {target}. "
    "You can use basic arithmetic operations ({operators}) and each number can only be used once. "
    "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, "
    "for example <answer> (1 + 2) / 3 </answer>."
)
# Consecutive rejected draws before the generator gives up: the options allow no (new) problem.
MAX_FAILED_DRAWS = 20_000
OPEN, CLOSE = "<answer>", "</answer>"


@dataclass(frozen=True)
class CountdownOptions:
    """Options of the countdown task; every field can be passed to ``load_task("countdown", ...)``."""

    num_numbers: int = 3  # how many numbers each generated problem gives
    min_value: int = 1  # smallest number drawn
    max_value: int = 99  # largest number drawn (TinyZero's range)
    min_target: int = 1  # smallest target kept
    max_target: int = 100  # largest target kept
    operators: str = ALL_OPERATORS  # operators the generator and the verifier allow, a subset of "+-*/"
    train_size: int = 20000  # train items (at most this many for a file or hub source)
    test_size: int = 1000  # test items (held out of the file or hub source)
    seed: int = 0  # seeds the generator, or the train/test split of a file or hub source
    prompt_template: str = DEFAULT_PROMPT  # placeholders {numbers}, {target} and optionally {operators}
    format_reward: float = 0.0  # score of a well-formed but wrong answer; 0 turns the bonus off
    source: str = "generate"  # "generate", a hub id or a local json/jsonl/parquet with `nums` and `target`

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> RlinoError:
            return RlinoError(f"task {NAME!r} option {option!r} {why}, got {getattr(self, option)!r}")

        if not 2 <= self.num_numbers <= 10:
            raise bad("num_numbers", "must be between 2 and 10")
        if self.min_value < 0:
            raise bad("min_value", "must be >= 0 (answers have no unary minus)")
        if self.max_value < self.min_value or self.max_value >= 10**10:
            raise bad("max_value", f"must be between min_value ({self.min_value}) and 9999999999")
        if self.max_target < self.min_target:
            raise bad("max_target", f"must be >= min_target ({self.min_target})")
        ops = self.operators
        if not ops or any(op not in ALL_OPERATORS for op in ops) or len(set(ops)) != len(ops):
            raise bad("operators", "must be a non-empty subset of '+-*/' without repeats")
        if self.train_size < 1:
            raise bad("train_size", "must be >= 1")
        if self.test_size < 0:
            raise bad("test_size", "must be >= 0")
        if not 0.0 <= self.format_reward < 1.0:
            raise bad("format_reward", "must be in [0, 1)")
        for placeholder in ("{numbers}", "{target}"):
            if placeholder not in self.prompt_template:
                raise bad("prompt_template", f"must contain {placeholder}")
        if not self.source.strip():
            raise bad("source", "must be 'generate', a hub id or a file path")


@dataclass(frozen=True)
class CountdownItem:
    """One problem: reach ``target`` using each of ``numbers`` exactly once."""

    numbers: tuple[int, ...]
    target: int
    prompt: str
    uid: str
    solution: str | None = None  # an expression reaching the target, when the generator made it


class CountdownTask:
    """Countdown problems and their exact, eval-free verifier."""

    name = NAME

    def __init__(self, options: CountdownOptions) -> None:
        self.options = options
        self._splits: dict[str, list[CountdownItem]] | None = None

    def items(self, split: str) -> list[CountdownItem]:
        """Return the items of ``split`` ("train" or "test"), built once and then cached."""
        check_split(split, NAME)
        if self._splits is None:
            generated = self.options.source == "generate"
            self._splits = _generate(self.options) if generated else _load(self.options)
        if not self._splits[split]:
            why = f"source {self.options.source!r}, {split}_size={getattr(self.options, f'{split}_size')}"
            raise RlinoError(f"task {NAME!r}: the {split} split is empty ({why})")
        return list(self._splits[split])

    def score(self, completion: str, item: CountdownItem) -> float:
        """Return 1.0 if the last ``<answer>...</answer>`` reaches the target using every number once.

        A well-formed but wrong answer scores ``format_reward``; anything else scores 0.0.
        """
        # rfind keeps this linear in the completion length whatever the model wrote.
        end = completion.rfind(CLOSE)
        start = completion.rfind(OPEN, 0, end) if end >= 0 else -1
        if start < 0:
            return 0.0
        return self._score_answer(completion[start + len(OPEN) : end], item)

    def _score_answer(self, answer: str, item: CountdownItem) -> float:
        if len(answer) > MAX_CHARS:
            return 0.0
        expression, equals, claimed = answer.partition("=")
        claimed = claimed.strip()
        if equals and not _is_int_literal(claimed):
            return 0.0
        try:
            value, literals = parse_expression(expression, self.options.operators)
        except ParseError:
            return 0.0
        correct = (
            value == item.target
            and sorted(literals) == sorted(item.numbers)
            and (not equals or int(claimed) == item.target)
        )
        return 1.0 if correct else self.options.format_reward


def countdown(**options: object) -> CountdownTask:
    """Build the countdown task from keyword options (see CountdownOptions)."""
    return CountdownTask(build_options(CountdownOptions, options, NAME))


def render_prompt(template: str, numbers: tuple[int, ...], target: int, operators: str) -> str:
    """Fill the ``{numbers}``, ``{target}`` and ``{operators}`` placeholders of ``template``."""
    # str.replace, not str.format, so templates may contain other braces verbatim.
    return (
        template.replace("{numbers}", ", ".join(map(str, numbers)))
        .replace("{target}", str(target))
        .replace("{operators}", ", ".join(operators))
    )


def _is_int_literal(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return 0 < len(digits) <= 10 and all(c in "0123456789" for c in digits)


def _key(numbers: tuple[int, ...], target: int) -> tuple[tuple[int, ...], int]:
    """Identity of a problem regardless of the order its numbers are shown in."""
    return tuple(sorted(numbers)), target


def _make_item(options: CountdownOptions, split: str, index: int, numbers: tuple[int, ...], target: int,
               solution: str | None) -> CountdownItem:
    prompt = render_prompt(options.prompt_template, numbers, target, options.operators)
    return CountdownItem(numbers, target, prompt, f"{NAME}-{split}-{index}", solution)


def _random_problem(rng: random.Random, options: CountdownOptions) -> tuple[tuple[int, ...], int, str] | None:
    """Draw numbers and a random expression tree over all of them; None if its value is unusable."""
    numbers = tuple(rng.randint(options.min_value, options.max_value) for _ in range(options.num_numbers))
    # Values stay plain ints while exact and become Fractions only after an inexact division:
    # still exact arithmetic, several times faster than Fractions throughout.
    nodes: list[tuple[int | Fraction, str]] = [(n, str(n)) for n in numbers]
    # Joining two random nodes at a time gives every tree shape, not only left-leaning chains.
    while len(nodes) > 1:
        left_value, left_text = nodes.pop(rng.randrange(len(nodes)))
        right_value, right_text = nodes.pop(rng.randrange(len(nodes)))
        op = rng.choice(options.operators)
        if op == "+":
            value = left_value + right_value
        elif op == "-":
            value = left_value - right_value
        elif op == "*":
            value = left_value * right_value
        elif right_value == 0:
            return None
        elif isinstance(left_value, int) and isinstance(right_value, int) and left_value % right_value == 0:
            value = left_value // right_value
        else:
            value = Fraction(left_value) / right_value
        nodes.append((value, f"({left_text} {op} {right_text})"))
    value, text = nodes[0]
    if isinstance(value, Fraction):
        if value.denominator != 1:
            return None
        value = value.numerator
    if not options.min_target <= value <= options.max_target:
        return None
    return numbers, int(value), text[1:-1]  # drop the outermost parentheses


def _generate_split(options: CountdownOptions, split: str, size: int,
                    exclude: set[tuple[tuple[int, ...], int]], distinct: bool) -> list[CountdownItem]:
    """Draw ``size`` problems whose keys are not in ``exclude``; ``distinct`` adds each to it."""
    # A string seed is hashed deterministically (SHA-512), so train and test streams differ.
    rng = random.Random(f"{NAME}-{options.seed}-{split}")
    items: list[CountdownItem] = []
    failures = 0
    while len(items) < size:
        problem = _random_problem(rng, options)
        key = _key(problem[0], problem[1]) if problem is not None else None
        if problem is None or key is None or key in exclude:
            failures += 1
            if failures > MAX_FAILED_DRAWS:
                raise RlinoError(
                    f"task {NAME!r}: could only generate {len(items)} of {size} {split} items; "
                    "widen min_value/max_value or min_target/max_target, or lower the size"
                )
            continue
        failures = 0
        if distinct:
            exclude.add(key)
        items.append(_make_item(options, split, len(items), *problem))
    return items


def _generate(options: CountdownOptions) -> dict[str, list[CountdownItem]]:
    # The test split is drawn first, without repeats, and train skips every test problem, so
    # the splits are disjoint. Small spaces (3 numbers of 1..9 allow only ~2,150 problems) would
    # otherwise leave test nothing but a few rare problems repeated; train may repeat problems.
    test_keys: set[tuple[tuple[int, ...], int]] = set()
    test = _generate_split(options, "test", options.test_size, test_keys, distinct=True)
    train = _generate_split(options, "train", options.train_size, test_keys, distinct=False)
    return {"train": train, "test": test}


def _load(options: CountdownOptions) -> dict[str, list[CountdownItem]]:
    """Read TinyZero-style rows (``nums``, ``target``) and split them by seed into train and test."""
    fields = ("nums", "target")
    source = options.source
    if looks_like_file(source) and not os.path.isdir(os.path.expanduser(source)):
        rows = load_file_rows(source, fields, NAME)
    else:
        hint = "set source='generate' or point source at a local json/jsonl/parquet file"
        tables = load_hub(source, None, NAME, hint)
        split = "train" if "train" in tables else next(iter(tables))
        rows = rows_with_fields(tables[split], fields, f"{source!r} split {split!r}", NAME)
    problems = [_check_row(row, index, source) for index, row in enumerate(rows)]
    if len(problems) <= options.test_size:
        raise RlinoError(
            f"task {NAME!r}: {source!r} has {len(problems)} rows, not more than test_size "
            f"({options.test_size}); nothing is left for training"
        )
    order = list(range(len(problems)))
    random.Random(options.seed).shuffle(order)
    test_rows = order[: options.test_size]
    train_rows = order[options.test_size : options.test_size + options.train_size]
    # uids use the row index in the source, so an item can be traced back to its row.
    train = [_make_item(options, "train", i, *problems[i], None) for i in train_rows]
    seen = {_key(item.numbers, item.target) for item in train}
    test_rows = [i for i in test_rows if _key(*problems[i]) not in seen]
    test = [_make_item(options, "test", i, *problems[i], None) for i in test_rows]
    return {"train": train, "test": test}


def _check_row(row: dict[str, object], index: int, source: str) -> tuple[tuple[int, ...], int]:
    nums, target = row["nums"], row["target"]
    if not isinstance(nums, (list, tuple)) or not nums or not all(_is_count(n) for n in nums):
        raise RlinoError(
            f"task {NAME!r}: {source} row {index} field 'nums' must be a list of non-negative ints, "
            f"got {nums!r}"
        )
    if not isinstance(target, int) or isinstance(target, bool):
        raise RlinoError(f"task {NAME!r}: {source} row {index} field 'target' must be an int, got {target!r}")
    return tuple(nums), target  # type: ignore[arg-type]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
