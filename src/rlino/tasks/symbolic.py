"""Symbolic answer equivalence with Math-Verify, bounded in time from any thread and any process.

    equivalent("\\frac{3}{4}", "0.75")               # True
    equivalent("1", "9^{9^{9^{9}}}", timeout=5.0)    # False after at most ~5 s, in any thread

Why a hand-written guard: Math-Verify bounds its own parse and verify with ``signal.alarm``, which works only in
the main thread of the main interpreter (its README says to turn the timeouts off elsewhere and bring your own).
Rewards are computed wherever the caller runs them (a trainer's main thread, a worker thread, a data-loader
process), and some short answers keep Math-Verify busy far longer than any reward should take (``9^{9^{9^{9}}}``
against ``1`` had not finished after 20 s: SymPy evaluates the tower), so the limit is kept here instead:

- Cheap guards first: an empty answer, one over MAX_ANSWER_CHARS characters or nested deeper than MAX_DEPTH
  brackets is not equal, without parsing (Math-Verify's LaTeX parser took ~2 s on 15 nested parentheses here).
  An answer written exactly as the gold one is equal without asking Math-Verify.
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
import os
import selectors
import subprocess
import sys
import threading
import time

from rlino.errors import RlinoError

MAX_ANSWER_CHARS = 1000  # longer answers are not equal, unread (MATH answers are a few dozen characters)
MAX_DEPTH = 10  # bracket nesting ({[( and their \left forms) beyond this is not equal, unread
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import Math-Verify (a loaded machine is slow)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "symbolic_worker.py")


def equivalent(gold: str, answer: str, timeout: float = 5.0) -> bool:
    """Whether ``answer`` means ``gold`` by Math-Verify (both are ``\\boxed{}`` contents, LaTeX).

    Returns False for an answer rejected by the guards or one Math-Verify cannot settle within ``timeout``
    seconds. Raises RlinoError when the worker cannot start (Math-Verify missing).
    """
    answer, gold = answer.strip(), gold.strip()
    if not answer or not gold or len(answer) > MAX_ANSWER_CHARS or nesting_depth(answer) > MAX_DEPTH:
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
