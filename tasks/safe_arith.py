"""A small, bounded parser for lists of ``a op b = c`` equations.

This is what reads Countdown solutions such as ``"44-15=29,79-29=50"``. It is a
hand-written tokenizer plus a fixed grammar; there is no ``eval``, no sympy and
no recursion, so hostile text cannot run code, blow the stack or hang:

    text      := equation (SEP equation)*
    equation  := NUMBER OP NUMBER "=" NUMBER
    SEP       := "," | newline       (spaces/tabs allowed around every token)
    OP        := "+" | "-" | "*" | "/"
    NUMBER    := ASCII digits, at most MAX_DIGITS of them (no sign, no decimals)

Everything is bounded: total length (:data:`MAX_TEXT_CHARS`), number of
equations (:data:`MAX_EQUATIONS`) and digits per number (:data:`MAX_DIGITS`).
Functions return ``None``/``False`` on anything unexpected and never raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MAX_TEXT_CHARS = 10_000
MAX_EQUATIONS = 32
MAX_DIGITS = 18

OPS = ("+", "-", "*", "/")
_DIGITS = frozenset("0123456789")  # ASCII only: unicode digits are not digits here
_SPACE = frozenset(" \t\r")
_SEPS = frozenset(",\n")


@dataclass(frozen=True)
class Step:
    """One equation ``a op b = c`` as written (not yet checked)."""

    a: int
    op: str
    b: int
    c: int

    def __str__(self) -> str:
        return f"{self.a}{self.op}{self.b}={self.c}"


def _tokenize(text: str) -> list[str] | None:
    """Split into NUMBER / OP / '=' / SEP tokens; None on any other character."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
                if j - i > MAX_DIGITS:
                    return None
            tokens.append(text[i:j])
            i = j
            continue
        if ch in _SPACE:
            i += 1
            continue
        if ch in OPS or ch == "=":
            tokens.append(ch)
        elif ch in _SEPS:
            tokens.append(",")
        else:
            return None
        i += 1
    return tokens


def parse_equations(text: object) -> list[Step] | None:
    """Parse ``text`` into a list of :class:`Step`, or None if it is not one.

    Leading/trailing whitespace and separators are ignored. No arithmetic is
    checked here (see :func:`evaluate_step`).
    """
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            return None
        tokens = _tokenize(text)
        if tokens is None:
            return None
        # drop leading / trailing separators
        lo, hi = 0, len(tokens)
        while lo < hi and tokens[lo] == ",":
            lo += 1
        while hi > lo and tokens[hi - 1] == ",":
            hi -= 1
        tokens = tokens[lo:hi]
        if not tokens:
            return None
        steps: list[Step] = []
        i = 0
        while True:
            if len(steps) >= MAX_EQUATIONS or i + 5 > len(tokens):
                return None
            a, op, b, eq, c = tokens[i : i + 5]
            if not (a.isascii() and a.isdigit() and b.isascii() and b.isdigit() and c.isascii() and c.isdigit()):
                return None
            if op not in OPS or eq != "=":
                return None
            steps.append(Step(int(a), op, int(b), int(c)))
            i += 5
            if i == len(tokens):
                return steps
            if tokens[i] != ",":
                return None
            i += 1
    except Exception:  # pragma: no cover - defensive: a parser never raises
        return None


def evaluate_step(a: int, op: str, b: int) -> int | None:
    """Exact integer result of ``a op b``; None for inexact/zero division."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0 or a % b != 0:
            return None
        return a // b
    return None


def check_arithmetic(steps: Sequence[Step]) -> bool:
    """Whether every step's stated result equals its exact integer value."""
    try:
        return all(evaluate_step(s.a, s.op, s.b) == s.c for s in steps)
    except Exception:  # pragma: no cover
        return False


def format_equations(steps: Sequence[Step]) -> str:
    """Inverse of :func:`parse_equations`: ``"a op b=c,..."`` without spaces."""
    return ",".join(str(s) for s in steps)
