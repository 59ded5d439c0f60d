"""reasoning_gym: any of reasoning-gym's procedurally generated datasets, by name, scored 0/1 by the dataset's scorer.

    task = load_task("reasoning_gym", dataset="chain_sum", dataset_options={"max_terms": 3})

The prompt asks for the final answer inside ``<answer></answer>``, the tags reasoning-gym's own system prompts ask
for (``reasoning_gym.utils.SYSTEM_PROMPTS``) and its ``utils.extract_answer`` reads; the stripped text of the last
pair goes to the dataset's ``score_answer(answer, entry)``. Its score in [0, 1] includes partial credit (0.01 or 0.05
for a well-formed wrong answer, len(gold)/len(answer) for an answer that contains the gold one, ...); rlino's
methods and its scorecard are defined on 0/1 correctness, so full marks (>= 1 - 1e-9) give 1.0 and any partial
credit gives 0.0.

A few datasets are refused (``REFUSED``): their scorers give full marks to wrong answers or run Python's ``eval`` on
the model's answer to reach full marks. Four others eval the answer only on the way to partial credit (an answer
written as a Python list); ``eval`` is replaced in their modules by a function that raises, which their scorers
catch (scoring 0, as partial credit would).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from rlino.errors import RlinoError, did_you_mean
from rlino.tasks.answers import boxed_answer, format_number, last_boxed, last_number, parse_number
from rlino.tasks.options import build_options
from rlino.tasks.sources import check_split
from rlino.typed import Mismatch, coerce, type_name

NAME = "reasoning_gym"
DEFAULT_PROMPT = (
    "{question}\nReason step by step, then give only your final answer inside <answer></answer> tags, "
    "in the format the question asks for."
)
OPEN, CLOSE = "<answer>", "</answer>"
# An answer longer than this (or than twice the gold answer, where that is longer) scores 0 unread by the scorer.
MAX_ANSWER_CHARS = 1000
FULL_MARKS = 1.0 - 1e-9
RESERVED = ("seed", "size")  # set from the task's seed and train_size / test_size, not from dataset_options
_SYMPY_EVAL = "its scorer runs sympy's parse_expr, which calls Python's eval, on the model's answer"
# Datasets this task will not serve, and why (as of reasoning-gym 0.1.25).
REFUSED = {
    "countdown": "use rlino's own 'countdown' task: reasoning-gym's countdown scorer accepts answers within 1e-6 of "
    "the target, and runs sympy's parse_expr (Python's eval) on the model's answer",
    "composite": "it mixes several datasets; a reasoning_gym task serves one dataset",
    "coin_flip": "its scorer gives full marks to the answer '0' for every probability below 1 (it compares the "
    "printed numbers' prefixes)",
    "game_of_life_halting": "its scorer gives full marks to any non-empty answer (it compares bool(answer) with "
    "bool(gold))",
    "spell_backward": "its scorer gives about full marks (a float sum near 1) to the gold word followed by more "
    "letters",
    "puzzle24": _SYMPY_EVAL,
    "simple_integration": _SYMPY_EVAL,
    "intermediate_integration": _SYMPY_EVAL,
    "polynomial_multiplication": _SYMPY_EVAL,
}
ANSWER_FORMATS = ("tags", "tags-or-last-number", "last-number", "boxed")
"""tags: the last <answer></answer> pair (reasoning-gym's own reading); tags-or-last-number: that, else the last number
of the response (for models that never write the tags, e.g. SmolLM2-135M-Instruct); last-number: the last number
only; boxed: the last non-empty \\boxed{} (the math tasks' reading)."""

# Scorers that eval the model's answer only to give partial credit; their module's `eval` is made to raise.
EVAL_FOR_PARTIAL_CREDIT = ("binary_matrix", "n_queens", "spiral_matrix", "string_insertion")


@dataclass(frozen=True)
class GymOptions:
    """Options of the reasoning_gym task; every field can be passed to ``load_task("reasoning_gym", ...)``."""

    dataset: str = ""  # required: a reasoning-gym dataset name, e.g. "chain_sum" (reasoning_gym.factory.DATASETS)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # fields of that dataset's config dataclass
    train_size: int = 2000  # train items generated
    test_size: int = 500  # test items generated, before those repeating a question are dropped
    seed: int = 0  # derives the seeds of reasoning-gym's train and test streams
    prompt_template: str = DEFAULT_PROMPT  # placeholder {question}
    answer_format: str = "tags"  # where the answer is read: one of ANSWER_FORMATS (`read_answer`)

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> RlinoError:
            return RlinoError(f"task {NAME!r} option {option!r} {why}, got {getattr(self, option)!r}")

        if not self.dataset.strip():
            raise bad("dataset", "is required: the name of a reasoning-gym dataset such as 'chain_sum'")
        if self.train_size < 1:
            raise bad("train_size", "must be >= 1")
        if self.test_size < 0:
            raise bad("test_size", "must be >= 0")
        if "{question}" not in self.prompt_template:
            raise bad("prompt_template", "must contain {question}")
        if self.answer_format not in ANSWER_FORMATS:
            raise bad("answer_format", f"must be one of {', '.join(ANSWER_FORMATS)}"
                      f"{did_you_mean(self.answer_format, ANSWER_FORMATS)}")


@dataclass(frozen=True)
class GymItem:
    """One generated problem; ``answer`` is reasoning-gym's gold answer, or None where the scorer checks answers
    itself (e.g. graph_color, rush_hour); ``entry`` is reasoning-gym's whole entry, which the scorer reads."""

    question: str
    answer: str | None
    prompt: str
    uid: str  # reasoning_gym-{dataset}-{split}-{index in reasoning-gym's stream}
    entry: dict[str, Any] = field(compare=False, repr=False)


class GymTask:
    """One reasoning-gym dataset: seeded train and test streams and the dataset's scorer, mapped to 0/1."""

    name = NAME

    def __init__(self, options: GymOptions) -> None:
        self.options = options
        self._config_cls = dataset_config_class(options.dataset)
        self._values = dataset_values(options.dataset, self._config_cls, options.dataset_options)
        check_config(options.dataset, self._config_cls, self._values, options.train_size)
        self._datasets: dict[str, Any] = {}
        self._splits: dict[str, list[GymItem]] | None = None

    def items(self, split: str) -> list[GymItem]:
        """Return the items of ``split`` ("train" or "test"), generated once and then cached.

        Train and test come from two reasoning-gym streams seeded apart (``stream_seed``). Generators with small
        ranges repeat questions, so the test split drops every question the train split has and every repeat of
        an earlier test question: the splits share no question, and each test question counts once.
        """
        check_split(split, NAME)
        if self._splits is None:
            self._splits = self._generate()
        if not self._splits[split]:
            raise RlinoError(f"task {NAME!r}: the {split} split is empty ({self._empty_reason(split)})")
        return list(self._splits[split])

    def score(self, completion: str, item: GymItem) -> float:
        """Return 1.0 if the dataset's scorer gives the last ``<answer>...</answer>`` full marks, else 0.0.

        Partial credit scores 0.0, as do a completion without the tags, an answer longer than ``MAX_ANSWER_CHARS``
        (or twice the gold answer) and a scorer that raises on odd text.
        """
        answer = read_answer(completion, self.options.answer_format)
        if answer is None or len(answer) > max(MAX_ANSWER_CHARS, 2 * len(item.answer or "")):
            return 0.0
        return 1.0 if self.raw_score(answer, item) >= FULL_MARKS else 0.0

    def raw_score(self, answer: str, item: GymItem) -> float:
        """reasoning-gym's own score of an extracted answer, partial credit included; 0.0 where the scorer raises."""
        try:
            value = float(self._dataset("train").score_answer(answer, item.entry))
        except Exception:  # noqa: BLE001 - a scorer's error on odd model output is a wrong answer
            return 0.0
        return value if 0.0 <= value <= 1.0 + 1e-9 else 0.0  # NaN or out of range: a broken score

    def _dataset(self, split: str) -> Any:
        """reasoning-gym's dataset object of one split's stream (generation is lazy: it costs nothing yet)."""
        if split not in self._datasets:
            import reasoning_gym  # imported late: it is slow to import

            size = max(getattr(self.options, f"{split}_size"), 1)
            seed = stream_seed(self.options.seed, split)
            self._datasets[split] = reasoning_gym.create_dataset(self.options.dataset, size=size, seed=seed,
                                                                 **self._values)
        return self._datasets[split]

    def _generate(self) -> dict[str, list[GymItem]]:
        train = self._rows("train")
        seen = {item.question for item in train}
        test = []
        for item in self._rows("test"):
            if item.question not in seen:
                seen.add(item.question)
                test.append(item)
        return {"train": train, "test": test}

    def _rows(self, split: str) -> list[GymItem]:
        dataset, size = self._dataset(split), getattr(self.options, f"{split}_size")
        items = []
        for index in range(size):
            try:
                entry = dataset[index]
            except Exception as exc:  # noqa: BLE001 - a generator's bug for these options
                raise RlinoError(
                    f"task {NAME!r}: reasoning-gym failed to generate {split} item {index} of dataset "
                    f"{self.options.dataset!r} ({type(exc).__name__}: {exc})"
                ) from exc
            items.append(self._make_item(entry, index, split))
        return items

    def _make_item(self, entry: Any, index: int, split: str) -> GymItem:
        question = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(question, str):
            raise RlinoError(f"task {NAME!r}: dataset {self.options.dataset!r} {split} item {index} has no question")
        answer = entry.get("answer")
        prompt = self.options.prompt_template.replace("{question}", question)
        uid = f"{NAME}-{self.options.dataset}-{split}-{index}"
        return GymItem(question, None if answer is None else str(answer), prompt, uid, entry)

    def _empty_reason(self, split: str) -> str:
        size = getattr(self.options, f"{split}_size")
        if split == "train" or size == 0:
            return f"{split}_size={size}"
        return (
            f"all {size} test questions of dataset {self.options.dataset!r} are train questions or repeats: its "
            "dataset_options allow few distinct questions; lower train_size or widen the dataset_options"
        )


def read_answer(completion: str, answer_format: str) -> str | None:
    """The answer a completion gives under one of ANSWER_FORMATS, or None when it gives none. A number read from
    free text or a box is written plainly ("1,000" and "1000.0" as "1000"), as the datasets' gold answers are."""
    if answer_format in ("tags", "tags-or-last-number"):
        tagged = extract_answer(completion)
        if tagged is not None or answer_format == "tags":
            return tagged
    if answer_format == "boxed":
        box = last_boxed(completion)
        number = None if box is None else boxed_answer(box).strip()
    else:
        number = last_number(completion)
    value = None if number is None else parse_number(number)
    return number if value is None else format_number(value)


def extract_answer(completion: str) -> str | None:
    """The stripped text inside the last ``<answer>...</answer>`` pair, or None when there is no pair.

    reasoning-gym's ``utils.extract_answer`` also takes the last pair and strips it; rfind keeps this linear in
    the completion's length whatever the model wrote.
    """
    end = completion.rfind(CLOSE)
    start = completion.rfind(OPEN, 0, end) if end >= 0 else -1
    return None if start < 0 else completion[start + len(OPEN) : end].strip()


def stream_seed(seed: int, split: str) -> int:
    """reasoning-gym's seed for one split: a hash of the task's seed and the split, below 2**31.

    Most reasoning-gym generators seed item i with Random(seed + i), so seeds s and s + 1 give the same stream
    shifted by one item; hashed seeds keep the train and test streams, and those of nearby seeds, apart.
    """
    digest = hashlib.sha256(f"rlino-{NAME}-{seed}-{split}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def dataset_config_class(dataset: str) -> type:
    """The config dataclass of a reasoning-gym dataset; RlinoError for an unknown or refused name."""
    import reasoning_gym  # noqa: F401 - importing it registers every dataset
    from reasoning_gym.factory import DATASETS

    if dataset in REFUSED:
        raise RlinoError(f"task {NAME!r}: dataset {dataset!r} is not supported: {REFUSED[dataset]}")
    if dataset not in DATASETS:
        hint = did_you_mean(dataset, [name for name in DATASETS if name not in REFUSED])
        raise RlinoError(
            f"task {NAME!r}: reasoning-gym has no dataset {dataset!r}{hint}; its {len(DATASETS)} dataset names are "
            "the keys of reasoning_gym.factory.DATASETS"
        )
    dataset_cls, config_cls = DATASETS[dataset]
    if dataset in EVAL_FOR_PARTIAL_CREDIT:
        sys.modules[dataset_cls.__module__].eval = _refuse_eval  # type: ignore[attr-defined]
    return config_cls  # type: ignore[no-any-return]


def _refuse_eval(*args: object, **kwargs: object) -> Any:
    raise RlinoError("rlino does not let a reasoning-gym scorer eval a model's answer")


def dataset_values(dataset: str, config_cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """``dataset_options`` checked against the dataset's config dataclass: known names, and types where simple."""
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    names = [name for name in fields if name not in RESERVED]
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is simply not checked
        hints = {}
    values = {}
    for key, value in options.items():
        if key in RESERVED:
            instead = "seed" if key == "seed" else "train_size and test_size"
            raise RlinoError(f"task {NAME!r}: dataset_options cannot set {key!r}; set the task's {instead} instead")
        if key not in fields:
            raise RlinoError(f"task {NAME!r}: dataset {dataset!r} has no option {key!r}{did_you_mean(key, names)}; "
                             f"its options: {', '.join(names)}")
        values[key] = _typed(dataset, key, value, hints.get(key), fields[key].default)
    return values


def _typed(dataset: str, key: str, value: Any, hint: Any, default: Any) -> Any:
    """``value`` as the config field wants it: a TOML list as a tuple where the field is one, else coerced to a
    simple annotation (int, float, bool, str, their optionals, lists of them); other annotations pass unchecked."""
    if isinstance(value, list) and (isinstance(default, tuple) or hint is tuple or typing.get_origin(hint) is tuple):
        return tuple(value)
    if hint is int and isinstance(default, float):
        hint = float  # annotated int, defaulting to a float (rearc's diff_ub)
    if not _simple(hint):
        return value
    try:
        return coerce(value, hint)
    except Mismatch:
        raise RlinoError(
            f"task {NAME!r}: dataset {dataset!r} option {key!r} must be {type_name(hint)}, "
            f"got {value!r} ({type(value).__name__})"
        ) from None


def _simple(hint: Any) -> bool:
    scalars = (int, float, bool, str, type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) or origin is list:
        return bool(args) and all(arg in scalars for arg in args)
    return hint in scalars


def check_config(dataset: str, config_cls: type, values: dict[str, Any], size: int) -> None:
    """Build the dataset's config and run its ``validate()``; what it rejects is a RlinoError naming the option."""
    try:
        config = config_cls(**values, size=size, seed=0)
        if callable(getattr(config, "validate", None)):
            config.validate()
    except (AssertionError, ValueError, TypeError) as exc:
        why = str(exc) or type(exc).__name__
        named = [key for key in values if key in why] or list(values)
        shown = ", ".join(f"{key}={values[key]!r}" for key in named) or "its default options"
        raise RlinoError(f"task {NAME!r}: dataset {dataset!r} rejects {shown}: {why}") from None


def gym_task(**options: object) -> GymTask:
    """Build the reasoning_gym task from keyword options (see GymOptions)."""
    return GymTask(build_options(GymOptions, options, NAME))
