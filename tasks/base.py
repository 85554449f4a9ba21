"""The common interface of every task: :class:`Problem` and :class:`Task`."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from .errors import TaskError
from .partial import UNKNOWN_VERDICT, PartialVerdict


@dataclass(frozen=True)
class Problem:
    """One problem of a task.

    Attributes:
        id: stable identifier, e.g. ``"cd3-test-000017"`` or ``"gsm8k-test-0017"``.
        prompt: the raw question / input (not yet formatted for a model).
        reference: the gold answer (canonical answer string or solution).
        meta: task-specific extras (worked solution, sizes, ...).
    """

    id: str
    prompt: str
    reference: str
    meta: Mapping[str, Any] = field(default_factory=dict)


class Task(abc.ABC):
    """Abstract base of every task.

    Subclasses set :attr:`name` and :attr:`has_verifier` and implement the
    abstract methods. Methods that read model output (``extract_answer``,
    ``is_correct``, ``verify``) must never raise and never hang on hostile text.
    """

    #: canonical task name, as accepted by :func:`tasks.load_task`
    name: str = ""
    #: True when :meth:`verify` is a gold-free check (returns bool, not None)
    has_verifier: bool = False
    #: split names accepted by :meth:`problems`
    splits: tuple[str, ...] = ("train", "test")

    def __init__(self, **options: Any) -> None:
        #: the resolved options of this instance (defaults filled in)
        self.options: dict[str, Any] = dict(options)

    # -- data ---------------------------------------------------------------
    @abc.abstractmethod
    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        """Return the problems of ``split`` (the first ``limit`` ones if given)."""

    @abc.abstractmethod
    def train_examples(self, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Yield ``(prompt_text, target_text)`` training pairs, forever."""

    # -- formatting ---------------------------------------------------------
    @abc.abstractmethod
    def format_prompt(self, problem: Problem) -> str:
        """The text the model conditions on."""

    @abc.abstractmethod
    def format_target(self, problem: Problem) -> str:
        """The text a model is trained to emit after the prompt."""

    # -- reading model output -----------------------------------------------
    @abc.abstractmethod
    def extract_answer(self, text: str) -> str | None:
        """Canonical answer key of a model output (for voting), or None."""

    @abc.abstractmethod
    def is_correct(self, problem: Problem, text: str) -> bool:
        """Whether ``text`` answers ``problem`` correctly (uses the reference)."""

    def verify(self, problem: Problem, text: str) -> bool | None:
        """Gold-free check of ``text``; ``None`` where the task has none."""
        return None

    def partial_check(self, problem: Problem, pieces: Sequence[str | None], ended: bool = False) -> PartialVerdict:
        """Whether a partly decoded completion is already wrong (:mod:`tasks.partial`):
        ``pieces`` holds one decoded token text per generated position, None where the
        position is still masked; ``ended``: the completion ends after the last piece (an
        end-of-sequence token is committed there). ``unknown`` by default."""
        return UNKNOWN_VERDICT

    def score(self, problem: Problem, text: str) -> dict[str, float]:
        """Named readings of one output beside ``is_correct`` (GSM8K: lm-eval's
        ``strict`` and ``flexible``; Sudoku: ``matches_reference``, ``cell_accuracy``),
        averaged over candidates in metrics.json's ``scores``; none by default."""
        return {}

    # -- helpers ------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise TaskError(
                f"unknown split {split!r} for task {self.name!r}; available: {', '.join(self.splits)}"
            )

    @staticmethod
    def _check_limit(limit: int | None) -> None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise TaskError(f"limit must be a non-negative integer or None, got {limit!r}")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{type(self).__name__}({opts})"
