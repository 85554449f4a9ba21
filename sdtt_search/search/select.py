"""Pick one answer out of N candidates."""
from __future__ import annotations

import math
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


#: a temporal vote weighs the prediction of step s of S (1-based) by exp(-TEMPORAL_DECAY * (S - s) / S):
#: the last step's by 1, the first's by about exp(-TEMPORAL_DECAY); a candidate's final answer by 1
TEMPORAL_DECAY = 1.0


def temporal_votes(candidate: Candidate) -> dict[str, float]:
    """One candidate's weighted votes: its final answer (weight 1) and the answer of each
    step's prediction of the clean completion (``Candidate.trail``), later steps weighing
    more (``TEMPORAL_DECAY``). Temporal self-consistency voting (Wang et al. 2025, "Time Is
    a Feature: Exploiting Temporal Dynamics in Diffusion Language Models"): a masked
    diffusion decode often reaches the right answer at an intermediate step and then
    overwrites it."""
    votes: dict[str, float] = {}
    if candidate.answer is not None:
        votes[candidate.answer] = 1.0
    trail = candidate.trail or []
    for s, (answer, _) in enumerate(trail, start=1):
        if answer is not None:
            votes[answer] = votes.get(answer, 0.0) + math.exp(-TEMPORAL_DECAY * (len(trail) - s) / len(trail))
    return votes


def temporal(candidates: Sequence[Candidate]) -> str | None:
    """The answer with the most weight over every candidate's ``temporal_votes``; ties go to
    the answer that appears first."""
    total: dict[str, float] = {}
    for c in candidates:
        for answer, weight in temporal_votes(c).items():
            total[answer] = total.get(answer, 0.0) + weight
    return max(total, key=total.get) if total else None


SELECTORS: dict[str, Callable[[Sequence[Candidate]], str | None]] = {
    "majority": majority,
    "verifier": by_verifier,
    "confidence": by_score,
    "reward": by_reward,
    "temporal": temporal,
}
