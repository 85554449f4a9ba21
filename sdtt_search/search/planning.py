"""How a search cuts its problems into chunks, the one plan of every executor.

A chunk holds as many problems as fill one ``generate`` batch with their first round of
candidates: all N without early stopping, a rule's ``round_size`` with it. The local
executor (``Search.iter_results``, ``Cascade.iter_results``) and the Ray executor
(``ray_executor``, which plans on the driver without building a ``Search``) both use it,
so a chunk is the same problems whichever runs it. No torch.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

from .stopping import StopRule

T = TypeVar("T")


def first_round(n: int, stop: StopRule | None = None) -> int:
    """Candidates a problem asks for in its first round: ``n``, or the rule's round (at most ``n``)."""
    return n if stop is None else min(stop.round_size, n)


def problems_per_batch(batch_size: int, rows: int) -> int:
    """How many problems of ``rows`` rows each share one batch of ``batch_size`` rows (at least one)."""
    return max(1, batch_size // rows)


def chunked(problems: Sequence[T], size: int) -> list[Sequence[T]]:
    """``problems`` cut into consecutive chunks of ``size`` (the last may be shorter)."""
    return [problems[lo : lo + size] for lo in range(0, len(problems), size)]
