"""A tiny, safe arithmetic parser for Countdown answers: exact Fractions, no eval, hard limits."""

from __future__ import annotations

from fractions import Fraction

MAX_CHARS = 200
MAX_DIGITS = 10
MAX_DEPTH = 50
ALL_OPERATORS = "+-*/"

# Models often write the typographic multiplication and division signs.
_ALIASES = {"×": "*", "÷": "/"}
_DIGITS = "0123456789"


class ParseError(ValueError):
    """The text is not a well-formed expression within the limits (or divides by zero)."""


def parse_expression(text: str, operators: str = ALL_OPERATORS) -> tuple[Fraction, list[int]]:
    """Parse ``text`` and return its exact value and its integer literals in order.

    Grammar: non-negative integer literals, binary ``+ - * /`` (also ``×`` and ``÷``) restricted to
    ``operators``, parentheses and whitespace. No unary minus, no powers, nothing else. Raises
    ParseError for anything else, for texts over 200 characters, literals over 10 digits, nesting
    deeper than 50, or a division by zero.
    """
    if len(text) > MAX_CHARS:
        raise ParseError(f"longer than {MAX_CHARS} characters")
    parser = _Parser(_tokenize(text, operators))
    value = parser.expression(0)
    if parser.pos != len(parser.tokens):
        raise ParseError(f"unexpected {parser.tokens[parser.pos]!r}")
    return value, parser.literals


def _tokenize(text: str, operators: str) -> list[str]:
    """Split ``text`` into integer literals, operators and parentheses."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = _ALIASES.get(text[i], text[i])
        if char in _DIGITS:
            start = i
            while i < len(text) and text[i] in _DIGITS:
                i += 1
            if i - start > MAX_DIGITS:
                raise ParseError(f"integer literal longer than {MAX_DIGITS} digits")
            tokens.append(text[start:i])
            continue
        if char in operators or char in "()":
            tokens.append(char)
        elif not char.isspace():
            raise ParseError(f"unexpected character {char!r}")
        i += 1
    return tokens


class _Parser:
    """Recursive descent over tokens: expression = term (+|- term)*, term = factor (*|/ factor)*."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.literals: list[int] = []

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expression(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self._peek() in ("*", "/"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.factor(depth)
            if op == "*":
                value = value * right
            elif right == 0:
                raise ParseError("division by zero")
            else:
                value = value / right
        return value

    def factor(self, depth: int) -> Fraction:
        token = self._peek()
        if token is None:
            raise ParseError("unexpected end of expression")
        self.pos += 1
        if token == "(":
            if depth >= MAX_DEPTH:
                raise ParseError(f"parentheses nested deeper than {MAX_DEPTH}")
            value = self.expression(depth + 1)
            if self._peek() != ")":
                raise ParseError("missing ')'")
            self.pos += 1
            return value
        if token[0] in _DIGITS:
            self.literals.append(int(token))
            return Fraction(int(token))
        raise ParseError(f"unexpected {token!r}")
