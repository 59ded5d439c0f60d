"""The progress line of `rlino compare`: steps over every run from the run folders' metrics logs, a tqdm bar on a
terminal and plain log lines elsewhere; the estimate checked against a hand computation."""

import fcntl
import io
import json
import os
import struct
import termios
import time
from pathlib import Path

from rlino.progress import CompareProgress, minutes
from rlino.run_folder import STATE_FILE, RunFolder


def log_steps(folder: Path, first: int, last: int, mtime: float | None = None) -> None:
    """Append metrics lines for steps first..last, as a run does (optionally with an old modification time)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps({"step": s, "reward_mean": 0.5}) + "\n" for s in range(first, last + 1))
    if mtime is not None:
        os.utime(folder / "metrics.jsonl", (mtime, mtime))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_off_a_terminal_progress_is_a_log_line_a_minute_with_the_time_left(tmp_path):
    """Two runs of 10 steps, the second resumed from a checkpoint at step 4 with a stale log of 7 steps (written
    before the comparison started: it will be cut back to 4). Lines come at most once a minute, none on the stream."""
    a, b = tmp_path / "a", tmp_path / "b"
    log_steps(b, 1, 7, mtime=time.time() - 3600)
    (RunFolder(b).checkpoint_dir(4)).mkdir(parents=True)
    (RunFolder(b).checkpoint_dir(4) / STATE_FILE).write_bytes(b"")  # complete: b resumes from step 4
    clock, lines, stream = Clock(), [], io.StringIO()
    progress = CompareProgress([(RunFolder(a), 10), (RunFolder(b), 10)], stream=stream, log=lines.append, every_s=60,
                               clock=clock)
    assert progress.steps_done() == 4  # b's stale lines 5-7 are not counted
    clock.now += 30
    log_steps(a, 1, 2)
    progress.poll()
    # by hand: 6 of 20 done, 2 of them in this invocation's 30 s: 14 left at 15 s each = 210 s
    assert lines == ["progress: 6 of 20 steps (30%), 30 s elapsed, about 3 min 30 s left"]
    clock.now += 30  # 60 s in, but only 30 s since the last line
    log_steps(a, 3, 3)
    progress.poll()
    assert len(lines) == 1
    clock.now += 30
    log_steps(b, 5, 6)  # b's log rewritten by its run now: fresh
    progress.poll()
    # 9 of 20, 5 in 90 s: 11 left at 18 s = 198 s
    assert lines[-1] == "progress: 9 of 20 steps (45%), 1 min 30 s elapsed, about 3 min 18 s left"
    clock.now += 1
    log_steps(a, 4, 10)
    log_steps(b, 7, 12)  # a log past the run's last step counts its last step
    progress.poll()
    assert lines[-1] == "progress: 20 of 20 steps (100%), 1 min 31 s elapsed"  # the last line comes at once
    progress.write("grpo seed-0: finished")
    progress.close()
    assert lines[-1] == "grpo seed-0: finished" and stream.getvalue() == ""


def test_on_a_terminal_progress_is_one_bar_redrawn_in_place(tmp_path):
    """Under a pseudo-terminal the line is a tqdm bar: redrawn with carriage returns, no newline per step, with the
    count and the time left; a message written through it lands on its own line."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    stream = os.fdopen(slave, "w")
    lines = []
    progress = CompareProgress([(RunFolder(tmp_path / "a"), 8)], stream=stream, log=lines.append)
    for last in (2, 5, 8):
        log_steps(tmp_path / "a", last - 1 if last > 2 else 1, last)
        progress.poll()
    progress.write("grpo seed-0: finished")
    progress.close()
    stream.flush()
    out = os.read(master, 65536).decode()
    stream.close()
    os.close(master)
    assert lines == []  # nothing goes to the log on a terminal
    assert "steps, all runs" in out and "8/8" in out and "\r" in out
    assert "grpo seed-0: finished" in out
    assert out.count("\n") <= 3  # the message and the closed bar, not one line per update


def test_minutes_reads_as_a_person_would_say_it():
    assert [minutes(s) for s in (42.4, 65, 3600 + 125)] == ["42 s", "1 min 05 s", "1 h 02 min"]
    assert [minutes(s, decimals=1) for s in (42.44, 65, 3600 + 125)] == ["42.4 s", "1 min 05 s", "1 h 02 min"]
