"""Task registry: :func:`load_task` and :func:`available_tasks`."""

from __future__ import annotations

import inspect
from typing import Any

from .base import Task
from .countdown import CountdownTask
from .errors import TaskError
from .gsm8k import GSM8KTask
from .sudoku import SudokuTask
from .wordproblems import WordProblemsTask

_TASKS: dict[str, type[Task]] = {
    "countdown": CountdownTask,
    "gsm8k": GSM8KTask,
    "sudoku": SudokuTask,
    "wordproblems": WordProblemsTask,
}

#: alias -> (task name, default options)
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"cd{n}": ("countdown", {"n": n}) for n in (3, 4, 5)},
    **{f"countdown{n}": ("countdown", {"n": n}) for n in (3, 4, 5)},
    "sudoku4": ("sudoku", {"size": 4}),
    "sudoku6": ("sudoku", {"size": 6}),
    "sudoku9": ("sudoku", {"size": 9}),
    "openai/gsm8k": ("gsm8k", {}),
}


def available_tasks() -> list[str]:
    """Canonical task names, sorted."""
    return sorted(_TASKS)


def task_aliases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Aliases accepted by :func:`load_task` and what they stand for."""
    return {k: (v[0], dict(v[1])) for k, v in _ALIASES.items()}


def load_task(name: str, **options: Any) -> Task:
    """Build a task by name (or alias such as ``"cd3"``) with its options.

    Raises:
        TaskError: (a ``ValueError``) for an unknown name or option, with a
            one-line message listing what is available.
    """
    if not isinstance(name, str):
        raise TaskError(f"unknown task {name!r}; available: {', '.join(available_tasks())}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key in _ALIASES:
        key, preset = _ALIASES[key]
        for opt, val in preset.items():
            if opt in options and options[opt] != val:
                raise TaskError(f"task {name!r} means {opt}={val}, but {opt}={options[opt]!r} was passed")
        options = {**preset, **options}
    cls = _TASKS.get(key)
    if cls is None:
        raise TaskError(f"unknown task {name!r}; available: {', '.join(available_tasks())}")
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise TaskError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for task {cls.name!r}; valid: {', '.join(params)}"
        )
    return cls(**options)
