"""Task loading, item generation and file sources, and the error messages users see."""

from __future__ import annotations

import os

# datasets and huggingface_hub read this when first imported: tests must never reach the hub.
os.environ["HF_HUB_OFFLINE"] = "1"

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlino.errors import RlinoError
from rlino.tasks import TASKS, Task, load_task
from rlino.tasks.options import build_options

SMALL = {"train_size": 300, "test_size": 100}


def key(item) -> tuple[tuple[int, ...], int]:
    return tuple(sorted(item.numbers)), item.target


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


# --- countdown generator ---------------------------------------------------------------------


def test_registry_and_protocol() -> None:
    assert set(TASKS) == {"countdown", "gsm8k", "math", "reasoning_gym"}
    required = {"reasoning_gym": {"dataset": "chain_sum"}}
    for name in TASKS:
        task = load_task(name, **required.get(name, {}))
        assert isinstance(task, Task)
        assert task.name == name


def test_countdown_is_deterministic() -> None:
    first, second = load_task("countdown", **SMALL), load_task("countdown", **SMALL)
    assert first.items("train") == second.items("train")
    assert first.items("test") == second.items("test")
    other = load_task("countdown", seed=1, **SMALL)
    assert other.items("train") != first.items("train")


def test_countdown_items_are_cached_copies() -> None:
    task = load_task("countdown", **SMALL)
    items = task.items("train")
    items.clear()
    assert len(task.items("train")) == 300
    assert task.items("train")[0] is task.items("train")[0]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_numbers": 4, "max_target": 1000},
        {"num_numbers": 4, "min_value": 1, "max_value": 99},
        {"num_numbers": 2, "max_value": 20},
        {"operators": "+-"},
        {"operators": "*/", "max_target": 50},
        {"min_value": 0, "min_target": 0, "seed": 7},
    ],
)
def test_countdown_generated_items_are_solvable_and_disjoint(options: dict) -> None:
    task = load_task("countdown", **SMALL, **options)
    train, test = task.items("train"), task.items("test")
    assert (len(train), len(test)) == (300, 100)
    defaults = task.options
    for item in train + test:
        assert len(item.numbers) == defaults.num_numbers
        assert all(defaults.min_value <= n <= defaults.max_value for n in item.numbers)
        assert defaults.min_target <= item.target <= defaults.max_target
        assert task.score(f"<think>easy</think> <answer>{item.solution}</answer>", item) == 1.0
    assert not {key(i) for i in train} & {key(i) for i in test}
    assert len({key(i) for i in test}) == len(test)  # test problems do not repeat
    assert len({i.uid for i in train + test}) == 400
    assert train[17].uid == "countdown-train-17"


def test_countdown_default_sizes_are_disjoint() -> None:
    """The default 20,000 train and 1,000 test problems are generated in full and share no problem."""
    task = load_task("countdown")
    train, test = task.items("train"), task.items("test")
    assert (len(train), len(test)) == (20000, 1000)
    assert not {key(i) for i in train} & {key(i) for i in test}


def test_countdown_prompts() -> None:
    item = load_task("countdown", **SMALL).items("train")[0]
    numbers = ", ".join(map(str, item.numbers))
    assert f"Using the numbers [{numbers}], create an equation that equals {item.target}." in item.prompt
    assert "(+, -, *, /)" in item.prompt and "<answer>" in item.prompt
    custom = load_task("countdown", prompt_template="{numbers} -> {target} {not a placeholder}", **SMALL)
    item = custom.items("test")[0]
    assert item.prompt == f"{', '.join(map(str, item.numbers))} -> {item.target} {{not a placeholder}}"


def test_countdown_unsatisfiable_options() -> None:
    task = load_task("countdown", operators="+", min_target=500, max_target=600)
    with pytest.raises(RlinoError, match="could only generate 0 of 1000 test items"):
        task.items("train")


# --- countdown file source -------------------------------------------------------------------


def test_countdown_tinyzero_jsonl(tmp_path: Path) -> None:
    rows = [{"target": n + 10, "nums": [n, 2, 5]} for n in range(1, 21)]  # n + 2 * 5
    path = write_jsonl(tmp_path / "countdown.jsonl", rows)
    task = load_task("countdown", source=path, test_size=5, seed=3)
    train, test = task.items("train"), task.items("test")
    assert (len(train), len(test)) == (15, 5)
    assert not {i.uid for i in train} & {i.uid for i in test}
    assert not {key(i) for i in train} & {key(i) for i in test}
    assert load_task("countdown", source=path, test_size=5, seed=3).items("test") == test
    for item in train + test:
        assert item.solution is None
        assert item.target == item.numbers[0] + 10
        assert task.score(f"<answer>{item.numbers[0]} + 2 * 5</answer>", item) == 1.0
        assert item.uid.startswith(("countdown-train-", "countdown-test-"))
    assert len(load_task("countdown", source=path, test_size=5, train_size=4).items("train")) == 4


def test_countdown_file_test_split_drops_problems_seen_in_train(tmp_path: Path) -> None:
    """Held-out file rows whose problem (numbers in any order, same target) is in train are dropped, no others."""
    base = [{"target": n + 10, "nums": [n, 2, 5]} for n in range(1, 16)]
    planted = [{"target": n + 10, "nums": [5, n, 2]} for n in range(1, 11)]  # the same problems, reordered
    near = [{"target": n + 11, "nums": [2, 5, n]} for n in range(1, 6)]  # same numbers, another target: distinct
    rows = base + planted + near
    path = write_jsonl(tmp_path / "countdown.jsonl", rows)
    task = load_task("countdown", source=path, test_size=10, seed=0)
    train, test = task.items("train"), task.items("test")

    def row_key(index: int) -> tuple[tuple[int, ...], int]:
        return tuple(sorted(rows[index]["nums"])), rows[index]["target"]

    # The oracle, from the uids (which carry the row index): every row not in train was held out for test.
    train_rows = {int(i.uid.removeprefix("countdown-train-")) for i in train}
    held_out = set(range(len(rows))) - train_rows
    assert len(train_rows) == len(rows) - 10 and len(held_out) == 10
    seen_in_train = {row_key(i) for i in train_rows}
    duplicates = {i for i in held_out if row_key(i) in seen_in_train}
    assert len(duplicates) >= 2  # this seed holds out several planted duplicates, so the filter is exercised
    assert {int(i.uid.removeprefix("countdown-test-")) for i in test} == held_out - duplicates
    assert len(test) == 10 - len(duplicates)
    assert not {key(i) for i in train} & {key(i) for i in test}


def test_countdown_file_row_missing_field(tmp_path: Path) -> None:
    rows = [{"target": 3, "nums": [1, 2]}] * 3 + [{"nums": [1, 2]}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(RlinoError, match=r"bad\.jsonl row 3 has no field 'target'"):
        load_task("countdown", source=path, test_size=1).items("train")


def test_countdown_file_row_wrong_type(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"target": 3, "nums": [1, 2]}, {"target": 3, "nums": "12"}])
    with pytest.raises(RlinoError, match=r"row 1 field 'nums'"):
        load_task("countdown", source=path, test_size=1).items("train")


def test_countdown_file_too_small_and_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "two.jsonl", [{"target": 3, "nums": [1, 2]}] * 2)
    with pytest.raises(RlinoError, match="has 2 rows, not more than test_size"):
        load_task("countdown", source=path, test_size=2).items("train")
    with pytest.raises(RlinoError, match="data file not found: .*nope.jsonl"):
        load_task("countdown", source=str(tmp_path / "nope.jsonl")).items("train")


# --- gsm8k -----------------------------------------------------------------------------------


GSM_ROWS = [
    {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
    {"question": "A shop sells 1,000 pens a day for 2 days.", "answer": "#### 2,000"},
    {"question": "Half of 5?", "answer": "#### 2.50"},
    {"question": "Owe 3?", "answer": "-3"},
]


def test_gsm8k_local_jsonl_and_parquet(tmp_path: Path) -> None:
    import pandas as pd

    train = write_jsonl(tmp_path / "train.jsonl", GSM_ROWS)
    test = tmp_path / "test.parquet"
    pd.DataFrame(GSM_ROWS[:2]).to_parquet(test)
    task = load_task("gsm8k", train_file=train, test_file=str(test), source="ignored/when-files-are-set")
    items = task.items("train")
    assert [i.answer for i in items] == ["5", "2000", "2.5", "-3"]
    assert [i.uid for i in task.items("test")] == ["gsm8k-test-0", "gsm8k-test-1"]
    first = items[0]
    assert first.question == GSM_ROWS[0]["question"]
    assert first.prompt.startswith(first.question + "\n") and "\\boxed{}" in first.prompt
    assert task.score("Tom ends with \\boxed{5} apples", first) == 1.0
    assert task.score("so #### 2,000", items[1]) == 1.0
    assert task.score("\\boxed{\\frac{5}{2}}", items[2]) == 1.0
    assert task.score("\\boxed{3}", items[3]) == 0.0


def test_gsm8k_sizes_pick_a_seeded_subset(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(50)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    picked = load_task("gsm8k", train_file=path, train_size=10, seed=1).items("train")
    assert len(picked) == 10
    assert picked == load_task("gsm8k", train_file=path, train_size=10, seed=1).items("train")
    assert picked != load_task("gsm8k", train_file=path, train_size=10, seed=2).items("train")
    assert picked[0].uid == f"gsm8k-train-{picked[0].answer}"  # uids keep the row index


def test_gsm8k_file_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.jsonl")
    with pytest.raises(RlinoError, match="data file not found: .*missing.jsonl"):
        load_task("gsm8k", train_file=missing).items("train")
    bad = write_jsonl(tmp_path / "bad.jsonl", [GSM_ROWS[0], {"question": "no answer"}])
    with pytest.raises(RlinoError, match=r"bad\.jsonl row 1 has no field 'answer'"):
        load_task("gsm8k", train_file=bad).items("train")
    wordy_rows = [GSM_ROWS[0], GSM_ROWS[1], {"question": "q", "answer": "#### many"}]
    wordy = write_jsonl(tmp_path / "wordy.jsonl", wordy_rows)
    with pytest.raises(RlinoError, match=r"wordy\.jsonl row 2 field 'answer' has no number"):
        load_task("gsm8k", train_file=wordy).items("train")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(RlinoError, match="data file is empty: .*empty.jsonl"):
        load_task("gsm8k", train_file=str(empty)).items("train")
    only_train = load_task("gsm8k", train_file=write_jsonl(tmp_path / "t.jsonl", GSM_ROWS))
    with pytest.raises(RlinoError, match="option 'test_file' is not set"):
        only_train.items("test")
    text = tmp_path / "data.txt"
    text.write_text("hello")
    with pytest.raises(RlinoError, match="cannot read .*data.txt"):
        load_task("gsm8k", train_file=str(text)).items("train")


def test_gsm8k_reasoning_gym_test_split_drops_questions_seen_in_train(monkeypatch: pytest.MonkeyPatch) -> None:
    """reasoning-gym test questions that also appear in its train stream are dropped, and only those."""
    train_rows = [{"question": f"train question {i}", "answer": f"#### {i}"} for i in range(8)]
    test_rows = [
        {"question": "train question 1", "answer": "#### 1"},  # planted duplicate
        {"question": "train question 3", "answer": "#### 3"},  # planted duplicate
        {"question": "fresh question 0", "answer": "#### 100"},
        {"question": "train question 7", "answer": "#### 7"},  # planted duplicate
        {"question": "fresh question 1", "answer": "#### 101"},
        {"question": "train question 10", "answer": "#### 10"},  # a train question is its prefix: still distinct
    ]
    calls = []

    def create_dataset(name: str, size: int, seed: int) -> list[dict]:
        calls.append((name, size, seed))
        return list(train_rows if seed == 5 else test_rows)[:size]

    monkeypatch.setitem(sys.modules, "reasoning_gym", types.SimpleNamespace(create_dataset=create_dataset))
    task = load_task("gsm8k", source="reasoning-gym", train_size=8, test_size=6, seed=5)
    train, test = task.items("train"), task.items("test")
    assert [c[:2] for c in calls] == [("gsm_symbolic", 8), ("gsm_symbolic", 6)] and calls[1][2] != 5
    assert [i.question for i in train] == [r["question"] for r in train_rows]
    assert [(i.question, i.uid) for i in test] == [("fresh question 0", "gsm8k-test-2"),
                                                  ("fresh question 1", "gsm8k-test-4"),
                                                  ("train question 10", "gsm8k-test-5")]
    assert len(test_rows) - len(test) == 3  # exactly the planted duplicates


def test_gsm8k_reasoning_gym_offline() -> None:
    options = {"source": "reasoning-gym", "train_size": 40, "test_size": 15, "seed": 5}
    task = load_task("gsm8k", **options)
    train, test = task.items("train"), task.items("test")
    assert len(train) == 40 and 0 < len(test) <= 15
    assert not {i.question for i in train} & {i.question for i in test}
    assert train == load_task("gsm8k", **options).items("train")
    for item in train + test:
        assert task.score(f"The answer is \\boxed{{{item.answer}}}.", item) == 1.0
    assert len(load_task("gsm8k", source="reasoning-gym", test_size=3).items("train")) == 2000


@pytest.mark.parametrize(
    ("name", "source"), [("gsm8k", "openai/gsm8k"), ("countdown", "Jiayi-Pan/Countdown-Tasks-3to4")]
)
def test_hub_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    """Offline, a hub source fails with an error that names the dataset and (for gsm8k) the offline options."""
    import datasets
    import huggingface_hub

    # In case another test imported datasets before HF_HUB_OFFLINE was set above.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    task = load_task(name, source=source)
    expected = f"could not load dataset '{source}' from the Hugging Face hub"
    with pytest.raises(RlinoError, match=expected) as error:
        task.items("train")
    if name == "gsm8k":
        assert "train_file/test_file" in str(error.value) and "reasoning-gym" in str(error.value)


def test_gsm8k_single_file_source_points_to_train_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    with pytest.raises(RlinoError, match="give local files as train_file and test_file"):
        load_task("gsm8k", source=path).items("train")


# --- custom tasks ----------------------------------------------------------------------------


CUSTOM_TASK = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Echo:
    prompt: str
    uid: str


class EchoTask:
    name = "echo"

    def __init__(self, word):
        self.word = word

    def items(self, split):
        return [Echo(f"say {self.word}", f"echo-{split}-0")]

    def score(self, completion, item):
        return float(self.word in completion)


def make(word="hi"):
    return EchoTask(word)


def broken():
    return object()
'''


def test_custom_task_from_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rlino_custom_echo.py").write_text(CUSTOM_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task("rlino_custom_echo:make", word="bye")
    assert isinstance(task, Task) and task.name == "echo"
    item = task.items("train")[0]
    assert item.prompt == "say bye" and task.score("bye now", item) == 1.0
    with pytest.raises(RlinoError, match="'rlino_custom_echo:broken'.*no 'items' or 'score' method"):
        load_task("rlino_custom_echo:broken")
    with pytest.raises(RlinoError, match="'rlino_custom_echo:missing'.*has no attribute 'missing'"):
        load_task("rlino_custom_echo:missing")
    with pytest.raises(RlinoError, match="'rlino_custom_echo:make'.*factory failed.*TypeError"):
        load_task("rlino_custom_echo:make", colour="red")


def test_custom_task_bad_paths() -> None:
    with pytest.raises(RlinoError, match="'no_such_module_xyz:make'.*cannot import 'no_such_module_xyz'"):
        load_task("no_such_module_xyz:make")
    with pytest.raises(RlinoError, match="must look like 'package.module:factory'"):
        load_task("rlino.tasks:")


# --- options and other errors ----------------------------------------------------------------


def test_unknown_task_name() -> None:
    expected = r"unknown task 'countdwn'; did you mean 'countdown'\? valid tasks: countdown, gsm8k"
    with pytest.raises(RlinoError, match=expected):
        load_task("countdwn")


def test_unknown_option_suggests_closest() -> None:
    with pytest.raises(RlinoError) as error:
        load_task("countdown", num_number=4)
    assert str(error.value) == "task 'countdown' has no option 'num_number' (did you mean 'num_numbers'?)"
    with pytest.raises(RlinoError, match="has no option 'zzz' \\(valid options: source, train_file"):
        load_task("gsm8k", zzz=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_numbers": "3"}, "task 'countdown' option 'num_numbers' must be int, got '3' (str)"),
        ({"num_numbers": True}, "task 'countdown' option 'num_numbers' must be int, got True (bool)"),
        ({"format_reward": "0.1"}, "task 'countdown' option 'format_reward' must be float, got '0.1' (str)"),
        ({"operators": None}, "task 'countdown' option 'operators' must be str, got None (NoneType)"),
        ({"num_numbers": 1}, "task 'countdown' option 'num_numbers' must be between 2 and 10, got 1"),
        ({"operators": "+^"}, "option 'operators' must be a non-empty subset of '+-*/' without repeats"),
        ({"format_reward": 1}, "option 'format_reward' must be in [0, 1), got 1.0"),
        ({"max_value": 0}, "option 'max_value' must be between min_value (1) and 9999999999, got 0"),
        ({"prompt_template": "{numbers} only"}, "option 'prompt_template' must contain {target}"),
    ],
)
def test_countdown_bad_option_values(options: dict, message: str) -> None:
    with pytest.raises(RlinoError) as error:
        load_task("countdown", **options)
    assert message in str(error.value)


def test_int_is_accepted_for_float() -> None:
    assert load_task("countdown", format_reward=0).options.format_reward == 0.0


def test_gsm8k_bad_option_values() -> None:
    with pytest.raises(RlinoError, match="option 'fallback' must be one of last_number, none, got 'first'"):
        load_task("gsm8k", fallback="first")
    with pytest.raises(RlinoError, match="option 'train_size' must be int, got 1.5 \\(float\\)"):
        load_task("gsm8k", train_size=1.5)


def test_build_options_handles_lists_and_optionals() -> None:
    @dataclass(frozen=True)
    class Options:
        names: list[str] = field(default_factory=list)
        limit: int | None = None
        rate: float = 1.0
        flag: bool = False

    built = build_options(Options, {"names": ("a", "b"), "limit": None, "rate": 2, "flag": True}, "demo")
    assert built == Options(names=["a", "b"], limit=None, rate=2.0, flag=True)
    with pytest.raises(RlinoError, match=r"option 'names' must be list\[str\], got \['a', 1\] \(list\)"):
        build_options(Options, {"names": ["a", 1]}, "demo")
    with pytest.raises(RlinoError, match=r"option 'limit' must be int \| None, got '5' \(str\)"):
        build_options(Options, {"limit": "5"}, "demo")
    with pytest.raises(RlinoError, match=r"option 'flag' must be bool, got 1 \(int\)"):
        build_options(Options, {"flag": 1}, "demo")


@pytest.mark.parametrize("name", ["countdown", "gsm8k"])
def test_bad_split(name: str) -> None:
    task = load_task(name, source="reasoning-gym") if name == "gsm8k" else load_task(name)
    with pytest.raises(RlinoError, match=f"task '{name}': unknown split 'validation'; use 'train' or 'test'"):
        task.items("validation")


def test_empty_split() -> None:
    with pytest.raises(RlinoError, match="the test split is empty \\(source 'generate', test_size=0\\)"):
        load_task("countdown", test_size=0, train_size=10).items("test")


# A model's \boxed{} answer, the gold number, and whether rlino's GSM8K rule counts it correct. Math-Verify is the
# independent oracle: rlino agrees with it on every row except the two marked, where rlino is the more lenient
# (Math-Verify 0.9 rejects a thin space before the percent sign and a full stop inside the box).
BOXED = [
    ("42", "42", True), ("42 \\text{ apples}", "42", True), ("42\\text{ apples}", "42", True),
    ("42 apples", "42", True), ("x = 42", "42", True), ("x=42", "42", True), ("\\$42", "42", True),
    ("\\$42.00", "42", True), ("42\\%", "42", True), ("1{,}000", "1000", True), ("1,000", "1000", True),
    ("1,000,000", "1000000", True), ("\\frac{84}{2}", "42", True), ("\\dfrac{84}{2}", "42", True),
    ("\\textbf{42}", "42", True), ("\\text{42}", "42", True), ("-7", "-7", True), ("90^\\circ", "90", True),
    ("18 \\text{ dollars}", "18", True), ("\\$18 \\text{ per hour}", "18", True), ("x = 42 \\text{ cm}", "42", True),
    ("2.5", "2.5", True), ("\\frac{5}{2}", "2.5", True),
    ("42 + 1", "42", False), ("43", "42", False), ("4 2", "42", False), ("x = 4, y = 2", "4", False),
    ("41.99", "42", False), ("\\frac{83}{2}", "42", False), ("42 \\text{ apples}", "43", False), ("420", "42", False),
    ("-42", "42", False),
]
LENIENT = [("42\\,\\%", "42", True), ("42.", "42", True)]


@pytest.mark.parametrize("content,gold,correct", BOXED + LENIENT)
def test_gsm8k_reads_the_number_models_box_as_math_verify_does(content, gold, correct):
    from math_verify import parse, verify

    from rlino.tasks.gsm8k import Gsm8kItem, gsm8k

    task = gsm8k(source="reasoning_gym", train_size=1, test_size=1)
    completion = f"Adding them up, the answer is \\boxed{{{content}}}."
    assert task.score(completion, Gsm8kItem("q", gold, "q", "u")) == float(correct)
    if (content, gold, correct) not in LENIENT:
        assert verify(parse(f"${gold}$"), parse(completion)) == correct  # the oracle agrees


# Endings of SmolLM2-135M-Instruct's real greedy responses to GSM8K test problems (experiments/gsm8k_graders.py), where
# rlino's grader once read another number than Math-Verify: an empty \boxed{} copied from the prompt taken as the
# answer (so the number stated before it was lost), and "1/24" read as its denominator 24.
REAL_ENDINGS = [
    ("So, 24 inches + 24 inches = 48 inches.\n\nSo, the answer is 48.\n\nThe final answer is within \\boxed{}.", "48"),
    ("So, there are 40 apples + 120 apples = 240 apples in total.\n\nThe answer is 240.\n\n"
     "The final answer is within \\boxed{}.", "240"),
    ("To put this into your final answer within \\boxed{}, we need to add the amount John spent.\n\n"
     "So, the answer is 100.", "100"),
    ("So, the water they got is 1/24 of the number of liters", "24"),
    ("So, the water they got is 1/24 of the number of liters", "1/24"),
]


@pytest.mark.parametrize("completion,gold", REAL_ENDINGS)
def test_gsm8k_reads_real_model_endings_as_math_verify_does(completion, gold):
    from math_verify import parse, verify

    from rlino.tasks.gsm8k import Gsm8kItem, gsm8k

    task = gsm8k(source="reasoning_gym", train_size=1, test_size=1)
    expected = float(verify(parse(f"${gold}$"), parse(completion)))
    assert task.score(completion, Gsm8kItem("q", gold, "q", "u")) == expected
