"""Tables of tricky and hostile completions for the countdown and gsm8k verifiers."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest

from rlino.tasks import load_task
from rlino.tasks.answers import format_number, last_boxed, last_number, parse_number
from rlino.tasks.countdown import CountdownItem
from rlino.tasks.expression import ParseError, parse_expression
from rlino.tasks.gsm8k import Gsm8kItem, gold_answer

BIG = 100_000
# Hostile completions are scored in a subprocess under this limit, so a verifier that slows down catastrophically (an
# eval, a backtracking regex, a quadratic scan over 100 kB) fails the test instead of hanging the suite. It is no
# speed check: scoring every hostile case normally takes well under a second (benchmarks are the place for speed).
HANG_GUARD_S = 60


def countdown_item(numbers: tuple[int, ...], target: int) -> CountdownItem:
    return CountdownItem(numbers=numbers, target=target, prompt="p", uid="countdown-test-0")


A = "<answer>{}</answer>".format
N357 = ((3, 5, 7), 22)  # 3 * 5 + 7 = 22

COUNTDOWN_CASES = [
    ("plain", A("3*5+7"), N357, 1.0),
    ("spaces and parentheses", A(" ( 3 * 5 ) + 7 "), N357, 1.0),
    ("other order", A("7 + 5 * 3"), N357, 1.0),
    ("times sign", A("3 × 5 + 7"), N357, 1.0),
    ("divide and times signs", A("6 ÷ 4 × 2"), ((6, 4, 2), 3), 1.0),
    ("newlines inside", A("\n3*5\n+7\n"), N357, 1.0),
    ("think block first", "<think>3+5+7=15, no</think> " + A("3*5+7"), N357, 1.0),
    ("last answer wins (right)", A("3+5+7") + " wait " + A("3*5+7"), N357, 1.0),
    ("last answer wins (wrong)", A("3*5+7") + " wait " + A("3+5+7"), N357, 0.0),
    ("later unclosed answer ignored", A("3*5+7") + " <answer>3+5", N357, 1.0),
    ("missing closing tag", "<answer>3*5+7", N357, 0.0),
    ("broken closing tag", "<answer>3*5+7</answer", N357, 0.0),
    ("no tags", "3*5+7", N357, 0.0),
    ("wrong value", A("3+5+7"), N357, 0.0),
    ("number used twice", A("3*5+7+7-7"), N357, 0.0),
    ("number missing", A("3*5"), ((3, 5, 7), 15), 0.0),
    ("unlisted number", A("3*5+7+0"), N357, 0.0),
    ("duplicate numbers used once each", A("(5+5)*7"), ((5, 5, 7), 70), 1.0),
    ("division by zero", A("7+5/(5-5)"), ((5, 5, 7), 7), 0.0),
    ("exact non-integer intermediate", A("6/4*2"), ((6, 4, 2), 3), 1.0),
    ("non-integer result", A("7/(3+5)"), ((3, 5, 7), 1), 0.0),
    ("decimal literal", A("3*5+7.0"), N357, 0.0),
    ("caret", A("3^2+5+7"), N357, 0.0),
    ("code block", A("```python\nprint(3*5+7)\n```"), N357, 0.0),
    ("11-digit literal", A("3*5+7+00000000000"), N357, 0.0),
    ("40 nested parentheses", A("(" * 40 + "3*5+7" + ")" * 40), N357, 1.0),
    ("60 nested parentheses", A("(" * 60 + "3*5+7" + ")" * 60), N357, 0.0),
    ("unary minus", A("-7+3*5"), ((3, 5, 7), 8), 0.0),
    ("unary plus", A("+3*5+7"), N357, 0.0),
    ("equals target", A("3*5+7 = 22"), N357, 1.0),
    ("equals wrong number", A("3*5+7 = 23"), N357, 0.0),
    ("equals twice", A("3*5+7 = 22 = 22"), N357, 0.0),
    ("equals nothing", A("3*5+7 ="), N357, 0.0),
    ("target on the left", A("22 = 3*5+7"), N357, 0.0),
    ("empty answer", A(""), N357, 0.0),
    ("blank answer", A("   "), N357, 0.0),
    ("unbalanced parenthesis", A("(3*5)+7)"), N357, 0.0),
    ("juxtaposed numbers", A("3 5 + 7"), N357, 0.0),
    ("trailing operator", A("3*5+7+"), N357, 0.0),
    ("over 200 characters", A("3*5+7" + " " * 200), N357, 0.0),
]

# Scored only in a subprocess, by test_hostile_completions_get_their_score_without_hanging.
COUNTDOWN_HOSTILE = [
    ("power", A("9**9**9"), ((9, 9, 9), 1), 0.0),
    ("python code", A("__import__('os').system('x')"), N357, 0.0),
    ("10,000-digit number", A("9" * 10_000), N357, 0.0),
    ("100 kB of text first", "x" * BIG + A("3*5+7"), N357, 1.0),
    ("100 kB of nested parentheses", A("(" * (BIG // 2) + "3*5+7" + ")" * (BIG // 2)), N357, 0.0),
    ("100 kB of opening tags", "<answer>" * (BIG // 8), N357, 0.0),
    ("100 kB of closing tags", "</answer>" * (BIG // 9), N357, 0.0),
]


@pytest.mark.parametrize(
    ("completion", "problem", "expected"),
    [case[1:] for case in COUNTDOWN_CASES],
    ids=[case[0] for case in COUNTDOWN_CASES],
)
def test_countdown_verifier(completion: str, problem: tuple[tuple[int, ...], int], expected: float) -> None:
    """The countdown verifier gives each tricky completion its expected score."""
    task = load_task("countdown")
    assert task.score(completion, countdown_item(*problem)) == expected


def test_countdown_format_reward() -> None:
    task = load_task("countdown", format_reward=0.1)
    item = countdown_item(*N357)
    assert task.score(A("3*5+7"), item) == 1.0
    assert task.score(A("3+5+7"), item) == 0.1  # well-formed, wrong value
    assert task.score(A("3*5+7+7-7"), item) == 0.1  # well-formed, wrong numbers
    assert task.score(A("3*5+7 = 23"), item) == 0.1
    assert task.score(A("3*5+x"), item) == 0.0  # not an expression
    assert task.score("3*5+7", item) == 0.0  # no answer at all
    assert task.score(A("7+5/(5-5)"), item) == 0.0  # divides by zero


def test_countdown_respects_allowed_operators() -> None:
    task = load_task("countdown", operators="+-")
    assert task.score(A("3*5+7"), countdown_item(*N357)) == 0.0
    assert task.score(A("3+5+7"), countdown_item((3, 5, 7), 15)) == 1.0


G = Gsm8kItem
GSM8K_CASES = [
    ("boxed", "so the answer is \\boxed{18}.", "18", "last_number", 1.0),
    ("boxed with spaces", "\\boxed{ 18 }", "18", "none", 1.0),
    ("boxed dollars", "$\\boxed{\\$18}$", "18", "none", 1.0),
    ("boxed wrong", "\\boxed{17}", "18", "last_number", 0.0),
    ("last boxed wins (right)", "\\boxed{17} no, \\boxed{18}", "18", "none", 1.0),
    ("last boxed wins (wrong)", "\\boxed{18} no, \\boxed{17}", "18", "none", 0.0),
    ("boxed beats later number", "\\boxed{18} since 3 * 6 = 18 and 2", "18", "last_number", 1.0),
    ("nested boxed frac", "\\boxed{\\frac{1}{2}}", "0.5", "none", 1.0),
    ("boxed dfrac", "\\boxed{\\dfrac{3}{4}}", "0.75", "none", 1.0),
    ("boxed slash", "\\boxed{1/2}", "0.5", "none", 1.0),
    ("negative frac", "\\boxed{-\\frac{1}{2}}", "-0.5", "none", 1.0),
    ("boxed 0.50", "\\boxed{0.50}", "0.5", "none", 1.0),
    ("5.0 equals 5", "\\boxed{5.0}", "5", "none", 1.0),
    ("5 equals 5.0 gold", "\\boxed{5}", "5", "none", 1.0),
    ("boxed percent", "\\boxed{25\\%}", "25", "none", 1.0),
    ("boxed thin space", "\\boxed{1\\,234}", "1234", "none", 1.0),
    ("boxed negative", "\\boxed{-3}", "-3", "none", 1.0),
    ("boxed text is not a number", "\\boxed{x + 1}", "18", "last_number", 0.0),
    ("boxed empty", "\\boxed{}", "18", "none", 0.0),
    ("scientific notation", "\\boxed{1.8e1}", "18", "none", 0.0),
    ("unicode digits", "\\boxed{١٨}", "18", "none", 0.0),
    ("#### with commas", "work...\n#### 1,234", "1234", "none", 1.0),
    ("#### with words", "#### 18 dollars\n", "18", "none", 1.0),
    ("#### wrong", "#### 17", "18", "last_number", 0.0),
    ("dollars with cents", "\\boxed{\\$1,234.00}", "1234", "none", 1.0),
    ("dollars with cents fallback", "She pays $1,234.00.", "1234", "last_number", 1.0),
    ("bad comma grouping", "\\boxed{12,34}", "1234", "none", 0.0),
    ("fallback on", "The answer is 18.", "18", "last_number", 1.0),
    ("fallback off", "The answer is 18.", "18", "none", 0.0),
    ("fallback takes the last number", "I think 18 apples, not 17", "18", "last_number", 0.0),
    ("fallback negative", "so x = -3.", "-3", "last_number", 1.0),
    ("fallback minus is not a sign", "5-3", "3", "last_number", 1.0),
    ("fallback list", "the values are 1,2,3", "3", "last_number", 1.0),
    ("no number at all", "I do not know.", "18", "last_number", 0.0),
    ("51-character number", "\\boxed{" + "1" * 51 + "}", "1" * 51, "none", 0.0),
    ("unbalanced braces, no fallback", "\\boxed{18", "18", "none", 0.0),
    ("unbalanced braces, fallback", "\\boxed{{18}", "18", "last_number", 1.0),
]

# Scored only in a subprocess, by test_hostile_completions_get_their_score_without_hanging.
GSM8K_HOSTILE = [
    ("10,000-digit boxed", "\\boxed{" + "1" * 10_000 + "}", "18", "last_number", 0.0),
    ("10,000-digit after ####", "#### " + "9" * 10_000, "18", "last_number", 0.0),
    ("10,000-digit fallback", "1" * 10_000, "18", "last_number", 0.0),
    ("100 kB of text first", "x " * (BIG // 2) + "\\boxed{18}", "18", "none", 1.0),
    ("100 kB of digits and spaces", "1 " * (BIG // 2), "18", "last_number", 0.0),
    ("100 kB without digits", "x" * BIG, "18", "last_number", 0.0),
    ("100 kB of #### markers", "####" * (BIG // 4), "18", "last_number", 0.0),
    ("100 kB of open braces", "\\boxed{" + "{" * BIG, "18", "last_number", 0.0),
    ("100 kB of boxed", "\\boxed{" * (BIG // 7), "18", "last_number", 0.0),
    ("100 kB of nested braces", "\\boxed{" + "{" * BIG + "18" + "}" * BIG + "}", "18", "none", 0.0),
    ("100 kB of empty boxes after an answer", "\\boxed{18}" + "\\boxed{}" * (BIG // 8), "18", "none", 0.0),
    ("100 kB of 1/ runs", "1/" * (BIG // 2) + "18", "18", "last_number", 0.0),
]


@pytest.mark.parametrize(
    ("completion", "gold", "fallback", "expected"),
    [case[1:] for case in GSM8K_CASES],
    ids=[case[0] for case in GSM8K_CASES],
)
def test_gsm8k_verifier(completion: str, gold: str, fallback: str, expected: float) -> None:
    """The gsm8k verifier gives each tricky completion its expected score."""
    task = load_task("gsm8k", fallback=fallback)
    item = G(question="q", answer=gold, prompt="q", uid="gsm8k-test-0")
    assert task.score(completion, item) == expected


SCORE_IN_SUBPROCESS = """
import json, sys
from rlino.tasks import load_task
from rlino.tasks.countdown import CountdownItem
from rlino.tasks.gsm8k import Gsm8kItem

scores = {}
for case in json.load(sys.stdin):
    if case["task"] == "countdown":
        task = load_task("countdown")
        item = CountdownItem(numbers=tuple(case["numbers"]), target=case["target"], prompt="p", uid="countdown-test-0")
    else:
        task = load_task("gsm8k", fallback=case["fallback"])
        item = Gsm8kItem(question="q", answer=case["gold"], prompt="q", uid="gsm8k-test-0")
    scores[case["id"]] = task.score(case["completion"], item)
json.dump(scores, sys.stdout)
"""


def test_hostile_completions_get_their_score_without_hanging() -> None:
    """Huge, deeply nested or code-like completions get their expected score (mostly 0) and scoring them terminates."""
    cases = [{"task": "countdown", "id": f"countdown: {name}", "completion": completion, "numbers": list(numbers),
              "target": target} for name, completion, (numbers, target), _ in COUNTDOWN_HOSTILE]
    cases += [{"task": "gsm8k", "id": f"gsm8k: {name}", "completion": completion, "gold": gold, "fallback": fallback}
              for name, completion, gold, fallback, _ in GSM8K_HOSTILE]
    expected = {f"countdown: {case[0]}": case[-1] for case in COUNTDOWN_HOSTILE}
    expected |= {f"gsm8k: {case[0]}": case[-1] for case in GSM8K_HOSTILE}
    done = subprocess.run([sys.executable, "-c", SCORE_IN_SUBPROCESS], input=json.dumps(cases), text=True,
                          capture_output=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == expected


PARSE_OK = [
    ("3*5+7", Fraction(22), [3, 5, 7]),
    ("7 + 5 * 3", Fraction(22), [7, 5, 3]),
    ("(7 + 5) * 3", Fraction(36), [7, 5, 3]),
    ("10 - 4 - 3", Fraction(3), [10, 4, 3]),
    ("8 / 4 / 2", Fraction(1), [8, 4, 2]),
    ("1/3", Fraction(1, 3), [1, 3]),
    ("6 ÷ 4 × 2", Fraction(3), [6, 4, 2]),
    ("((((1))))", Fraction(1), [1]),
    ("0", Fraction(0), [0]),
    ("007", Fraction(7), [7]),
    ("9999999999", Fraction(9_999_999_999), [9_999_999_999]),
]


@pytest.mark.parametrize(("text", "value", "literals"), PARSE_OK)
def test_parse_expression_values(text: str, value: Fraction, literals: list[int]) -> None:
    assert parse_expression(text) == (value, literals)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "3+", "*3", "(3", "3)", "()", "-3", "+3", "3--3", "3**2", "2^3", "1/0", "1/(2-2)",
     "3.5", "a", "3 4", "x*2", "١", "12345678901", "(" * 51 + "1" + ")" * 51, "1+" * 100 + "1"],
)
def test_parse_expression_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parse_expression(text)


def test_parse_expression_depth_limit_is_inclusive() -> None:
    assert parse_expression("(" * 50 + "1" + ")" * 50) == (Fraction(1), [1])


def test_parse_expression_operator_subset() -> None:
    assert parse_expression("3+5-7", operators="+-")[0] == 1
    with pytest.raises(ParseError):
        parse_expression("3*5", operators="+-")
    with pytest.raises(ParseError):
        parse_expression("3×5", operators="+-")


@pytest.mark.parametrize(
    ("text", "value"),
    [("18", 18), (" 18. ", 18), ("1,234", 1234), ("$1,234.00", 1234), ("-3", -3), ("2.50", Fraction(5, 2)),
     (".5", Fraction(1, 2)), ("\\frac{1}{3}", Fraction(1, 3)), ("\\dfrac{3}{4}", Fraction(3, 4)),
     ("-1/4", Fraction(-1, 4)), ("50%", 50), ("12,34", None), ("1/0", None), ("\\frac{1}{0}", None),
     ("abc", None), ("", None), ("1e5", None), ("1" * 51, None), ("1" * 50, int("1" * 50)), ("--3", None)],
)
def test_parse_number(text: str, value: Fraction | int | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [(Fraction(1234), "1234"), (Fraction(-3), "-3"), (Fraction(5, 2), "2.5"), (Fraction(-1, 8), "-0.125"),
     (Fraction(1, 20), "0.05"), (Fraction(1, 3), "1/3"), (Fraction(0), "0")],
)
def test_format_number(value: Fraction, text: str) -> None:
    assert format_number(value) == text
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "7"), ("#### 1,000", "1000"), ("28080", "28080"),
     ("9281.25", "9281.25"), ("#### -2", "-2"), ("no number here", None), ("#### ", None)],
)
def test_gold_answer(answer: str, gold: str | None) -> None:
    assert gold_answer(answer) == gold


def test_last_boxed_and_last_number() -> None:
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\boxed {x{y}z}") == "x{y}z"
    assert last_boxed("\\boxed{1") is None
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{18} then \\boxed{} and \\boxed{  }") == "18"  # an empty box is no answer
    assert last_boxed("\\boxed{18}" + "\\boxed{}" * 8) is None  # at most MAX_BOXES boxes are tried
    assert last_number("it is 1/24 of it") == "1/24" and last_number("so -3/4 left") == "-3/4"
    assert last_number("a/24") == "24" and last_number("5-3/4") == "3/4"
    assert last_number("a 1 b 22,000.5 c") == "22,000.5"
    assert last_number("no digits") is None
