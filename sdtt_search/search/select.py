"""Pick one answer out of N candidates."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from .results import Candidate

# (prompt text, completion text) -> reward; higher is better.
RewardFn = Callable[[str, str], float]


def majority(candidates: Sequence[Candidate]) -> str | None:
    """Most frequent extracted answer (self-consistency); ties go to the earliest."""
    counts = Counter(c.answer for c in candidates if c.answer is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(c.answer for c in candidates if c.answer is not None and counts[c.answer] == top)


def by_verifier(candidates: Sequence[Candidate]) -> str | None:
    """Answer of the highest-scored verified candidate; None if none verified."""
    verified = [c for c in candidates if c.verified]
    return max(verified, key=lambda c: c.score).answer if verified else None


def by_score(candidates: Sequence[Candidate]) -> str | None:
    """Answer of the candidate with the highest mean log-probability."""
    return max(candidates, key=lambda c: c.score).answer if candidates else None


def by_reward(candidates: Sequence[Candidate]) -> str | None:
    """Answer of the candidate with the highest external reward."""
    scored = [c for c in candidates if c.reward is not None]
    return max(scored, key=lambda c: c.reward).answer if scored else None


SELECTORS: dict[str, Callable[[Sequence[Candidate]], str | None]] = {
    "majority": majority,
    "verifier": by_verifier,
    "confidence": by_score,
    "reward": by_reward,
}
