"""Checks of partly decoded completions: is a partial state already wrong, and where?

A masked diffusion model commits tokens in any order, so a search can look at a
completion before it is finished and drop (or repair) it as soon as what is
committed cannot be part of a correct answer. A partial completion is a sequence
of *pieces*, one per generated position: the decoded text of a committed token, or
``None`` for a position still masked (a hole stands for exactly one token).

:func:`PartialVerdict` says ``violated`` (no filling of the holes can make the
completion correct), ``consistent`` (every complete part that can be checked is
right) or ``unknown`` (nothing could be checked), and for ``violated`` which
positions are to blame: the committed positions of the part found wrong, the ones
a repair should mask and draw again.

Every check is bounded (pieces, characters, digits) and never raises; model text
never reaches ``eval``. The task-specific rules live with each task
(``Task.partial_check``); the helpers here are shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

VIOLATED, CONSISTENT, UNKNOWN = "violated", "consistent", "unknown"
#: most positions a partial completion may have (longer: ``unknown``)
MAX_PIECES = 4096
#: most characters a partial completion's committed text may have
MAX_CHARS = 32_768


@dataclass(frozen=True)
class PartialVerdict:
    """What a partial check found.

    Attributes:
        status: ``"violated"``, ``"consistent"`` or ``"unknown"``.
        blame: positions (indices into the pieces) to blame, sorted; empty unless violated.
        reason: a short human-readable reason (for logs and tests).
    """

    status: str
    blame: tuple[int, ...] = ()
    reason: str = ""

    @property
    def violated(self) -> bool:
        return self.status == VIOLATED


UNKNOWN_VERDICT = PartialVerdict(UNKNOWN)


def well_formed(pieces: object) -> bool:
    """Whether ``pieces`` is a bounded sequence of strings and Nones."""
    if not isinstance(pieces, (list, tuple)) or len(pieces) > MAX_PIECES:
        return False
    total = 0
    for piece in pieces:
        if piece is None:
            continue
        if not isinstance(piece, str):
            return False
        total += len(piece)
        if total > MAX_CHARS:
            return False
    return True


@dataclass(frozen=True)
class Run:
    """A maximal stretch of committed positions: its text and, per character, the
    position it came from. ``after_hole``/``before_hole``: whether a hole (a masked
    position) precedes / follows it."""

    text: str
    owner: tuple[int, ...]
    after_hole: bool
    before_hole: bool

    def positions(self, start: int, end: int) -> tuple[int, ...]:
        """The positions owning characters ``start:end`` of the run."""
        return tuple(sorted(set(self.owner[start:end])))


def committed_runs(pieces: Sequence[str | None]) -> Iterator[Run]:
    """The maximal hole-free stretches of ``pieces``, in order."""
    text: list[str] = []
    owner: list[int] = []
    after_hole = False
    for i, piece in enumerate(list(pieces) + [None]):
        if piece is None:
            if text or owner:
                yield Run("".join(text), tuple(owner), after_hole, i < len(pieces))
            text, owner, after_hole = [], [], i < len(pieces)
            continue
        text.append(piece)
        owner.extend([i] * len(piece))


# ---------------------------------------------------------------------------
# a bounded exact evaluator for calculator annotations (<<48/2=24>>)
# ---------------------------------------------------------------------------
MAX_EXPR_CHARS = 80
MAX_NUMBER_DIGITS = 18
MAX_DEPTH = 8


def evaluate_expression(text: str) -> Fraction | None:
    """The exact value of ``text``, an arithmetic expression of decimal numbers, ``+ - * /``,
    unary minus and parentheses; None if it is not one, divides by zero, or is longer
    than :data:`MAX_EXPR_CHARS`, nested deeper than :data:`MAX_DEPTH` or has a number
    of more than :data:`MAX_NUMBER_DIGITS` digits. Never raises."""
    try:
        if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
            return None
        tokens = _expression_tokens(text)
        if tokens is None:
            return None
        value, rest = _sum(tokens, 0)
        return value if rest == len(tokens) else None
    except (_Invalid, ZeroDivisionError, RecursionError, ValueError):
        return None


class _Invalid(Exception):
    pass


def _expression_tokens(text: str) -> list | None:
    tokens: list = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        elif ch.isascii() and (ch.isdigit() or ch == "."):
            j = i
            while j < len(text) and text[j].isascii() and (text[j].isdigit() or text[j] in ".,"):
                j += 1
            number = text[i:j].replace(",", "")
            if number.count(".") > 1 or sum(c.isdigit() for c in number) > MAX_NUMBER_DIGITS or number in (".", ""):
                return None
            tokens.append(Fraction(number))
            i = j
        else:
            return None
    return tokens


def _sum(tokens: list, i: int, depth: int = 0) -> tuple[Fraction, int]:
    value, i = _product(tokens, i, depth)
    while i < len(tokens) and tokens[i] in ("+", "-"):
        op = tokens[i]
        right, i = _product(tokens, i + 1, depth)
        value = value + right if op == "+" else value - right
    return value, i


def _product(tokens: list, i: int, depth: int) -> tuple[Fraction, int]:
    value, i = _unary(tokens, i, depth)
    while i < len(tokens) and tokens[i] in ("*", "/"):
        op = tokens[i]
        right, i = _unary(tokens, i + 1, depth)
        value = value * right if op == "*" else value / right
    return value, i


def _unary(tokens: list, i: int, depth: int) -> tuple[Fraction, int]:
    if i >= len(tokens):
        raise _Invalid
    if tokens[i] == "-":
        value, i = _unary(tokens, i + 1, depth + 1)
        return -value, i
    if tokens[i] == "(":
        if depth >= MAX_DEPTH:
            raise _Invalid
        value, i = _sum(tokens, i + 1, depth + 1)
        if i >= len(tokens) or tokens[i] != ")":
            raise _Invalid
        return value, i + 1
    if isinstance(tokens[i], Fraction):
        return tokens[i], i + 1
    raise _Invalid
