"""The worker process of `rlino.tasks.symbolic`: compares answers with Math-Verify, one request per line.

Run as a script (``python -P symbolic_worker.py``), never imported by rlino, so it loads Math-Verify and nothing
of rlino, torch or the parent's state. Protocol, all lines UTF-8: the worker prints ``ready`` once Math-Verify is
imported (or ``error <text>`` and exits when it cannot be); then for each request line, a JSON list
``[gold, answer]`` of two ``\\boxed{}`` contents, it prints ``1`` (Math-Verify says equal) or ``0``. It exits at
end of input. The parent enforces the time limit by killing this process, so Math-Verify's own signal-based
timeouts are off here.
"""

import json
import logging
import os
import sys
import threading
import time

GOLD_CACHE_SIZE = 4096  # parsed gold answers kept; a training run asks about the same golds many times


def main() -> None:
    parent = os.getppid()
    threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    # Math-Verify warns on every call that its timeouts are off and logs what it cannot parse: the parent owns both
    logging.disable(logging.CRITICAL)
    out = sys.stdout.buffer
    try:
        from math_verify import parse, verify
    except Exception as exc:  # ImportError most often: say so on the protocol channel, where the parent reads
        out.write(f"error {type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")
        out.flush()
        return
    golds: dict[str, list] = {}

    def parsed(text: str) -> list:
        return parse("\\boxed{" + text + "}", parsing_timeout=None)

    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            gold, answer = json.loads(line)
            if gold not in golds:
                if len(golds) >= GOLD_CACHE_SIZE:
                    golds.clear()
                golds[gold] = parsed(gold)
            equal = verify(golds[gold], parsed(answer), timeout_seconds=None)
        except Exception:  # RecursionError, MemoryError, a malformed request: not equal
            equal = False
        out.write(b"1\n" if equal else b"0\n")
        out.flush()


def watch_parent(parent: int) -> None:
    """Exit when the parent is gone (killed before it could stop us), checked while the GIL is free."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


if __name__ == "__main__":
    main()
