"""Symbolic answer equivalence with Math-Verify, bounded in time from any thread and any process.

    equivalent("\\frac{3}{4}", "0.75")                         # True
    equivalent("1", "9^{9^{9^{9}}}")                           # False at once: too_costly refuses it unread
    equivalent("1", "\\int x^{100} \\sin x dx", timeout=5.0)  # False after at most ~5 s, in any thread

Why a hand-written guard: Math-Verify bounds its own parse and verify with ``signal.alarm``, which works only in
the main thread of the main interpreter (its README says to turn the timeouts off elsewhere and bring your own).
Rewards are computed wherever the caller runs them (a trainer's main thread, a worker thread, a data-loader
process), and some short answers keep Math-Verify busy far longer than any reward should take (``9^{9^{9^{9}}}``
against ``1`` had not finished after 20 s: SymPy evaluates the tower), so the limit is kept here instead:

- Cheap guards first, in this process (`too_costly`, one scan of the text): an empty answer, one too long, too
  deeply bracketed (the LaTeX parser took ~2 s on 15 nested parentheses here) or with a number or an expansion too
  big to settle cheaply (``9^{9^{9}}``, ``(10^{6})!``, ``(x+1)^{1000}``) is not equal, unread; one written exactly
  as the gold one is equal without asking Math-Verify.
- The rest goes to one persistent worker process (`symbolic_worker.py`) running Math-Verify with its timeouts
  off. The caller waits up to ``timeout`` seconds for the answer; past that the worker is killed (SIGKILL, which
  needs no cooperation from a busy SymPy) and the answer counts as not equal. A replacement starts at once and is
  waited for by the next call; its start (about a second: Math-Verify imports SymPy) is not part of any timeout.

Process choices, for torchrun and fork: the worker is a fresh interpreter started with ``subprocess``, not
``multiprocessing`` (``python -P``: the script's folder stays off ``sys.path``), so it never re-imports the
caller's ``__main__``, never inherits CUDA, torch or NCCL state, works inside daemonic processes (where
``multiprocessing`` may not start children) and does not depend on the caller's start method. Each process gets its
own worker the first time it compares: every torchrun rank has one. A child made by ``os.fork`` forgets the parent's
worker and gets a fresh lock (an at-fork hook; a thread of the parent may have held the lock at the fork), then
starts its own worker. Threads of one process share its worker and take turns (a lock). At exit the worker is
killed. If the caller dies without running exit handlers, the worker sees its input close and exits when idle, and a
watchdog thread in it exits once the parent is gone; the watchdog needs the GIL, which a long big-integer operation
in C holds, so a worker that is busy with one when its parent is killed lives until that operation ends.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time

from rlino.errors import RlinoError

MAX_ANSWER_CHARS = 1000  # longer answers are not equal, unread (MATH answers are a few dozen characters)
MAX_DEPTH = 10  # bracket nesting ({[( and their \left forms) beyond this is not equal, unread
MAX_DIGITS = 10_000  # an integer made by powers, factorials, binomials may have this many digits (SymPy computes it)
MAX_TERMS = 200  # terms an answer may expand to: a power or product of sums, a \sum or \prod, a matrix's entries
MAX_POWER_DEPTH = 2  # exponents within exponents: 3^{2^{3}} is read, 2^{2^{2^{2}}} is not
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import Math-Verify (a loaded machine is slow)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "symbolic_worker.py")


def equivalent(gold: str, answer: str, timeout: float = 5.0) -> bool:
    """Whether ``answer`` means ``gold`` by Math-Verify (both are ``\\boxed{}`` contents, LaTeX).

    Returns False for an answer refused by `too_costly` or one Math-Verify cannot settle within ``timeout``
    seconds. Raises RlinoError when the worker cannot start (Math-Verify missing).
    """
    answer, gold = answer.strip(), gold.strip()
    if not answer or not gold or too_costly(answer) is not None:
        return False
    if answer == gold:
        return True
    request = json.dumps([gold, answer]).encode() + b"\n"
    return _POOL.ask(request, timeout) == b"1"


def nesting_depth(text: str) -> int:
    """The deepest nesting of brackets in ``text`` (any of ``{[(``, unbalanced ones included): one linear scan."""
    depth = deepest = 0
    for char in text:
        if char in "{[(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}])":
            depth = max(0, depth - 1)
    return deepest


def too_costly(answer: str) -> str | None:
    r"""Why Math-Verify could not settle ``answer`` cheaply, or None when it may try: one linear scan, no parsing.

    Refused: over MAX_ANSWER_CHARS characters, brackets over MAX_DEPTH deep, powers over MAX_POWER_DEPTH deep
    (``2^{2^{2^{2}}}``), a number of over MAX_DIGITS digits (``9^{9^{9}}``, ``9^{999999999}``, ``(10^{6})!``,
    ``\binom{10^{9}}{5}``, ``\Gamma(10^{8})``, ``e^{10^{9999}}``) or over MAX_TERMS terms (``(x+1)^{1000}``, which
    SymPy expands, ``\sum_{n=1}^{10^{9}}``, ``\operatorname{eye}(10^{4})``). SymPy computes powers, factorials and
    binomials of integers and fractions exactly, so an answer costs about the digits of its largest number. Sizes
    are bounded from the text, in digits: a literal has its own (a decimal, its value's: SymPy keeps it a float), a
    letter (e, i, x) counts as pi, ``a^b`` has digits(a)*|b|, ``n!`` and ``\Gamma(n)`` log10 of Stirling's bound,
    ``\binom{n}{k}`` n*log10(2), ``\exp(x)`` |x|*log10(e); a product adds digits, a sum takes the larger plus
    log10(2), a list adds them (``1,000``). Terms: a sum adds them, a product multiplies them, a power of a sum of
    k terms has C(b+k-1, k-1), ``\sum`` the span of its numeric limits, a list its widest item's. The bounds
    overestimate (``x^{10^{5}}`` is refused, though SymPy keeps it as it is); MATH answers are far below the limits
    (``2^{2005}``: 604 digits). What the rule does not size (integrals...) only the time limit bounds.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return f"over {MAX_ANSWER_CHARS} characters"
    if nesting_depth(answer) > MAX_DEPTH:
        return f"brackets nested over {MAX_DEPTH} deep"
    try:
        sizes = _Sizes(answer)
        while sizes.pos < len(sizes.tokens):
            sizes.sequence()
            sizes.pos += 1  # past a closing bracket with no opening one
    except _Costly as why:
        return str(why)
    except RecursionError:  # hundreds of bars or commands that each read the next (\lfloor\lfloor..., \exp\exp...)
        return "nested too deep to read"
    return None


_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|[0-9]+(?:\.[0-9]*)?|\.[0-9]+|\S")
_SKIPPED = {"\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\big", "\\Big", "\\displaystyle",
            "\\limits", "\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad"}
_OPEN, _CLOSE = {"(", "[", "{"}, {")", "]", "}"}
_PLUS = {"+", "-", "\\pm", "\\mp"}  # a sum: the larger size plus log10(2)
_SEPARATORS = {",", ";", "=", "<", ">", "&", "\\\\", "\\le", "\\leq", "\\ge", "\\geq", "\\ne", "\\neq", "\\to",
               "\\cup", "\\cap", "\\choose"}  # a list or relation: sizes add (1,000 reads as a thousand)
_FACTORIALS, _BINOMIALS = {"\\Gamma", "\\gamma"}, {"\\binom", "\\dbinom", "\\tbinom"}
_BARS = {"|", "\\|", "\\vert", "\\Vert"}  # |x| is a bracket: a bar opens, the next same bar closes
_PAIRS = {"\\lvert": "(", "\\rvert": ")", "\\lfloor": "(", "\\rfloor": ")", "\\lceil": "(", "\\rceil": ")"}
_ENVIRONMENT = re.compile(r"\\(begin|end)\s*\{[a-zA-Z*]*\}")  # a matrix is a bracket: \begin{pmatrix}.. is (..)
_MATRICES = {"eye", "zeros", "ones"}  # \operatorname{eye}(n): an n x n matrix
_EXPONENTIALS = {"\\exp", "\\sinh", "\\cosh"}  # |exp(x)| <= 10^(|x| log10(e))
LOG10_2, LOG10_E, LETTER_DIGITS = math.log10(2), math.log10(math.e), math.log10(math.pi)


class _Costly(Exception):
    """Raised from deep in a `_Sizes` scan: the reason the answer is refused."""


class _Sizes:
    """Reads an answer left to right (`too_costly`); each reader returns bounds (digits, terms) of what it read: log10
    of its size and its terms once expanded, and raises _Costly as soon as one is over its limit."""

    def __init__(self, text: str) -> None:
        text = _ENVIRONMENT.sub(lambda m: "(" if m[1] == "begin" else ")", text.replace("{,}", ""))
        self.tokens: list[str] = []
        bars: list[str] = []  # the bars opened and not yet closed
        for token in _TOKEN.findall(text):
            if token in _BARS:
                closes = bool(bars) and bars[-1] == token
                bars, token = (bars[:-1], ")") if closes else (bars + [token], "(")
            if token not in _SKIPPED:
                self.tokens.append(_PAIRS.get(token, token))
        self.pos = 0
        self.exponents = self.depth = 0  # exponents and brackets the reader is inside
        self.letter = LETTER_DIGITS  # the digits a letter counts for

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def sequence(self) -> tuple[float, float]:
        """Products joined by sums and separators, up to a closing bracket."""
        digits = terms = widest = 0.0  # terms: of the current sum; widest: of the widest item of a list
        joint = ","
        while (token := self.peek()) is not None and token not in _CLOSE:
            if token in _PLUS or token in _SEPARATORS:
                self.pos, joint = self.pos + 1, "+" if token in _PLUS else ","
                widest, terms = (widest, terms) if joint == "+" else (max(widest, terms), 0.0)
                digits = _checked(_power_of_ten(digits) * LOG10_2, 0.0)[0] if token == "\\choose" else digits
                continue
            size, more = self.product()
            digits = max(digits, size) + LOG10_2 if joint == "+" else digits + size
            terms = _checked(digits, terms + more)[1]
        return digits, max(widest, terms)

    def product(self) -> tuple[float, float]:
        digits, terms = 0.0, 1.0
        while (token := self.peek()) is not None and not (token in _CLOSE or token in _PLUS or token in _SEPARATORS):
            size, more = self.factor()
            digits, terms = _checked(digits + size, terms * more)
        return digits, terms

    def factor(self) -> tuple[float, float]:
        """A primary and its scripts: powers, factorials (postfix, as Math-Verify reads ``10^{10}!``), subscripts."""
        digits, terms = self.primary()
        while (token := self.peek()) in ("^", "_", "!"):
            self.pos += 1
            if token == "^":
                digits, terms = self.power(digits, terms)
            elif token == "!":
                digits = _factorial(digits)
            else:
                self.primary()  # a subscript: read only to get past it
            _checked(digits, terms)
        return digits, terms

    def power(self, digits: float, terms: float) -> tuple[float, float]:
        if self.exponents >= MAX_POWER_DEPTH:
            raise _Costly(f"powers nested over {MAX_POWER_DEPTH} deep")
        self.exponents += 1
        exponent = _power_of_ten(self.primary()[0])  # a bound on |exponent|
        self.exponents -= 1
        digits = digits * exponent if digits > 0 else 0.0
        if terms > 1:  # C(n+k-1, k-1) terms expand a sum of k terms to the n; over MAX_TERMS once n is
            n = math.ceil(min(exponent, MAX_TERMS + 1) - 1e-9)
            terms = float(math.comb(n + int(terms) - 1, int(terms) - 1))
        return digits, terms

    def primary(self) -> tuple[float, float]:
        token = self.peek()
        if token is None or token in _CLOSE:  # a script with nothing after it: the bracket is its group's
            return 0.0, 1.0
        self.pos += 1
        if token in _OPEN:
            self.depth += 1
            if self.depth > MAX_DEPTH:  # counting \lfloor, |x| and \begin{pmatrix}, which nesting_depth does not
                raise _Costly(f"brackets nested over {MAX_DEPTH} deep")
            size = self.sequence()
            self.pos, self.depth = self.pos + 1, self.depth - 1  # past its closing bracket, of whichever kind
            return size
        if token[0].isdigit() or token[0] == ".":
            whole = token.split(".")[0].lstrip("0")  # a decimal stays a float in SymPy: its value counts
            return (math.log10(float(token)) if 0 < len(whole) <= 15 else float(len(whole))), 1.0
        if token.startswith("\\"):
            return self.command(token)
        if token.isalpha():
            return self.letter, 1.0  # e, i or a variable: a number of unknown size, counted as pi
        return 0.0, 1.0  # any other sign (a comma, a prime)

    def command(self, name: str) -> tuple[float, float]:
        r"""A command and the arguments that size it: \Gamma(n), \binom{n}{k}, \sum_{..}^{..}, \operatorname{eye}(n);
        any other (\frac, \sqrt, \text, \pi) counts as the product of its bracketed arguments, or as 1."""
        if name in _EXPONENTIALS:
            return _checked(_power_of_ten(self.primary()[0]) * LOG10_E, 1.0)
        if name in _FACTORIALS:
            return _checked(_factorial(self.primary()[0]), 1.0)
        if name in _BINOMIALS:
            return _checked(_power_of_ten(max(self.primary()[0], self.primary()[0])) * LOG10_2, 1.0)  # <= 2^n
        if name in ("\\sum", "\\prod"):  # as many terms as its numeric limits span (a letter counts 1: a Sum)
            bound, letter, self.letter = 0.0, self.letter, 0.0
            while self.peek() in ("_", "^"):
                self.pos += 1
                bound = max(bound, self.primary()[0])
            self.letter = letter
            return _checked(0.0, _power_of_ten(bound))
        if name == "\\operatorname":
            start = self.pos
            self.primary()
            if "".join(self.tokens[start : self.pos]).strip("{}") in _MATRICES:
                side = _power_of_ten(self.primary()[0])
                return _checked(0.0, side * side)
        digits, terms = (LETTER_DIGITS if name == "\\pi" else 0.0), 1.0
        while self.peek() in ("{", "["):
            size, more = self.primary()
            digits, terms = _checked(digits + size, terms * more)
        return digits, terms


def _power_of_ten(digits: float) -> float:
    return math.inf if digits > 300 else 10.0**digits


def _factorial(digits: float) -> float:
    n = _power_of_ten(digits)  # Stirling: n! <= e n^(n+1/2) e^-n
    if n <= 1 or n == math.inf:
        return 0.0 if n <= 1 else math.inf
    return (n + 0.5) * math.log10(n) - (n - 1) * LOG10_E


def _checked(digits: float, terms: float) -> tuple[float, float]:
    if digits > MAX_DIGITS + 1e-6:  # the margin absorbs rounding: 10**log10(200) is 200.00000000000003
        raise _Costly(f"a number of about {digits:.3g} digits (over {MAX_DIGITS})")
    if terms > MAX_TERMS + 1e-6:
        raise _Costly(f"about {terms:.3g} terms once expanded (over {MAX_TERMS})")
    return digits, terms


class _Worker:
    """One running ``symbolic_worker.py`` and the bytes it has written that no request has read yet."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self.pending = b""
        self.ready = False

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        view = memoryview(data)
        while view:  # a raw pipe write may take part of a long request
            view = view[os.write(self.proc.stdin.fileno(), view) :]

    def read_line(self, timeout: float) -> bytes | None:
        """The next line the worker writes, or None on timeout or when it has exited."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        try:
            with selectors.DefaultSelector() as selector:  # poll/epoll: no FD_SETSIZE limit as with select()
                selector.register(self.proc.stdout, selectors.EVENT_READ)
                while b"\n" not in self.pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    if not selector.select(min(remaining, 60.0)):  # epoll refuses waits past ~35 minutes
                        continue
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        return None
                    self.pending += chunk
        except (OSError, ValueError):  # the pipe was closed under us (close() at exit)
            return None
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class _Pool:
    """The worker of this process, started on first use and replaced after a timeout or a crash."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        self.atexit_registered = False

    def ask(self, request: bytes, timeout: float) -> bytes | None:
        """Send one request line and return the reply line, or None (worker killed) after ``timeout`` s."""
        with self.lock:
            worker = self._ready_worker()
            try:
                worker.send(request)
            except BrokenPipeError:  # it died since the last request: start another and ask once more
                worker.kill()
                self.worker = None
                worker = self._ready_worker()
                worker.send(request)
            reply = worker.read_line(timeout)
            if reply is None:  # too slow (or crashed on this input): kill it and start a replacement now
                worker.kill()
                self.worker = _Worker()
            return reply

    def _ready_worker(self) -> _Worker:
        """The current worker once it has said ``ready``; a new one if there is none or it exited."""
        if self.worker is not None and self.worker.proc.poll() is not None:
            self.worker.kill()
            self.worker = None
        if self.worker is None:
            self.worker = _Worker()
        if not self.atexit_registered:
            atexit.register(self.close)
            self.atexit_registered = True
        worker = self.worker
        if not worker.ready:
            line = worker.read_line(STARTUP_TIMEOUT)
            if line != b"ready":
                worker.kill()
                self.worker = None
                why = line.decode(errors="replace") if line else "no reply"
                raise RlinoError(
                    f"the Math-Verify worker ({sys.executable} {WORKER}) did not start: {why}; "
                    "is math-verify installed (pip install 'math-verify[antlr4_13_2]')?"
                )
            worker.ready = True
        return worker

    def close(self) -> None:
        """Kill the worker (at exit); a later request starts a new one.

        A request still waiting in another thread holds the lock for at most its timeout; the worker is killed
        after a second even then (that request then reads end of file and scores 0)."""
        locked = self.lock.acquire(timeout=1.0)
        try:
            if self.worker is not None:
                self.worker.kill()
                self.worker = None
        finally:
            if locked:
                self.lock.release()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's worker without touching it (its pipes are closed, not the process)."""
        self.lock = threading.Lock()  # the parent's may have been held by another thread at the fork
        if self.worker is not None:
            for pipe in (self.worker.proc.stdin, self.worker.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.worker.proc.returncode = 0  # so Popen never waits on or signals a process that is not ours
            self.worker = None


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget_after_fork)
