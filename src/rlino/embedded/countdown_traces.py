"""The Countdown solver that writes the warm-up traces of `embedded:countdown`, and `trace_error`, which reads them.

A trace is a backward search for a 3-number problem: for each number z it lists what the other two numbers make,
then for each way z can be the last operation the value those two would have to make, then `no`, or `yes` and the
pair that makes it, then the answer:

    7, 3, 2 -> 19            (the prompt)
    7: 3+2=5 3-2=1 3*2=6
    19-7=12 no
    19+7=26 no
    3: 7+2=9 7-2=5 7*2=14
    19-3=16 no
    19+3=22 no
    2: 7+3=10 7-3=4 7*3=21
    19-2=17 no
    19+2=21 yes 7*3
    <answer>(7*3)-2</answer>

A trace can carry one mistake, so the model trained on them learns to make them sometimes: a *miss* (`no` where the
pair works; the search goes on and may give up with a guess, a long wrong response), a *false yes* (a pair that does
not make the value, a short wrong response) or a *slip* (the right pair, then one operator written wrong in the
answer). `trace_error` names where a response in this format first goes wrong.
"""

from __future__ import annotations

import random
import re


def _pair_exprs(x: int, y: int, ops: str) -> list[tuple[str, int]]:
    """The values two numbers make with one operation, larger number first (no negatives), in a fixed order."""
    hi, lo = max(x, y), min(x, y)
    out = []
    if "+" in ops:
        out.append((f"{x}+{y}", x + y))
    if "-" in ops:
        out.append((f"{hi}-{lo}", hi - lo))
    if "*" in ops:
        out.append((f"{x}*{y}", x * y))
    return out


def _candidates(target: int, z: int, ops: str) -> list[tuple[str, int, str]]:
    """Ways `z` can be the last operation: (trace line, value the pair must make, answer template with {p})."""
    out = []
    if "+" in ops and target - z >= 0:
        out.append((f"{target}-{z}={target - z}", target - z, "({p})+" + str(z)))
    if "-" in ops:
        out.append((f"{target}+{z}={target + z}", target + z, "({p})-" + str(z)))
        if z - target >= 0:
            out.append((f"{z}-{target}={z - target}", z - target, f"{z}-" + "({p})"))
    if "*" in ops and z and target % z == 0:
        out.append((f"{target}/{z}={target // z}", target // z, "({p})*" + str(z)))
    return out


def write_trace(numbers: tuple[int, ...], target: int, ops: str, mistake: str | None,
                rng: random.Random) -> str:
    """The backward-search response for a 3-number problem; `mistake` is None, "miss", "false_yes" or "slip".

    For each number z it first lists what the other two make (so the check that follows is a lookup, which a
    small model can learn), then each way z can be the last operation, with `no` or `yes` and the pair.
    """
    steps = []  # (listing line or None, candidate line, pair expression that works or None, answer template, pairs)
    for i, z in enumerate(numbers):
        x, y = [n for j, n in enumerate(numbers) if j != i]
        pairs = _pair_exprs(x, y, ops)
        listing = f"{z}: " + " ".join(f"{e}={v}" for e, v in pairs)
        for k, (line, need, template) in enumerate(_candidates(target, z, ops)):
            works = next((e for e, v in pairs if v == need), None)
            steps.append((listing if k == 0 else None, line, works, template, pairs))
    first = next((k for k, s in enumerate(steps) if s[2] is not None), None)
    false_at = rng.randrange(first) if mistake == "false_yes" and first else None
    lines = []
    for k, (listing, line, works, template, pairs) in enumerate(steps):
        if listing is not None:
            lines.append(listing)
        if k == false_at:  # a wrong `yes` before the real solution: a short wrong response
            wrong = rng.choice(pairs)[0]
            return "\n".join(lines + [f"{line} yes {wrong}", f"<answer>{template.format(p=wrong)}</answer>"])
        if works is not None and not (mistake == "miss" and k == first):
            answer = template.format(p=works)
            if mistake == "slip":  # the right pair, one operator written wrong: a wrong answer at the end
                at = rng.choice([i for i, ch in enumerate(answer) if ch in "+-*"])
                answer = answer[:at] + rng.choice([op for op in "+-*" if op != answer[at]]) + answer[at + 1:]
            return "\n".join(lines + [f"{line} yes {works}", f"<answer>{answer}</answer>"])
        lines.append(f"{line} no")
    guess = "+".join(map(str, numbers))  # gave up: a guess, almost always wrong (a long wrong response)
    return "\n".join(lines + [f"<answer>{guess}</answer>"])


def trace_error(text: str, numbers: tuple[int, ...], target: int) -> str:
    """Where a response in the trace format first goes wrong, for a response the verifier marked wrong.

    `listing` (a pair value computed wrong), `candidate` (the value a pair must make computed wrong), `false_yes`
    (`yes` with a pair that does not make that value). A sound search is a `slip` when it said `yes` (a wrong answer
    after the right pair) and `gave_up` when it did not; whether the response is wrong at all is the verifier's call.
    """
    def value(expr: str) -> int | None:
        m = re.fullmatch(r"(\d+)([-+*/])(\d+)", expr)
        if not m:
            return None
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        if op == "/":
            return a // b if b and a % b == 0 else None
        return a + b if op == "+" else a - b if op == "-" else a * b

    said_yes = False
    for line in text.split("\n"):
        listing = re.fullmatch(r"\d+: (.*)", line)
        if listing:
            for term in listing.group(1).split():
                expr, _, got = term.partition("=")
                if not got.isdigit() or value(expr) != int(got):
                    return "listing"
            continue
        check = re.fullmatch(r"(\d+[-+/]\d+)=(\d+) (no|yes)(?: (\S+))?", line)
        if check:
            expr, got, verdict, pair = check.groups()
            if value(expr) != int(got):
                return "candidate"
            if verdict == "yes":
                if pair is None or value(pair) != int(got):
                    return "false_yes"
                said_yes = True
    return "slip" if said_yes else "gave_up"
