"""Small input checks shared by the configs and the CLIs."""
from __future__ import annotations


def is_positive_int(value) -> bool:
    """Whether ``value`` is an int >= 1 (a bool is not a count, though Python calls it an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
