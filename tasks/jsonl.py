"""Reading and writing JSON-lines files with ``file:line`` error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import TaskError


def read_jsonl(path: str | os.PathLike[str], required: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line of ``path``.

    Raises:
        TaskError: ``"<file>:<line>: malformed jsonl: <reason>"`` when a line is
            not a JSON object or lacks one of the ``required`` string keys, and
            ``"<file>: not found"`` when the file does not exist.
    """
    p = Path(path)
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise TaskError(f"{p}: file not found") from None
    except OSError as exc:
        raise TaskError(f"{p}: cannot read: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise TaskError(f"{p}:{lineno}: malformed jsonl: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = getattr(exc, "msg", "too deeply nested")
                raise TaskError(f"{p}:{lineno}: malformed jsonl: {reason}") from None
            if not isinstance(rec, dict):
                raise TaskError(f"{p}:{lineno}: malformed jsonl: expected an object, got {type(rec).__name__}")
            for key in required:
                if not isinstance(rec.get(key), str):
                    raise TaskError(f"{p}:{lineno}: malformed jsonl: missing string key {key!r}")
            yield lineno, rec


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write ``records`` to ``path``, one compact JSON object per line; return the count."""
    p = Path(path)
    n = 0
    with p.open("w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(dict(rec), ensure_ascii=True, separators=(", ", ": ")) + "\n")
            n += 1
    return n
