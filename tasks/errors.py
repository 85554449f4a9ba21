"""Errors raised by the ``tasks`` package.

Every user-facing mistake (unknown task, bad option, missing data set, malformed
file) is reported as a :class:`TaskError` whose message is a single line.
Parsers of model output never raise: they return ``None``/``False`` instead.
"""

from __future__ import annotations


class TaskError(ValueError):
    """A one-line, user-facing error about a task, its options or its data."""

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))
