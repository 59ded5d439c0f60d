"""The math task: MATH-style items from files, the hub or the built-in set, graded by Math-Verify in a worker
process whose time limit holds in any thread (rlino.tasks.symbolic).

All tests share the module's one worker process (its start costs about a second); a test that makes it time out
also makes it restart, and waits for the replacement (`warm`) before it times anything.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlino.errors import RlinoError
from rlino.tasks import MathItem, load_task, symbolic
from rlino.tasks.math_task import math_
from rlino.tasks.symbolic import equivalent

# (gold, the model's \boxed{} content, equal?): the hand-written expectation, which Math-Verify called directly
# also gives (both are asserted).
TABLE = [
    # fractions
    ("\\frac{3}{4}", "0.75", True), ("\\frac{3}{4}", "\\dfrac{3}{4}", True), ("\\frac{3}{4}", "3/4", True),
    ("\\frac{3}{4}", "\\frac{6}{8}", True), ("\\frac34", "\\frac{3}{4}", True), ("\\frac{3}{4}", "\\frac{4}{3}", False),
    ("\\frac{3}{4}", "0.7", False), ("\\frac{1}{3}", "0.333", False),
    # radicals
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("5\\sqrt{2}", "\\sqrt{50}", True),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("2\\sqrt{2}", "2\\sqrt{3}", False), ("2\\sqrt{2}", "2.83", False),
    # intervals
    ("(1,2]", "(1, 2]", True), ("[2,\\infty)", "[2, \\infty)", True), ("(1,2]", "[1,2]", False),
    ("(-\\infty,3)", "(-\\infty,3]", False),
    # tuples and ordered pairs
    ("(3,2)", "(3, 2)", True), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True), ("(3,2)", "(2,3)", False),
    # units
    ("26", "26 \\text{ cm}", True), ("26\\text{ cm}", "26", True), ("26", "26\\,\\text{cm}", True),
    ("26", "27 \\text{ cm}", False),
    # percent
    ("25\\%", "25", True), ("25", "25\\%", True), ("25\\%", "25\\%", True), ("25\\%", "2.5", False),
    # degrees
    ("90^\\circ", "90", True), ("90", "90^{\\circ}", True), ("90^\\circ", "91^\\circ", False),
    ("90^\\circ", "\\frac{\\pi}{2}", False),
    # text answers and letters
    ("\\text{Thursday}", "\\text{Thursday}", True), ("\\text{Thursday}", "\\text{thursday}", True),
    ("\\text{Thursday}", "\\text{Friday}", False), ("\\text{(C)}", "C", True), ("\\text{(C)}", "(C)", True),
    ("\\text{(C)}", "\\text{(B)}", False),
    # negative numbers, several solutions
    ("-7", "-7", True), ("-7", "7", False), ("-\\frac{1}{2}", "-0.5", True), ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("-3, 3", "3, -3", True), ("-3, 3", "\\pm 3", True), ("-3, 3", "3", False),
    # expressions, matrices, others
    ("x^2+5x+6", "(x+2)(x+3)", True), ("x^2+5x+6", "x^2+5x+7", False), ("9\\pi", "9 \\pi", True),
    ("9\\pi", "28.27", False), ("\\pi", "3.14159", False), ("1000", "1{,}000", True), ("1000", "10^3", True),
    ("6", "x = 6", True), ("6", "6.0", True), ("18.90", "\\$18.9", True),
    ("\\begin{pmatrix} 3 \\\\ 7 \\end{pmatrix}", "\\begin{pmatrix}3\\\\7\\end{pmatrix}", True),
    ("\\begin{pmatrix} 3 \\\\ 7 \\end{pmatrix}", "\\begin{pmatrix}7\\\\3\\end{pmatrix}", False),
]
# Math-Verify 0.9.0's answer where a reader would expect the other one; rlino follows Math-Verify.
SURPRISES = [
    ("25\\%", "0.25", True),  # 25% equals both 25 and 0.25
    ("2\\sqrt{2}", "2.8284271", True),  # a decimal that agrees to 6 places equals an exact radical
    ("\\frac{1}{3}", "0.3333333", True),  # likewise
    ("(1,2)", "\\{1,2\\}", True),  # an open interval equals the set of its two ends
    ("(1,2)", "1, 2", True),  # likewise
    ("90", "90°", False),  # the Unicode degree sign is not read (90^\circ is)
    ("2i", "2 i", False),  # "2i" parses with a real symbol i, "2 i" with a non-real one
]


def completion(answer: str) -> str:
    return f"Adding the cases, we get $x = 4$.\nThus the answer is \\boxed{{{answer}}}."


def item(gold: str) -> MathItem:
    return MathItem("q", gold, "q", "u")


def math_verify_says(gold: str, answer: str) -> bool:
    """Math-Verify called directly in the main thread, with its own (signal) timeouts."""
    from math_verify import parse, verify

    return verify(parse(f"${gold}$"), parse(completion(answer)))


def warm() -> None:
    """Wait until the worker process is up (after a timeout it restarts); a comparison that needs it."""
    assert equivalent("1", "1.0")


@pytest.mark.parametrize("gold,answer,equal", TABLE + SURPRISES)
def test_scores_as_math_verify_does(gold: str, answer: str, equal: bool) -> None:
    task = math_(source="builtin")
    assert task.score(completion(answer), item(gold)) == float(equal)
    assert math_verify_says(gold, answer) == equal


def test_scores_in_worker_threads_as_in_the_main_thread() -> None:
    task = math_(source="builtin")
    rows = TABLE + SURPRISES
    main = [task.score(completion(a), item(g)) for g, a, _ in rows]
    assert main == [float(e) for _, _, e in rows]
    with ThreadPoolExecutor(4) as pool:  # four threads at once share the one worker
        threaded = list(pool.map(lambda row: task.score(completion(row[1]), item(row[0])), rows))
    assert threaded == main
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.extend(task.score(completion(a), item(g)) for g, a, _ in rows))
    thread.start()
    thread.join(60)
    assert result == main


def test_no_boxed_answer_scores_zero() -> None:
    task = math_(source="builtin")
    assert task.score("The answer is 3/4.", item("\\frac{3}{4}")) == 0.0
    assert task.score("$\\frac{3}{4}$", item("\\frac{3}{4}")) == 0.0
    assert task.score("\\boxed{}", item("\\frac{3}{4}")) == 0.0
    assert task.score("\\boxed{1} then \\boxed{\\frac{3}{4}}", item("\\frac{3}{4}")) == 1.0  # the last box counts
    assert task.score("\\boxed{\\frac{3}{4}} then \\boxed{1}", item("\\frac{3}{4}")) == 0.0


# --- hostile answers ------------------------------------------------------------------------------------------

TIMEOUT = 0.3  # the task's time per answer in these tests; each must finish well within BOUND
BOUND = 1.0
NEST = 3000
HOSTILE = [
    # (gold, completion, score): the first four would take Math-Verify minutes with its timeouts off (SymPy evaluates
    # the tower or the factorial): too_costly refuses them unread
    ("1", completion("9^{9^{9^{9}}}"), 0.0),
    ("1", completion("2^{10^{100}}"), 0.0),
    ("1", completion("(10^{10})!"), 0.0),
    ("9^{9^{9^9}}", completion("9^{9^{9^{9}}}"), 0.0),  # equal to the gold, and refused all the same
    ("1", completion("(" * 10 + "1" + ")" * 10), 0.0),  # 10 nested brackets pass the guard; parsing takes ~1 s
    ("1", completion("(" * NEST + "1" + ")" * NEST), 0.0),
    ("1", completion("{" * NEST + "1" + "}" * NEST), 0.0),
    ("\\frac{1}{2}", completion("\\frac{1}{" * NEST + "2" + "}" * NEST), 0.0),
    ("1", completion("\\sqrt{" * 150 + "1" + "}" * 150), 0.0),
    ("1", completion("\\frac{x}{y}+" * 81 + "1"), 0.0),  # 973 characters under every limit: Math-Verify reads it
    ("1", "\\boxed{" + "\\frac{1}{2}+" * 9000 + "1}", 0.0),  # 100 kB inside the box
    ("1", "\\frac{1}{2}+" * 9000 + completion("1.0"), 1.0),  # 100 kB of LaTeX before a fine answer
    ("1", "\\boxed{\\frac{2}{2}" + "}" * 100_000, 1.0),  # the box closes first; the rest is noise
    ("1", completion("1.0") * 5000, 1.0),  # 5000 boxes: the last counts
]


@pytest.fixture(autouse=True)
def deadline():
    """Fail (rather than hang) a test still running after 60 s: a broken time limit must not stall the suite.

    The worker is killed as well, so that the next test starts with a fresh one instead of waiting on it."""

    def expire(signum, frame):
        symbolic._POOL.close()
        pytest.fail("still running after 60 s")  # not TimeoutError: an OSError, which a pipe read may catch

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timed(score: Callable[[], float], in_thread: bool) -> tuple[float, float]:
    """``score()`` and its wall time, run in this (main) thread or in a worker thread (joined for at most 30 s)."""
    start = time.monotonic()
    if in_thread:
        result: list[float] = []
        thread = threading.Thread(target=lambda: result.append(score()), daemon=True)  # daemon: a hang can't block exit
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "still running after 30 s"
        value = result[0]
    else:
        value = score()
    return value, time.monotonic() - start


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_answers_are_scored_fast(index: int, in_thread: bool) -> None:
    gold, text, expected = HOSTILE[index]
    task = math_(source="builtin", timeout_seconds=TIMEOUT)
    warm()
    value, seconds = timed(lambda: task.score(text, item(gold)), in_thread)
    assert value == expected
    assert seconds < BOUND, f"{seconds:.2f} s"


def test_a_timeout_kills_the_worker_and_a_new_one_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbolic, "too_costly", lambda answer: None)  # the guard off: the tower reaches the worker
    warm()
    before = symbolic._POOL.worker.proc
    value, seconds = timed(lambda: equivalent("1", "9^{9^{9^{9}}}", timeout=TIMEOUT), in_thread=True)
    assert value is False and seconds < BOUND
    assert before.poll() is not None  # killed
    assert symbolic._POOL.worker.proc is not before  # and replaced at once
    warm()
    assert equivalent("\\frac{3}{4}", "0.75") and not equivalent("\\frac{3}{4}", "0.7")


def test_a_worker_that_dies_mid_answer_scores_zero_and_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symbolic, "too_costly", lambda answer: None)  # the guard off: the tower reaches the worker
    warm()
    proc = symbolic._POOL.worker.proc
    threading.Timer(0.2, proc.kill).start()  # killed from outside while it evaluates the tower
    value, seconds = timed(lambda: equivalent("1", "9^{9^{9^{9}}}", timeout=20.0), in_thread=False)
    assert value is False and seconds < 10
    warm()
    assert symbolic._POOL.worker.proc is not proc


def test_guards_reject_without_asking_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_worker(request: bytes, timeout: float) -> bytes:
        raise AssertionError(f"the worker was asked: {request[:60]!r}")

    monkeypatch.setattr(symbolic._POOL, "ask", no_worker)
    deep = "(" * (symbolic.MAX_DEPTH + 1) + "1" + ")" * (symbolic.MAX_DEPTH + 1)
    for answer in ["", "  ", "1" * (symbolic.MAX_ANSWER_CHARS + 1), deep, "{" * 50 + "1"]:
        assert equivalent("1", answer) is False
    assert equivalent(" 2\\sqrt{2}", "2\\sqrt{2} ") is True  # written as the gold: equal without asking
    assert symbolic.nesting_depth("\\frac{a}{\\sqrt{b}} (c [d])") == 2
    assert symbolic.too_costly("1" * (symbolic.MAX_ANSWER_CHARS + 1)) == "over 1000 characters"
    assert symbolic.too_costly(deep) == "brackets nested over 10 deep"


# --- answers too costly to settle -----------------------------------------------------------------------------

# (answer, the rule that refuses it): cheap to write, and with the guard off each but 2^{2^{2^{2^{2}}}} took Math-Verify
# its whole 5 s limit against gold 3 (SymPy computes the number or the expansion)
COSTLY = [
    ("9^{9^{9^{9}}}", "powers nested"), ("2^{2^{2^{2^{2}}}}", "powers nested"), ("x^{9^{9^{9}}}", "powers nested"),
    ("9^{9^{9}}", "digits"), ("10^{10^{100}}", "digits"), ("2^{2^{64}}", "digits"), ("10^{-10^{10}}", "digits"),
    ("9^{999999999}", "digits"), ("1000000!", "digits"), ("\\left(10^{6}\\right)!", "digits"), ("10^{10}!", "digits"),
    ("\\binom{10^9}{5*10^8}", "digits"), ("\\Gamma(10^{8})", "digits"), ("\\frac{1}{9^{9^{9}}}", "digits"),
    ("\\sqrt{2}^{10^{10}}", "digits"), ("\\sin(10^{10^{6}})", "digits"), ("e^{10^{9999}}", "digits"),
    ("\\left|9^{9}\\right|^{9^{9}}", "digits"), ("(x+1)^{1000}", "terms"), ("(1+i)^{1000}", "terms"),
    ("(x+y+z+1)^{20}", "terms"), ("\\sum_{n=1}^{10^{9}} \\frac{1}{n}", "terms"),
    ("\\sum_{n=1}^{200} (x+n)^{150}", "terms"), ("\\operatorname{eye}(10000)", "terms"),
    ("\\lfloor " * 15 + "1" + " \\rfloor" * 15, "brackets nested"),  # nesting_depth counts only {[(
]
# (gold, answer): ordinary answers, some with big numbers, that the guard lets through to Math-Verify
ORDINARY = [
    ("1024", "2^{10}"), ("6561", "3^{2^{3}}"), ("3628800", "10!"), ("120", "\\binom{10}{3}"), ("-1", "e^{i\\pi}"),
    ("x^2+1", "x^{2}+1"), ("2^{-n}", "\\frac{1}{2^{n}}"), ("1024", "2^{11}"), ("2^{1000}", "1024^{100}"),
    ("2^{2005}", "2\\cdot 2^{2004}"), ("1000!", "1000\\cdot 999!"), ("10^{100}", "100^{50}"),
    ("(x+1)^{2}", "x^2+2x+1"), ("(a+b)^{3}", "a^3+3a^2b+3ab^2+b^3"), ("5050", "\\sum_{k=1}^{100} k"),
    ("24", "\\Gamma(5)"), ("10", "{5 \\choose 2}"), ("2", "|-2|"), ("\\left\\lfloor \\frac{7}{2} \\right\\rfloor", "3"),
    ("e^{2}", "\\exp(2)"), ("0.25", "\\frac{1}{4}"),
]


@pytest.mark.parametrize("answer,rule", COSTLY)
def test_costly_answers_are_refused_with_the_rule_they_break(answer: str, rule: str) -> None:
    assert rule in (symbolic.too_costly(answer) or "not refused")


@pytest.mark.parametrize("gold,answer", ORDINARY)
def test_ordinary_answers_pass_the_guard_and_score_as_math_verify_does(gold: str, answer: str) -> None:
    assert symbolic.too_costly(answer) is None
    assert math_(source="builtin").score(completion(answer), item(gold)) == float(math_verify_says(gold, answer))


def test_no_gold_or_table_answer_is_refused() -> None:
    task = load_task("math", source="builtin")
    golds = [one.answer for one in task.items("train") + task.items("test")]
    texts = golds + [text for gold, answer, _ in TABLE + SURPRISES for text in (gold, answer)]
    assert len(golds) >= 25 and [text for text in texts if symbolic.too_costly(text)] == []


def test_a_costly_batch_never_reaches_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    ask = symbolic._POOL.ask
    monkeypatch.setattr(symbolic._POOL, "ask", lambda request, timeout: asked.append(request) or ask(request, timeout))
    task = math_(source="builtin", timeout_seconds=TIMEOUT)  # were one asked, it would cost TIMEOUT, not 5 s
    assert [task.score(completion(answer), item("3")) for answer, _ in COSTLY] == [0.0] * len(COSTLY)
    assert asked == []
    assert task.score(completion("3^{1}"), item("3")) == 1.0 and len(asked) == 1  # an ordinary one is asked


def test_worker_that_cannot_start_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "worker.py"
    broken.write_text("print('error ModuleNotFoundError: No module named math_verify', flush=True)\n")
    monkeypatch.setattr(symbolic, "WORKER", str(broken))
    pool = symbolic._Pool()
    with pytest.raises(RlinoError, match="did not start: error ModuleNotFoundError.*pip install 'math-verify"):
        pool.ask(b'["1", "2"]\n', 1.0)
    pool.close()


def test_a_forked_child_starts_its_own_worker() -> None:
    """Forked while another thread holds the worker (mid-request), a child starts its own and does not deadlock."""
    warm()
    parent_worker = symbolic._POOL.worker.proc.pid
    slow = "(" * 10 + "1" + ")" * 10  # about a second of parsing, well within its time limit
    busy = threading.Thread(target=lambda: equivalent("1", slow, timeout=50.0))
    busy.start()
    time.sleep(0.2)
    assert symbolic._POOL.lock.locked()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: compare, report its worker's pid, leave without running the parent's exit hooks
        try:
            ok = equivalent("\\frac{3}{4}", "0.75") and not equivalent("\\frac{3}{4}", "0.7")
            os.write(write, json.dumps([ok, symbolic._POOL.worker.proc.pid]).encode())
            symbolic._POOL.close()
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert select.select([read], [], [], 30)[0], "the child is still waiting after 30 s"
        ok, child_worker = json.loads(os.read(read, 1000) or b"[false, 0]")
    finally:
        os.close(read)
        if os.waitpid(child, os.WNOHANG) == (0, 0):
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    busy.join(50)
    assert ok and child_worker not in (0, parent_worker)
    assert symbolic._POOL.worker.proc.pid == parent_worker  # the parent's worker is untouched and still answers
    assert equivalent("\\frac{3}{4}", "0.75")


# --- items ----------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


ROWS = [
    {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "answer": "\\frac{3}{4}", "unique_id": "test/algebra/1.json"},
    {"problem": "Simplify $\\sqrt{8}$.", "answer": "2\\sqrt{2}", "unique_id": "test/algebra/2.json"},
    {"problem": "Solve $x^2 = 9$.", "answer": "-3, 3", "unique_id": "test/algebra/3.json"},
]
SOLUTIONS = [
    {"problem": "What is $1+1$?", "solution": "We have $1+1=\\boxed{2}$, as \\boxed{} shows... so $\\boxed{2}$."},
    {"problem": "Polar form of $(0,3)$?", "solution": "It is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$"},
]


def test_items_from_jsonl_with_answers_and_parquet_with_solutions(tmp_path: Path) -> None:
    import pandas as pd

    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    test = tmp_path / "test.parquet"
    pd.DataFrame(SOLUTIONS).to_parquet(test)
    task = load_task("math", train_file=train, test_file=str(test))
    items = task.items("train")
    assert [i.answer for i in items] == ["\\frac{3}{4}", "2\\sqrt{2}", "-3, 3"]
    assert [i.uid for i in items] == [f"math-test/algebra/{n}.json" for n in (1, 2, 3)]
    hint = "Please reason step by step, and put your final answer within \\boxed{}."
    assert items[0].prompt == ROWS[0]["problem"] + "\n" + hint
    tests = task.items("test")
    assert [i.answer for i in tests] == ["2", "\\left( 3, \\frac{\\pi}{2} \\right)"]  # the last \boxed{} of each
    assert tests[0].uid.startswith("math-test-")  # a hash of the problem: the same wherever the file is read
    assert tests[0].uid == load_task("math", test_file=str(test)).items("test")[0].uid
    assert task.score("so \\boxed{(3, \\pi/2)}", tests[1]) == 1.0
    templated = load_task("math", train_file=train, prompt_template="Problem: {problem}\nAnswer:")
    assert templated.items("train")[1].prompt == "Problem: Simplify $\\sqrt{8}$.\nAnswer:"


def test_item_errors(tmp_path: Path) -> None:
    neither = write_jsonl(tmp_path / "neither.jsonl", [{"problem": "p"}])
    with pytest.raises(RlinoError, match=r"neither\.jsonl row 0 has no field 'answer' or 'solution'"):
        load_task("math", train_file=neither).items("train")
    unboxed = write_jsonl(tmp_path / "unboxed.jsonl", [ROWS[0] | {"answer": ""}, {"problem": "p", "solution": "2"}])
    with pytest.raises(RlinoError, match=r"unboxed\.jsonl row 0 has no answer: 'answer' is empty"):
        load_task("math", train_file=unboxed).items("train")
    unboxed = write_jsonl(tmp_path / "unboxed.jsonl", [ROWS[0], {"problem": "p", "solution": "so it is 2."}])
    with pytest.raises(RlinoError, match=r"unboxed\.jsonl row 1 has no answer: .*no \\boxed.* \(ends 'so it is 2.'\)"):
        load_task("math", train_file=unboxed).items("train")
    no_problem = write_jsonl(tmp_path / "no_problem.jsonl", [{"question": "p", "answer": "1"}])
    with pytest.raises(RlinoError, match=r"no_problem\.jsonl row 0 has no field 'problem'"):
        load_task("math", train_file=no_problem).items("train")
    with pytest.raises(RlinoError, match="data file not found"):
        load_task("math", test_file=str(tmp_path / "missing.jsonl")).items("test")
    with pytest.raises(RlinoError, match="unknown split 'validation'"):
        load_task("math", source="builtin").items("validation")


def test_math_500_has_no_train_split() -> None:
    for source in ["HuggingFaceH4/MATH-500", "/data/MATH-500/"]:
        with pytest.raises(RlinoError, match=r"has no 'train' split; set train_file .*MATH-500 is a test set"):
            load_task("math", source=source).items("train")


def test_hub_source_from_a_local_dataset_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my-math"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", ROWS)
    task = load_task("math", source=str(folder))
    assert [i.uid for i in task.items("test")][0] == "math-test/algebra/1.json"
    with pytest.raises(RlinoError, match=r"has no 'train' split; set train_file"):
        task.items("train")
    train = write_jsonl(tmp_path / "train.jsonl", SOLUTIONS)  # a train file with the folder's test split
    mixed = load_task("math", source=str(folder), train_file=train)
    assert len(mixed.items("train")) == 2 and len(mixed.items("test")) == 3


def test_builtin_items_and_seeded_sizes() -> None:
    task = load_task("math", source="builtin")
    train, test = task.items("train"), task.items("test")
    assert len(train) >= 20 and len(test) >= 5
    assert not {i.problem for i in train} & {i.problem for i in test}
    assert len({i.uid for i in train + test}) == len(train + test)
    for one in train + test:
        assert task.score(completion(one.answer), one) == 1.0
    picked = load_task("math", source="builtin", train_size=10, test_size=3, seed=1)
    assert len(picked.items("train")) == 10 and len(picked.items("test")) == 3
    assert picked.items("train") == load_task("math", source="builtin", train_size=10, seed=1).items("train")
    assert picked.items("train") != load_task("math", source="builtin", train_size=10, seed=2).items("train")
    assert set(picked.items("train")) <= set(train)


@pytest.mark.parametrize("options,message", [
    ({"train_size": -1}, "option 'train_size' must be >= 0"),
    ({"prompt_template": "{question}"}, "option 'prompt_template' must contain {problem}"),
    ({"timeout_seconds": 0}, "option 'timeout_seconds' must be > 0"),
    ({"source": " "}, "option 'source' must be"),
    ({"timeout": 5}, "task 'math' has no option 'timeout' \\(did you mean 'timeout_seconds'\\?\\)"),
    ({"seed": "1"}, "option 'seed' must be int"),
])
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(RlinoError, match=message):
        load_task("math", **options)


def test_config_task_section(tmp_path: Path) -> None:
    from rlino.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "math"\n[task.options]\nsource = "builtin"\ntest_size = 4\ntimeout_seconds = 2\n')
    cfg = load_config(path, ["task.options.seed=3"])
    task = load_task(cfg.task.name, **cfg.task.options)
    assert task.name == "math" and task.options.timeout_seconds == 2.0 and task.options.seed == 3
    assert len(task.items("test")) == 4
    with pytest.raises(RlinoError, match="task 'math' has no option 'test_sizes'"):
        cfg = load_config(path, ["task.options.test_sizes=4"])
        load_task(cfg.task.name, **cfg.task.options)
