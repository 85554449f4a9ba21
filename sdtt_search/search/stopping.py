"""When a problem's best-of-N may stop drawing: rules over the candidates drawn so far.

A search with a ``StopRule`` draws ``round_size`` candidates per open problem at a time
and closes a problem once its rule holds (or N are drawn). With ``fill=True`` a round
whose rows would not fill a generate batch draws more per open problem, up to a batch
(``batch_size // open problems``, at most N in all): the late rounds, when few problems are
left open, cost about one call sequence each whatever their rows, so filling them takes
fewer rounds for a few more samples.

* ``on="verified"``: a candidate verified (tasks with a verifier: Countdown, Sudoku).
* ``on="majority"``: the majority answer is settled. Exact (``confidence=None``): the
  leading answer's count exceeds the runner-up's plus every sample still to come, so
  maj@N over all N samples would give the same answer. With ``confidence=c``: the
  posterior probability that the leader is more frequent than the runner-up reaches c
  (uniform Beta prior on their shares, Adaptive-Consistency's Beta rule; Aggarwal et
  al. 2023); fewer samples, an answer that can differ from maj@N.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..checks import is_positive_int
from ..dataclass_dict import dataclass_from_dict
from .results import Candidate

STOP_ON = ("verified", "majority")


def top_two(answers: Sequence[str | None]) -> tuple[int, int]:
    """Counts of the most and second most frequent answers (None is no answer)."""
    counts = sorted(Counter(a for a in answers if a is not None).values(), reverse=True) + [0, 0]
    return counts[0], counts[1]


def leader_probability(leader: int, runner_up: int) -> float:
    """P(p > 1/2) for p ~ Beta(leader + 1, runner_up + 1): the posterior probability that
    the leading answer is the more frequent of the two, from their counts.

    With integer parameters the Beta tail is a binomial one: P(p > 1/2) =
    I_{1/2}(runner_up + 1, leader + 1) = P(Binomial(leader + runner_up + 1, 1/2) >= runner_up + 1).
    """
    n = leader + runner_up + 1
    return sum(math.comb(n, j) for j in range(runner_up + 1, n + 1)) / 2 ** n


@dataclass(frozen=True)
class StopRule:
    """Draw ``round_size`` candidates per problem at a time; stop as ``on`` says (see the module)."""

    round_size: int
    on: str = "verified"
    confidence: float | None = None
    fill: bool = False

    def __post_init__(self) -> None:
        """One-line errors for a malformed rule (before any task or model is loaded)."""
        if not is_positive_int(self.round_size):
            raise ValueError(f"round_size (CLI: stop_round)={self.round_size!r} must be a positive integer")
        if self.on not in STOP_ON:
            raise ValueError(f"stop_on={self.on!r} is unknown; use one of {', '.join(STOP_ON)}")
        if self.confidence is not None and (self.on != "majority" or not 0.5 < float(self.confidence) < 1):
            raise ValueError(f"stop_confidence={self.confidence!r} must be in (0.5, 1) and goes with stop_on=majority")
        if not isinstance(self.fill, bool):
            raise ValueError(f"stop_fill={self.fill!r} must be true or false")

    def round_for(self, open_problems: int, batch_size: int) -> int:
        """Candidates per open problem in the next round: ``round_size``, or with ``fill`` as
        many as fill one batch of ``batch_size`` rows when that is more."""
        if not self.fill or open_problems <= 0:
            return self.round_size
        return max(self.round_size, batch_size // open_problems)

    def to_dict(self) -> dict:
        """The rule's fields (``fill`` only when set, so runs saved before it resume)."""
        out = {"round_size": self.round_size, "on": self.on, "confidence": self.confidence}
        return {**out, "fill": True} if self.fill else out

    @classmethod
    def from_dict(cls, fields: dict) -> "StopRule":
        """The rule of ``to_dict``'s fields, or of a cascade stage's description (which
        holds them beside its model and sampler); missing ones take their defaults."""
        return dataclass_from_dict(cls, {**fields, "round_size": int(fields["round_size"])}, label="stop rule field",
                                   ignore_unknown=True)

    def check(self, task) -> None:
        """A one-line error when ``task`` cannot run this rule (no verifier to stop on)."""
        if self.on == "verified" and not task.has_verifier:
            raise ValueError(f"task {task.name} has no verifier to stop on; use stop_on=majority")

    def done(self, candidates: Sequence[Candidate], remaining: int) -> bool:
        """Whether a problem with these candidates, and ``remaining`` samples still allowed, stops."""
        if self.on == "verified":
            return any(c.verified for c in candidates)
        leader, runner_up = top_two([c.answer for c in candidates])
        if self.confidence is None:
            return leader > runner_up + remaining
        return leader > runner_up and leader_probability(leader, runner_up) >= self.confidence
