"""GSM8K: grade-school math word problems with a single numeric answer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rlino.errors import RlinoError
from rlino.tasks.answers import extract_prediction, format_number, parse_number
from rlino.tasks.options import build_options
from rlino.tasks.sources import (
    check_split,
    kept_indices,
    load_file_rows,
    load_hub,
    looks_like_file,
    rows_with_fields,
)

NAME = "gsm8k"
REASONING_GYM = "reasoning-gym"
DEFAULT_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{}."
# reasoning-gym needs explicit sizes; these are used when train_size / test_size are 0.
GYM_SIZES = {"train": 2000, "test": 500}
# Offset between the train and test seeds of reasoning-gym, so the two streams differ.
GYM_TEST_SEED_OFFSET = 1_000_003
FALLBACKS = ("last_number", "none")


@dataclass(frozen=True)
class Gsm8kOptions:
    """Options of the gsm8k task; every field can be passed to ``load_task("gsm8k", ...)``."""

    source: str = "openai/gsm8k"  # a hub id (config "main"), "reasoning-gym", or a local dataset folder
    train_file: str = ""  # local json/jsonl/parquet with `question` and `answer`; overrides source
    test_file: str = ""  # likewise for the test split
    train_size: int = 0  # train items kept, chosen by seed; 0 = all (2000 for reasoning-gym)
    test_size: int = 0  # test items kept, chosen by seed; 0 = all (500 for reasoning-gym)
    seed: int = 0  # picks the kept items, and seeds reasoning-gym
    prompt_template: str = DEFAULT_PROMPT  # placeholder {question}
    fallback: str = "last_number"  # with no \boxed{} and no "#### N": "last_number" or "none"

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> RlinoError:
            return RlinoError(f"task {NAME!r} option {option!r} {why}, got {getattr(self, option)!r}")

        if self.train_size < 0:
            raise bad("train_size", "must be >= 0")
        if self.test_size < 0:
            raise bad("test_size", "must be >= 0")
        if "{question}" not in self.prompt_template:
            raise bad("prompt_template", "must contain {question}")
        if self.fallback not in FALLBACKS:
            raise bad("fallback", f"must be one of {', '.join(FALLBACKS)}")
        if not (self.source.strip() or self.train_file or self.test_file):
            raise bad("source", "must be a hub id, 'reasoning-gym' or a local folder")


@dataclass(frozen=True)
class Gsm8kItem:
    """One word problem; ``answer`` is the gold number written canonically ("1234", "-3", "2.5")."""

    question: str
    answer: str
    prompt: str
    uid: str


class Gsm8kTask:
    """GSM8K problems and an exact numeric verifier."""

    name = NAME

    def __init__(self, options: Gsm8kOptions) -> None:
        self.options = options
        self._splits: dict[str, list[Gsm8kItem]] = {}
        self._hub: Any = None  # the DatasetDict, loaded once for both splits

    def items(self, split: str) -> list[Gsm8kItem]:
        """Return the items of ``split`` ("train" or "test"), loaded once and then cached."""
        check_split(split, NAME)
        if split not in self._splits:
            local = self.options.train_file or self.options.test_file
            if self.options.source == REASONING_GYM and not local:
                self._splits.update(self._generate())
            else:
                self._splits[split] = self._load(split)
        if not self._splits[split]:
            where = getattr(self.options, f"{split}_file") or repr(self.options.source)
            raise RlinoError(f"task {NAME!r}: the {split} split of {where} is empty")
        return list(self._splits[split])

    def score(self, completion: str, item: Gsm8kItem) -> float:
        """Return 1.0 if the final number of ``completion`` equals the gold answer exactly, else 0.0."""
        text = extract_prediction(completion, fallback=self.options.fallback == "last_number")
        predicted = None if text is None else parse_number(text)
        return 1.0 if predicted is not None and predicted == parse_number(item.answer) else 0.0

    def _load(self, split: str) -> list[Gsm8kItem]:
        """Read one split from a local file or the hub and keep ``{split}_size`` rows chosen by seed."""
        options = self.options
        fields = ("question", "answer")
        if options.train_file or options.test_file:
            path = getattr(options, f"{split}_file")
            if not path:
                other = "train" if split == "test" else "test"
                raise RlinoError(
                    f"task {NAME!r}: option '{split}_file' is not set (only '{other}_file' is), "
                    f"so there is no {split} split"
                )
            rows, where = load_file_rows(path, fields, NAME), path
        else:
            if looks_like_file(options.source) and not os.path.isdir(os.path.expanduser(options.source)):
                raise RlinoError(
                    f"task {NAME!r}: source {options.source!r} is not a dataset folder or hub id; "
                    "give local files as train_file and test_file"
                )
            if self._hub is None:
                hint = (
                    "without internet, set train_file/test_file to local files or use source='reasoning-gym'"
                )
                folder = os.path.expanduser(options.source)
                # A clone of openai/gsm8k keeps its default config in main/; other folders have none.
                is_clone = os.path.isdir(os.path.join(folder, "main"))
                config = "main" if not os.path.isdir(folder) or is_clone else None
                self._hub = load_hub(options.source, config, NAME, hint)
            if split not in self._hub:
                raise RlinoError(f"task {NAME!r}: {options.source!r} has no {split!r} split")
            where = f"{options.source!r} split {split!r}"
            rows = rows_with_fields(self._hub[split], fields, where, NAME)
        indices = kept_indices(len(rows), getattr(options, f"{split}_size"), NAME, options.seed, split)
        return [self._make_item(rows[i], i, split, where) for i in indices]

    def _generate(self) -> dict[str, list[Gsm8kItem]]:
        """Make GSM8K-style items offline with reasoning-gym's ``gsm_symbolic`` generator."""
        import reasoning_gym  # imported late: it is slow to import and only this source needs it

        splits: dict[str, list[Gsm8kItem]] = {}
        seen: set[str] = set()
        for split, seed in (("train", self.options.seed), ("test", self.options.seed + GYM_TEST_SEED_OFFSET)):
            size = getattr(self.options, f"{split}_size") or GYM_SIZES[split]
            rows = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)
            items = [self._make_item(row, i, split, REASONING_GYM) for i, row in enumerate(rows)]
            # Test questions that also appear in train are dropped, so the splits are disjoint.
            splits[split] = [item for item in items if item.question not in seen]
            seen.update(item.question for item in items)
        return splits

    def _make_item(self, row: dict[str, Any], index: int, split: str, where: str) -> Gsm8kItem:
        question, answer = row.get("question"), row.get("answer")
        row_name = f"task {NAME!r}: {where} row {index}"
        if not isinstance(question, str):
            raise RlinoError(f"{row_name} field 'question' must be text, got {question!r}")
        if not isinstance(answer, str):
            raise RlinoError(f"{row_name} field 'answer' must be text, got {answer!r}")
        gold = gold_answer(answer)
        if gold is None:
            raise RlinoError(f"{row_name} field 'answer' has no number after '####': {answer[-80:]!r}")
        prompt = self.options.prompt_template.replace("{question}", question)
        return Gsm8kItem(question, gold, prompt, f"{NAME}-{split}-{index}")


def gold_answer(answer: str) -> str | None:
    """Return the canonical gold number of a GSM8K answer (text after the last ``####``), or None."""
    marker = answer.rfind("####")
    value = parse_number((answer[marker + 4 :] if marker >= 0 else answer).replace(",", ""))
    return None if value is None else format_number(value)


def gsm8k(**options: object) -> Gsm8kTask:
    """Build the gsm8k task from keyword options (see Gsm8kOptions)."""
    return Gsm8kTask(build_options(Gsm8kOptions, options, NAME))
