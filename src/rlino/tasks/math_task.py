"""MATH: competition problems (MATH-500 and the like) whose answers are LaTeX, graded with Math-Verify.

The reward is 1.0 when the last ``\\boxed{}`` of the completion means the gold answer by Math-Verify (``\\frac{3}{4}``
and ``0.75``, ``2\\sqrt{2}`` and ``\\sqrt{8}``), else 0.0; a completion without a ``\\boxed{}`` scores 0. The
comparison runs in a worker process with a time limit (`rlino.tasks.symbolic`), so hostile answers cannot stall
training, in whichever thread or process the reward is computed; answers too costly to settle (a power tower, a huge
factorial) score 0 at once, refused unread before the worker (`rlino.tasks.symbolic.too_costly`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from rlino.errors import RlinoError
from rlino.tasks.answers import last_boxed
from rlino.tasks.options import build_options
from rlino.tasks.sources import (
    check_split,
    kept_indices,
    load_file_rows,
    load_hub,
    looks_like_file,
    rows_with_fields,
)
from rlino.tasks.symbolic import equivalent

NAME = "math"
BUILTIN = "builtin"
BUILTIN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_builtin.jsonl")
DEFAULT_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."
FIELDS = ("problem",)
OPTIONAL_FIELDS = ("answer", "solution", "unique_id")


@dataclass(frozen=True)
class MathOptions:
    """Options of the math task; every field can be passed to ``load_task("math", ...)``."""

    source: str = "HuggingFaceH4/MATH-500"  # hub id, local dataset folder, or "builtin" (36 items shipped offline)
    train_file: str = ""  # local json/jsonl/parquet for the train split (`problem`, and `answer` or `solution`)
    test_file: str = ""  # likewise for the test split; a split without its file comes from `source`
    train_size: int = 0  # train items kept, chosen by seed; 0 = all
    test_size: int = 0  # test items kept, chosen by seed; 0 = all
    seed: int = 0  # picks the kept items
    prompt_template: str = DEFAULT_PROMPT  # placeholder {problem}
    timeout_seconds: float = 5.0  # Math-Verify's time per answer; slower answers score 0

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> RlinoError:
            return RlinoError(f"task {NAME!r} option {option!r} {why}, got {getattr(self, option)!r}")

        if self.train_size < 0:
            raise bad("train_size", "must be >= 0")
        if self.test_size < 0:
            raise bad("test_size", "must be >= 0")
        if "{problem}" not in self.prompt_template:
            raise bad("prompt_template", "must contain {problem}")
        if not self.timeout_seconds > 0:
            raise bad("timeout_seconds", "must be > 0")
        if not self.source.strip():
            raise bad("source", "must be a hub id, a local dataset folder or 'builtin'")


@dataclass(frozen=True)
class MathItem:
    """One problem; ``answer`` is the gold answer as LaTeX (the content of its ``\\boxed{}``)."""

    problem: str
    answer: str
    prompt: str
    uid: str


class MathTask:
    """MATH-style problems and a Math-Verify verifier of the last ``\\boxed{}``."""

    name = NAME

    def __init__(self, options: MathOptions) -> None:
        self.options = options
        self._splits: dict[str, list[MathItem]] = {}
        self._hub: Any = None  # the DatasetDict, loaded once for both splits

    def items(self, split: str) -> list[MathItem]:
        """Return the items of ``split`` ("train" or "test"), loaded once and then cached."""
        check_split(split, NAME)
        if split not in self._splits:
            self._splits[split] = self._load(split)
        if not self._splits[split]:
            where = getattr(self.options, f"{split}_file") or repr(self.options.source)
            raise RlinoError(f"task {NAME!r}: the {split} split of {where} is empty")
        return list(self._splits[split])

    def score(self, completion: str, item: MathItem) -> float:
        """Return 1.0 if the last ``\\boxed{}`` of ``completion`` equals the gold answer by Math-Verify, else 0.0."""
        answer = last_boxed(completion)
        if answer is None:
            return 0.0
        return 1.0 if equivalent(item.answer, answer, self.options.timeout_seconds) else 0.0

    def _load(self, split: str) -> list[MathItem]:
        """Read one split (its file, else the source) and keep ``{split}_size`` rows chosen by seed."""
        options = self.options
        path = getattr(options, f"{split}_file")
        if path:
            rows, where = load_file_rows(path, FIELDS, NAME, OPTIONAL_FIELDS), path
        elif options.source == BUILTIN:
            rows, where = builtin_rows(split), f"builtin {split}"
        else:
            rows, where = self._hub_rows(split), f"{options.source!r} split {split!r}"
        indices = kept_indices(len(rows), getattr(options, f"{split}_size"), NAME, options.seed, split)
        return [self._make_item(rows[i], i, split, where) for i in indices]

    def _hub_rows(self, split: str) -> list[dict[str, Any]]:
        """The rows of ``split`` from the hub id or local dataset folder named by ``source``."""
        source = self.options.source
        no_split = (
            f"task {NAME!r}: {source!r} has no {split!r} split; "
            f"set {split}_file to a local json/jsonl/parquet file with `problem` and `answer` (or `solution`)"
        )
        if split == "train" and "math-500" in source.rstrip("/").lower():
            raise RlinoError(no_split + " (MATH-500 is a test set: its 500 problems come from MATH's test split)")
        if looks_like_file(source) and not os.path.isdir(os.path.expanduser(source)):
            raise RlinoError(
                f"task {NAME!r}: source {source!r} is not a dataset folder or hub id; "
                "give local files as train_file and test_file"
            )
        if self._hub is None:
            hint = "without internet, set train_file/test_file to local files or use source='builtin'"
            self._hub = load_hub(source, None, NAME, hint)
        if split not in self._hub:
            raise RlinoError(no_split)
        return rows_with_fields(self._hub[split], FIELDS, f"{source!r} split {split!r}", NAME, OPTIONAL_FIELDS)

    def _make_item(self, row: dict[str, Any], index: int, split: str, where: str) -> MathItem:
        problem = row.get("problem")
        row_name = f"task {NAME!r}: {where} row {index}"
        if not isinstance(problem, str):
            raise RlinoError(f"{row_name} field 'problem' must be text, got {problem!r}")
        answer = gold_answer(row)
        if answer is None:
            if row.get("answer") is None and row.get("solution") is None:
                raise RlinoError(f"{row_name} has no field 'answer' or 'solution'")
            raise RlinoError(
                f"{row_name} has no answer: 'answer' is empty and 'solution' has no \\boxed{{...}} "
                f"(ends {str(row.get('solution'))[-80:]!r})"
            )
        unique_id = row.get("unique_id")
        if isinstance(unique_id, str) and unique_id:
            uid = f"{NAME}-{unique_id}"
        else:
            uid = f"{NAME}-{split}-{hashlib.sha256(problem.encode()).hexdigest()[:12]}"
        prompt = self.options.prompt_template.replace("{problem}", problem)
        return MathItem(problem, answer, prompt, uid)


def gold_answer(row: dict[str, Any]) -> str | None:
    """The gold answer of a row: its ``answer`` field, else the last ``\\boxed{}`` of its ``solution``; or None."""
    answer, solution = row.get("answer"), row.get("solution")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # a JSON number
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed is not None and boxed.strip():
            return boxed.strip()
    return None


def builtin_rows(split: str) -> list[dict[str, Any]]:
    """The rows of ``split`` in the MATH-style problems shipped with rlino (written for its tests)."""
    with open(BUILTIN_FILE, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [row for row in rows if row["split"] == split]


def math_(**options: object) -> MathTask:
    """Build the math task from keyword options (see MathOptions)."""
    return MathTask(build_options(MathOptions, options, NAME))
