"""One progress line for a comparison's runs: steps done over all of them, elapsed time and an estimate of what is
left, read from the run folders' metrics logs (each worker process appends one line per finished step).

On a terminal it is one tqdm bar, redrawn in place; elsewhere (CI, a file) plain log lines, at most one a minute.
The estimate is the steps left over the rate so far: (steps done in this invocation) / (seconds since it started),
counting steps a resumed run had already logged as done but not in the rate. A step's cost varies (a collapsing
arm's long responses, the evaluation at a run's last step), so the estimate is rough early and firms up as steps
of every arm have been seen.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from rlino.run_folder import METRICS, RunFolder


@dataclass
class Tracked:
    folder: RunFolder
    steps: int  # the run's last step
    start: int  # steps done when the comparison (re)started: the checkpoint it resumes from, else 0


def minutes(seconds: float, decimals: int = 0) -> str:
    """'42 s' (or '42.4 s' with decimals=1), '3 min 05 s', '1 h 02 min'."""
    if round(seconds, decimals) < 60:
        return f"{seconds:.{decimals}f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def estimate_left(done: int, start: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far: (total - done) / ((done - start) / elapsed); None before a step is done."""
    if done <= start or elapsed <= 0:
        return None
    return (total - done) * elapsed / (done - start)


class CompareProgress:
    """Steps done over every run of a comparison; call `poll()` now and then, `close()` at the end."""

    def __init__(self, runs: list[tuple[RunFolder, int]], *, stream: TextIO | None = None,
                 log: Callable[[str], Any] = print, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        # (run folder, its last step), read before any worker starts: a run resumes from its last checkpoint
        self.runs = [Tracked(folder, steps, folder.resume_step()) for folder, steps in runs]
        self.total = sum(r.steps for r in self.runs)
        self.start = sum(r.start for r in self.runs)
        self.done = self.start
        self.clock, self.t0, self.every_s = clock, clock(), every_s
        self.t0_wall = time.time() - 1.0  # metrics logs written after this count (file times can be coarse)
        self.stream = stream if stream is not None else sys.stderr
        self.log, self._last_line = log, None
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            # smoothing 0: the rate is the average since the start, the same estimate as the log lines'
            self.bar = tqdm(total=self.total, initial=self.start, desc="steps, all runs", unit="step",
                            file=self.stream, dynamic_ncols=True, smoothing=0)

    def steps_done(self) -> int:
        """Steps logged by every run, each between its start and its last step. A metrics log older than this
        comparison (a run that never checkpointed, about to start over) counts its start only."""
        done = 0
        for r in self.runs:
            path = r.folder.file(METRICS)
            fresh = path.is_file() and path.stat().st_mtime >= self.t0_wall
            last = (r.folder.last_step() or 0) if fresh else r.start
            done += min(max(last, r.start), r.steps)
        return done

    def poll(self) -> None:
        done = self.steps_done()
        now = self.clock()
        if self.bar is not None:
            if done > self.done:
                self.bar.update(done - self.done)
        elif done > self.done and (self._last_line is None or now - self._last_line >= self.every_s
                                   or done == self.total):
            self.log(self.line(done, now - self.t0))
            self._last_line = now
        self.done = max(self.done, done)

    def line(self, done: int, elapsed: float) -> str:
        left = estimate_left(done, self.start, self.total, elapsed)
        return (f"progress: {done} of {self.total} steps ({100 * done / self.total:.0f}%), {minutes(elapsed)} "
                f"elapsed" + ("" if left is None or done == self.total else f", about {minutes(left)} left"))

    def write(self, message: str) -> None:
        """A log line that does not break the bar."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            self.log(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
