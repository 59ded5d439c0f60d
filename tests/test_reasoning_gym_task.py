"""The reasoning_gym task: any reasoning-gym dataset by name, its splits, its 0/1 reward and its errors.

The oracle of correctness is computed here from the question text (chain_sum: a regex and int arithmetic), not
taken from the task; reasoning-gym's own raw score is asserted where a case must reach its partial credit.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from rlino.config import load_config, save_config
from rlino.errors import RlinoError
from rlino.tasks import GymItem, Task, load_task
from rlino.tasks.gym import EVAL_FOR_PARTIAL_CREDIT, MAX_ANSWER_CHARS, REFUSED, extract_answer

ONE_DIGIT_PAIRS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}  # ~200 distinct questions


def chain_sum(**options: object) -> Task:
    options = {"dataset": "chain_sum", "train_size": 40, "test_size": 20, **options}
    return load_task("reasoning_gym", **options)


def true_sum(question: str) -> int:
    """The value of a chain_sum question ("... problem: 12 - 3 + 40 =") by its own arithmetic."""
    match = re.fullmatch(r"State the final answer to the following arithmetic problem: (.*) =", question)
    assert match, question
    terms = re.findall(r"([+-]) (\d+)", "+ " + match.group(1))
    assert " ".join(f"{sign} {digits}" for sign, digits in terms) == "+ " + match.group(1)
    return sum(int(digits) if sign == "+" else -int(digits) for sign, digits in terms)


def questions(task: Task, split: str) -> list[str]:
    return [item.question for item in task.items(split)]


# --- the reward ----------------------------------------------------------------------------------------------------


def test_chain_sum_scores_the_true_sum_1_and_any_other_number_0() -> None:
    task = chain_sum()
    for item in task.items("train") + task.items("test"):
        total = true_sum(item.question)
        assert item.answer == str(total)
        assert task.score(f"So the total is <answer>{total}</answer>.", item) == 1.0
        assert task.score(f"<answer>{total + 1}</answer>", item) == 0.0
        assert task.score(f"<answer>{total - 10}</answer>", item) == 0.0


@pytest.mark.parametrize("dataset,wrong", [("chain_sum", "{gold} apples"), ("chain_sum", "{gold}1"),
                                           ("gsm_symbolic", "{plus_one}")])
def test_partial_credit_scores_0(dataset: str, wrong: str) -> None:
    """reasoning-gym gives these wrong answers partial credit; the task's reward is 0."""
    task = load_task("reasoning_gym", dataset=dataset, train_size=10, test_size=0)
    for item in task.items("train"):
        answer = wrong.format(gold=item.answer, plus_one=int(item.answer) + 1)
        assert 0.0 < task.raw_score(answer, item) < 1.0, (answer, item.answer)
        assert task.score(f"<answer>{answer}</answer>", item) == 0.0
        assert task.score(f"<answer>{item.answer}</answer>", item) == 1.0


def test_the_last_answer_pair_wins() -> None:
    task = chain_sum()
    item = task.items("train")[0]
    right, wrong = true_sum(item.question), true_sum(item.question) + 3
    assert task.score(f"<answer>{wrong}</answer> no, wait: <answer>{right}</answer>", item) == 1.0
    assert task.score(f"<answer>{right}</answer> no, wait: <answer>{wrong}</answer>", item) == 0.0
    assert task.score(f"<answer>{wrong} <answer> {right}\n</answer>", item) == 1.0  # last opening before the close
    assert task.score(f"<answer>{right}</answer> then <answer>{wrong}", item) == 1.0  # an unclosed tag is no pair
    assert extract_answer("<answer> a </answer><answer>\n b c \n</answer>") == "b c"


def test_no_answer_tags_score_0() -> None:
    task = chain_sum()
    item = task.items("train")[0]
    right = str(true_sum(item.question))
    assert task.raw_score(right, item) == 1.0  # the bare number is right; only the missing tags make it 0
    for completion in (right, f"The answer is {right}.", f"<answer>{right}", f"{right}</answer>",
                       f"</answer>{right}<answer>", f"<Answer>{right}</Answer>", ""):
        assert task.score(completion, item) == 0.0, completion


def test_a_huge_answer_scores_0_fast_without_the_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    task = chain_sum()
    item = task.items("train")[0]
    right = str(true_sum(item.question))
    scorer = task._dataset("train")
    calls = []
    real = scorer.score_answer
    monkeypatch.setattr(scorer, "score_answer", lambda answer, entry: calls.append(answer) or real(answer, entry))
    assert task.score(f"<answer>{right}{' ' * MAX_ANSWER_CHARS}</answer>", item) == 1.0  # stripped: short
    assert task.score(f"<answer>{'1' * (MAX_ANSWER_CHARS + 1)}</answer>", item) == 0.0
    start = time.perf_counter()
    assert task.score("<answer>" * 200_000 + "9" * 2_000_000 + "</answer>", item) == 0.0
    assert task.score("<answer>" * 500_000, item) == 0.0
    assert time.perf_counter() - start < 1.0
    assert calls == [right]


def test_a_gold_answer_longer_than_the_cap_still_scores_1() -> None:
    """The cap is twice the gold answer's length where that is longer (Tower of Hanoi's move lists are)."""
    task = load_task("reasoning_gym", dataset="tower_of_hanoi", train_size=30, test_size=0)
    long = [item for item in task.items("train") if len(item.answer) > MAX_ANSWER_CHARS]
    assert long
    for item in long[:3]:
        assert task.score(f"<answer>{item.answer}</answer>", item) == 1.0
        assert task.score(f"<answer>{item.answer}\n{item.answer}\n{item.answer}</answer>", item) == 0.0


def test_a_scorer_that_raises_on_odd_text_scores_0() -> None:
    task = load_task("reasoning_gym", dataset="prime_factorization", train_size=5, test_size=0)
    item = task.items("train")[0]
    with pytest.raises(ValueError):  # reasoning-gym's own scorer raises on this answer
        task._dataset("train").score_answer("x × y", item.entry)
    assert task.score("<answer>x × y</answer>", item) == 0.0
    assert task.score(f"<answer>{item.answer}</answer>", item) == 1.0


@pytest.mark.parametrize("dataset", EVAL_FOR_PARTIAL_CREDIT)
def test_no_scorer_evals_a_model_answer(dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """These scorers call Python's eval on an answer that is not the gold text; the task disarms it."""
    monkeypatch.delenv("RLINO_GYM_EVALED", raising=False)
    task = load_task("reasoning_gym", dataset=dataset, train_size=3, test_size=0)
    payload = "__import__('os').environ.__setitem__('RLINO_GYM_EVALED', '1') or [[1]]"
    for item in task.items("train"):
        assert task.score(f"<answer>{item.answer}</answer>", item) == 1.0
        assert task.score(f"<answer>{payload}</answer>", item) == 0.0
        assert task.raw_score(payload, item) == 0.0
    assert "RLINO_GYM_EVALED" not in os.environ


def test_refused_datasets_still_deserve_it() -> None:
    """reasoning-gym's scorers give these wrong answers full marks (if an update fixes one, this test says so)."""
    import reasoning_gym

    halting = reasoning_gym.create_dataset("game_of_life_halting", size=4, seed=1)
    assert all(halting.score_answer("no idea", halting[i]) == 1.0 for i in range(4))
    coins = reasoning_gym.create_dataset("coin_flip", size=20, seed=1)
    below_one = [coins[i] for i in range(20) if coins[i]["answer"].startswith("0.")]
    assert below_one and all(coins.score_answer("0", entry) == 1.0 for entry in below_one)
    spelled = reasoning_gym.create_dataset("spell_backward", size=20, seed=1)
    assert sum(spelled.score_answer(spelled[i]["answer"] + "x", spelled[i]) >= 1 - 1e-9 for i in range(20)) >= 5


# --- the splits ----------------------------------------------------------------------------------------------------


def test_train_and_test_share_no_question_and_test_has_no_repeat() -> None:
    task = chain_sum(dataset_options=ONE_DIGIT_PAIRS, train_size=150, test_size=150)
    train, test = questions(task, "train"), questions(task, "test")
    assert len(train) == 150
    assert 0 < len(test) < 150  # the one-digit generator repeats itself: drops happened
    assert not set(train) & set(test)
    assert len(set(test)) == len(test)
    assert all(item.uid.startswith("reasoning_gym-chain_sum-test-") for item in task.items("test"))


def test_a_test_split_left_empty_by_drops_says_why() -> None:
    task = chain_sum(dataset_options=ONE_DIGIT_PAIRS, train_size=2000, test_size=20)  # train has all ~200
    with pytest.raises(RlinoError, match="all 20 test questions .* are train questions or repeats.*lower train_size"):
        task.items("test")
    with pytest.raises(RlinoError, match="the test split is empty \\(test_size=0\\)"):
        chain_sum(test_size=0).items("test")


def test_same_seed_same_items_other_seed_other_items() -> None:
    first, again, other = chain_sum(seed=3), chain_sum(seed=3), chain_sum(seed=4)
    for split in ("train", "test"):
        assert first.items(split) == again.items(split)
        assert [item.entry for item in first.items(split)] == [item.entry for item in again.items(split)]
        shared = set(questions(first, split)) & set(questions(other, split))
        assert len(shared) <= 2  # reasoning-gym seeds s and s + 1 alone would give one stream shifted by an item
    uids = [item.uid for item in first.items("train")]
    assert uids[:2] == ["reasoning_gym-chain_sum-train-0", "reasoning_gym-chain_sum-train-1"]
    assert len(set(uids)) == len(uids) and len(set(first.items("train"))) == len(uids)  # items hash


def test_items_are_cached_copies_and_prompts_use_the_template() -> None:
    task = chain_sum(prompt_template="Q: {question}\nA:")
    items = task.items("train")
    items.clear()
    assert len(task.items("train")) == 40
    item = task.items("train")[0]
    assert isinstance(item, GymItem) and item.prompt == f"Q: {item.question}\nA:"
    default = chain_sum().items("train")[0].prompt
    assert default.startswith(item.question + "\n") and "<answer></answer>" in default


def test_a_fresh_task_scores_items_it_never_generated() -> None:
    item = chain_sum().items("test")[0]
    assert chain_sum(seed=9).score(f"<answer>{true_sum(item.question)}</answer>", item) == 1.0


# --- building it ---------------------------------------------------------------------------------------------------


def test_load_task_basic_arithmetic_with_default_sizes() -> None:
    task = load_task("reasoning_gym", dataset="basic_arithmetic")
    assert isinstance(task, Task) and task.name == "reasoning_gym"
    train, test = task.items("train"), task.items("test")
    assert len(train) == 2000 and 0 < len(test) <= 500
    assert task.score(f"<answer>{train[0].answer}</answer>", train[0]) == 1.0


def test_dataset_options_reach_the_generator_and_lists_become_tuples() -> None:
    for item in chain_sum(dataset_options={"min_terms": 4, "max_terms": 4}).items("train"):
        assert len(re.findall(r"\d+", item.question)) == 4
    task = load_task("reasoning_gym", dataset="basic_arithmetic", dataset_options={"operators": ["+"]},
                     train_size=20, test_size=0)
    assert task._dataset("train").config.operators == ("+",)
    assert all(not re.search(r"[-*/]\s", item.question) for item in task.items("train"))


@pytest.mark.parametrize("options,message", [
    ({}, "task 'reasoning_gym' option 'dataset' is required"),
    ({"dataset": "chain_sums"}, "reasoning-gym has no dataset 'chain_sums' \\(did you mean 'chain_sum'\\?\\); its"),
    ({"dataset": "zzzz"}, "has no dataset 'zzzz'; its 1\\d\\d dataset names are the keys of reasoning_gym.factory"),
    ({"dataset": "chain_sum", "dataset_options": {"max_term": 3}},
     "dataset 'chain_sum' has no option 'max_term' \\(did you mean 'max_terms'\\?\\); its options: min_terms, "
     "max_terms"),
    ({"dataset": "chain_sum", "dataset_options": {"min_terms": 3, "max_terms": 2}},
     "dataset 'chain_sum' rejects min_terms=3, max_terms=2: max_terms must be >= min_terms"),
    ({"dataset": "chain_sum", "dataset_options": {"min_digits": 0}},
     "dataset 'chain_sum' rejects min_digits=0: min_digits must be positive"),
    ({"dataset": "chain_sum", "dataset_options": {"max_terms": "3"}},
     "dataset 'chain_sum' option 'max_terms' must be int, got '3' \\(str\\)"),
    ({"dataset": "chain_sum", "dataset_options": {"seed": 1}}, "dataset_options cannot set 'seed'; set the task's"),
    ({"dataset": "chain_sum", "dataset_options": {"size": 9}}, "cannot set 'size'; set the task's train_size and"),
    ({"dataset": "chain_sum", "dataset_options": 3}, "option 'dataset_options' must be dict"),
    ({"dataset": "chain_sum", "train_size": 0}, "option 'train_size' must be >= 1"),
    ({"dataset": "chain_sum", "prompt_template": "Solve."}, "option 'prompt_template' must contain \\{question\\}"),
    ({"dataset": "chain_sum", "datset": "x"}, "has no option 'datset' \\(did you mean 'dataset'\\?\\)"),
    ({"dataset": "countdown"}, "dataset 'countdown' is not supported: use rlino's own 'countdown' task"),
    ({"dataset": "game_of_life_halting"}, "not supported: its scorer gives full marks to any non-empty answer"),
    ({"dataset": "simple_integration"}, "not supported: its scorer runs sympy's parse_expr, which calls Python's eval"),
])
def test_mistakes_are_rlino_errors_with_hints(options: dict, message: str) -> None:
    with pytest.raises(RlinoError, match=message):
        load_task("reasoning_gym", **options)


def test_a_generator_that_fails_is_an_rlino_error_naming_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """reasoning-gym's boxnet, for one, raises TypeError for some seeds; the error names dataset, split and item."""
    task = chain_sum()

    class Broken:
        def __getitem__(self, index: int) -> dict:
            raise TypeError("'int' object is not iterable")

    monkeypatch.setattr(task, "_dataset", lambda split: Broken())
    with pytest.raises(RlinoError, match="failed to generate train item 0 of dataset 'chain_sum' \\(TypeError: 'int"):
        task.items("train")


def test_every_refusal_is_a_registered_dataset() -> None:
    from reasoning_gym.factory import DATASETS

    assert set(REFUSED) <= set(DATASETS) and set(EVAL_FOR_PARTIAL_CREDIT) <= set(DATASETS)


def test_a_config_file_with_a_dataset_options_table_and_a_set_override(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[task]\nname = "reasoning_gym"\n\n[task.options]\ndataset = "chain_sum"\ntrain_size = 30\ntest_size = 10\n'
        "\n[task.options.dataset_options]\nmin_terms = 2\nmax_terms = 2\nmin_digits = 1\nmax_digits = 1\n"
    )
    cfg = load_config(path, ["task.options.dataset_options.max_terms=3", "task.options.dataset_options.min_terms=3"])
    assert cfg.task.options["dataset_options"] == {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}
    task = load_task(cfg.task.name, **cfg.task.options)
    for item in task.items("train"):
        assert len(re.findall(r"\d+", item.question)) == 3 and max(map(int, re.findall(r"\d+", item.question))) < 10
    save_config(cfg, tmp_path / "saved.toml")  # what a run folder keeps loads back the same
    assert load_config(tmp_path / "saved.toml").task.options == cfg.task.options


@pytest.mark.parametrize("answer_format,expected", [
    # completions: bare arithmetic, tags then a later number, a box, a thousands comma and a float, no answer
    ("tags", [0, 1, 0, 0, 0]),
    ("tags-or-last-number", [1, 1, 1, 1, 0]),
    ("last-number", [1, 0, 1, 1, 0]),
    ("boxed", [0, 0, 1, 0, 0]),
])
def test_answer_formats_read_where_the_model_writes(answer_format: str, expected: list[int]) -> None:
    """Models that never write <answer> tags (SmolLM2-135M-Instruct writes "1 + 8 = 9") are scored by the last
    number or box when asked; the gold answer is the question's own sum (the oracle), never the task's."""
    task = chain_sum(answer_format=answer_format, dataset_options={"min_terms": 2, "max_terms": 2, "min_digits": 3,
                                                                    "max_digits": 3})
    item = next(i for i in task.items("train") if true_sum(i.question) >= 1000)
    gold = true_sum(item.question)
    completions = [f"{item.question} {gold}", f"<answer>{gold}</answer> and then {gold + 1}",
                   f"The total is \\boxed{{{gold}}}.", f"Total: {gold:,}.0", "I cannot say."]
    assert [task.score(c, item) for c in completions] == expected
    with pytest.raises(RlinoError, match="answer_format' must be one of .*did you mean 'boxed'"):
        chain_sum(answer_format="boxd")
