"""Pulling a final number out of free-form math text and comparing it exactly (GSM8K-style).

Every scan here is linear in the text length or bounded by a small constant, so hostile
completions (huge numbers, deep braces, 100 kB of noise) are scored quickly.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_NUMBER_CHARS = 50
# A \boxed{...} whose closing brace is further than this cannot hold a number we would accept.
MAX_BOXED_CHARS = 1000
MAX_BOXES = 8  # empty boxes passed over before giving up
_DIGITS = "0123456789"
# Applied only to strings of at most MAX_NUMBER_CHARS characters, so even backtracking stays tiny.
_DECIMAL = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|\.[0-9]+")
_NOISE = ("\\$", "$", "\\%", "%", "\\,", "\\!", "\\;", "\\ ")
_FRACTIONS = ("\\frac", "\\dfrac", "\\tfrac")


def extract_prediction(text: str, fallback: bool) -> str | None:
    """Return the answer text: last ``\\boxed{}`` (as `boxed_answer` reads it), else the line after the last
    ``####``, else (if ``fallback``) the last number in ``text``; None when there is none."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed_answer(boxed)
    marker = text.rfind("####")
    if marker >= 0:
        line_end = text.find("\n", marker)
        line = text[marker + 4 : line_end if line_end >= 0 else len(text)].strip()
        if parse_number(line) is None and line:
            return line.split()[0]  # "#### 18 dollars": the first word is the number
        return line
    return last_number(text) if fallback else None


def last_boxed(text: str) -> str | None:
    """Return the content of the last non-empty ``\\boxed{...}`` with nested braces matched, or None.

    An empty box is no answer: real models write "the answer is 48. The final answer is within \\boxed{}." (copying
    the prompt), so a blank box is passed over, as Math-Verify passes it over. At most MAX_BOXES boxes are tried from
    the end, each scan bounded by MAX_BOXED_CHARS, so hostile text costs little."""
    end = len(text)
    for _ in range(MAX_BOXES):
        start = text.rfind("\\boxed", 0, end)
        if start < 0:
            return None
        content = _box_content(text, start + len("\\boxed"))
        if content is None or content.strip():
            return content
        end = start
    return None


def _box_content(text: str, i: int) -> str | None:
    """The brace-matched content of a box whose name ends at `i`; None when unbalanced or too long."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, min(len(text), i + MAX_BOXED_CHARS)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced or too long


_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_DEGREES = ("^{\\circ}", "^\\circ", "\\circ", "°")
_NUMBER_THEN_WORDS = re.compile(r"(-?(?:[0-9][0-9,]*)?\.?[0-9]+)\s*[A-Za-z][A-Za-z .']*")


def boxed_answer(content: str) -> str:
    """The number a model meant in a ``\\boxed{}``, written the ways models write it, as Math-Verify reads them:
    ``42 \\text{ apples}`` and ``42 apples`` (a unit after the number), ``x = 42`` (one assignment: its right side),
    ``\\textbf{42}``, ``1{,}000``, ``90^\\circ``; ``\\$`` and ``\\%`` are dropped by `parse_number`. Anything
    else comes back unchanged (an expression such as ``42 + 1`` stays unparseable, so it scores 0). ``content`` is at
    most MAX_BOXED_CHARS long (`last_boxed`), so every step is cheap."""
    text = content.replace("{,}", ",")
    for unit in _DEGREES:
        text = text.replace(unit, "")
    # \text{...}: its content when it is the number itself, else a unit, dropped
    text = _TEXT_GROUP.sub(lambda m: m.group(1) if parse_number(m.group(1)) is not None else " ", text)
    if text.count("=") == 1:
        text = text.partition("=")[2]
    text = text.strip()
    if parse_number(text) is None and len(text) <= 4 * MAX_NUMBER_CHARS:
        words = _NUMBER_THEN_WORDS.fullmatch(text)  # "42 apples", "18 dollars"
        if words:
            return words.group(1)
    return text


def last_number(text: str) -> str | None:
    """Return the last number-like run in ``text`` (digits, commas, a dot, a leading minus)."""
    end = max(text.rfind(d) for d in _DIGITS)  # ten C-speed scans beat one Python loop
    if end < 0:
        return None
    start = end
    while start > 0 and text[start - 1] in "0123456789,." and end - start <= MAX_NUMBER_CHARS:
        start -= 1
    if end - start > MAX_NUMBER_CHARS:
        return None
    while text[start] == ",":  # "values,5": the comma belongs to the sentence
        start += 1
    start = _with_sign(text, start)
    token = text[start : end + 1]
    numerator = _numerator_before(text, start)
    if numerator and "," not in token:  # "1/24": the fraction, not its denominator (Math-Verify reads it so too)
        return numerator + "/" + token
    if parse_number(token) is None and "," in token:
        token = token.rsplit(",", 1)[1]  # "1, 2, 3" or "1,2,3": the last item
    return token


def _numerator_before(text: str, start: int) -> str:
    """The integer written right before a "/" that ends at `start` ("1/24"), or ""."""
    if start < 2 or text[start - 1] != "/" or not text[start - 2].isdigit():
        return ""
    begin = start - 1
    while begin > 0 and text[begin - 1].isdigit() and start - begin <= MAX_NUMBER_CHARS:
        begin -= 1
    return text[_with_sign(text, begin) : start - 1]


def _with_sign(text: str, start: int) -> int:
    """Where a number starting at `start` really starts: one back for a minus that is a sign, which it is only when
    it does not follow a word or a number ("5-3" is not "-3")."""
    if start > 0 and text[start - 1] == "-" and (start == 1 or not text[start - 2].isalnum()):
        return start - 1
    return start


def parse_number(text: str) -> Fraction | None:
    """Return the exact value of a number written as ``1,234``, ``2.50``, ``-3``, ``$5``, ``7%``,
    ``a/b`` or ``\\frac{a}{b}``; None for anything else or anything over 50 characters."""
    if len(text) > 4 * MAX_NUMBER_CHARS:
        return None
    for noise in _NOISE:
        text = text.replace(noise, "")
    text = text.strip().rstrip(".").strip()
    if len(text) > MAX_NUMBER_CHARS or not text:
        return None
    sign = -1 if text[0] == "-" else 1
    body = text[1:].strip() if text[0] in "+-" else text
    for prefix in _FRACTIONS:
        if body.startswith(prefix + "{") and body.endswith("}"):
            numerator, middle, denominator = body[len(prefix) + 1 : -1].partition("}{")
            return _ratio(numerator, denominator, sign) if middle else None
    if "/" in body:
        numerator, _, denominator = body.partition("/")
        return _ratio(numerator, denominator, sign)
    value = _decimal(body)
    return None if value is None else sign * value


def format_number(value: Fraction) -> str:
    """Write ``value`` canonically: ``1234``, ``-3``, ``2.5``, or ``1/3`` when no decimal is exact."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator, places = value.denominator, 0
    while denominator % 2 == 0 or denominator % 5 == 0:
        if denominator % 10 == 0:
            denominator //= 10
        elif denominator % 2 == 0:
            denominator //= 2
        else:
            denominator //= 5
        places += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0")
    return f"-{text}" if value < 0 else text


def _decimal(text: str) -> Fraction | None:
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    return Fraction(text.replace(",", "").rstrip("."))


def _ratio(numerator: str, denominator: str, sign: int) -> Fraction | None:
    top, bottom = _decimal(numerator), _decimal(denominator)
    if top is None or bottom is None or bottom == 0:
        return None
    return sign * top / bottom
