"""A bounded, never-raising wrapper around ``math-verify`` for ``\\boxed{}`` answers.

``math_verify`` (and sympy behind it) is imported lazily, only when a boxed
answer that is not a plain number has to be compared. Model text never reaches
it unsanitised: only the content of the last ``\\boxed{...}`` is passed, at most
:data:`MAX_BOXED_CHARS` long, with brace depth <= :data:`MAX_DEPTH`, built from
a whitelist of characters and LaTeX commands, with no exponent (``^``, ``**``),
factorial (``!``), scientific notation (``1e999999999``) or other construct that could make sympy compute for long.

math-verify's timeouts use ``signal.alarm``, which only works on the main
thread; off the main thread they are disabled (``None``) — the whitelist and
length bound are what keep calls fast there.
"""

from __future__ import annotations

import re
import threading

#: longest text searched for ``\boxed{`` (longer text: no boxed answer)
MAX_TEXT_CHARS = 32_768
#: longest boxed content handed to math-verify
MAX_BOXED_CHARS = 200
MAX_DEPTH = 8
MAX_DIGIT_RUN = 64

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ALLOWED_CHARS_RE = re.compile(r"[0-9A-Za-z \t.,+\-*/(){}\[\]\\$%:=~<>;|']*", re.ASCII)
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|.)", re.ASCII)
_ALLOWED_COMMANDS = frozenset(
    "frac dfrac tfrac text textbf textrm mathrm mathbf mbox left right cdot times div "
    "$ % , ; : ! { } quad qquad space".split()
) | {" "}
_SCI_RE = re.compile(r"[0-9.]\s*[eE]\s*[+\-]?\s*[0-9]", re.ASCII)  # 1e999999999
_DIGIT_RUN_RE = re.compile(r"[0-9]{%d,}" % (MAX_DIGIT_RUN + 1), re.ASCII)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None.

    Bounded: text longer than :data:`MAX_TEXT_CHARS`, content longer than
    :data:`MAX_BOXED_CHARS` or nested deeper than :data:`MAX_DEPTH` give None.
    """
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            return None
        starts = [m.end() for m in _BOXED_RE.finditer(text)]
        if not starts:
            return None
        start = starts[-1]
        depth = 1
        end = min(len(text), start + MAX_BOXED_CHARS + 1)
        for i in range(start, end):
            ch = text[i]
            if ch == "{" and (i == 0 or text[i - 1] != "\\"):
                depth += 1
                if depth > MAX_DEPTH:
                    return None
            elif ch == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[start:i]
        return None
    except Exception:  # pragma: no cover
        return None


def has_boxed(text: str) -> bool:
    """Whether ``text`` (at most :data:`MAX_TEXT_CHARS` long) holds a ``\\boxed{`` or ``\\fbox{``."""
    return isinstance(text, str) and len(text) <= MAX_TEXT_CHARS and _BOXED_RE.search(text) is not None


def is_safe_latex(content: str) -> bool:
    """Whether boxed ``content`` is small and harmless enough for math-verify."""
    if not isinstance(content, str) or not content.strip() or len(content) > MAX_BOXED_CHARS:
        return False
    if not _ALLOWED_CHARS_RE.fullmatch(content) or "**" in content or _DIGIT_RUN_RE.search(content) or _SCI_RE.search(content):
        return False
    # "!" is only allowed as the LaTeX thin negative space "\!"
    if "!" in content.replace("\\!", ""):
        return False
    return all(m.group(1) in _ALLOWED_COMMANDS for m in _COMMAND_RE.finditer(content))


def boxed_equals(content: str, gold: str) -> bool:
    """Whether the boxed ``content`` equals ``gold`` according to math-verify.

    Returns False (never raises) when the content is unsafe, math-verify is not
    installed, or anything goes wrong.
    """
    try:
        if not is_safe_latex(content) or not isinstance(gold, str) or len(gold) > MAX_BOXED_CHARS:
            return False
        from math_verify import parse, verify  # lazy: pulls in sympy

        on_main = threading.current_thread() is threading.main_thread()
        timeout = 2 if on_main else None
        g = parse("\\boxed{" + gold + "}", parsing_timeout=timeout)
        p = parse("\\boxed{" + content + "}", parsing_timeout=timeout)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=timeout))
    except BaseException as exc:  # math-verify may raise its own TimeoutException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False


def boxed_value(content: str) -> str | None:
    """The number math-verify reads a safe boxed ``content`` as (``\\frac{36}{2}`` ->
    ``"18"``, ``\\frac{1}{3}`` -> ``"1/3"``, ``3.50`` -> ``"3.5"``), None when it reads
    no single number (``1 + 2125`` stays an unevaluated sum) or anything goes wrong."""
    try:
        if not is_safe_latex(content):
            return None
        from math_verify import parse  # lazy: pulls in sympy
        from sympy import Float, Integer, Rational

        timeout = 2 if threading.current_thread() is threading.main_thread() else None
        parsed = parse("\\boxed{" + content + "}", parsing_timeout=timeout)
        value = parsed[0] if parsed else None
        if isinstance(value, Integer):
            return str(int(value))
        if isinstance(value, Rational):
            return f"{value.p}/{value.q}"
        if isinstance(value, Float):
            from .numbers import normalize_number

            return normalize_number(str(value))
        return None
    except BaseException as exc:  # math-verify may raise its own TimeoutException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None
