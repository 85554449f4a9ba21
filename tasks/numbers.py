"""Safe normalisation of numbers written by a model.

Only ASCII digits are accepted (``'٣'`` or ``'３'`` are *not* digits here), the
number of digits is bounded, and nothing ever raises: invalid input gives None.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation, localcontext

#: longest numeric token (characters, after removing ``$`` and ``,``) accepted
MAX_NUMBER_CHARS = 64

_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def normalize_number(text: object) -> str | None:
    """Return the canonical string of a number, or None if ``text`` is not one.

    Accepts an optional leading ``-``, ``$`` signs, thousands commas and trailing
    periods: ``"$1,000."`` -> ``"1000"``, ``"-0"`` -> ``"0"``, ``"5.00"`` -> ``"5"``,
    ``"0.50"`` -> ``"0.5"``, ``".5"`` -> ``"0.5"``. Exponents, unicode digits,
    spaces inside the number and anything longer than :data:`MAX_NUMBER_CHARS`
    are rejected.
    """
    try:
        if not isinstance(text, str) or len(text) > 4 * MAX_NUMBER_CHARS:
            return None
        s = text.strip().replace("$", "").replace(",", "")
        s = s.rstrip(".")
        if not s or len(s) > MAX_NUMBER_CHARS or not _NUMBER_RE.fullmatch(s):
            return None
        with localcontext(Context(prec=2 * MAX_NUMBER_CHARS)):  # exact for bounded input
            d = Decimal(s)
            if d == d.to_integral_value():
                return str(int(d))
            return format(d.normalize(), "f")
    except (InvalidOperation, ValueError, ArithmeticError, TypeError):
        return None


def numbers_equal(a: object, b: object) -> bool:
    """Whether two number strings denote the same value (never raises)."""
    na, nb = normalize_number(a), normalize_number(b)
    return na is not None and na == nb
