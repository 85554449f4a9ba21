"""What a search produces: candidates per problem and the selections made."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Candidate:
    """One sampled completion and how it scored.

    Attributes:
        text: decoded completion; answer: ``task.extract_answer(text)`` (the voting key);
        correct: ``task.is_correct`` against the reference; verified: the task's
        gold-free verifier (None where the task has none); score: mean model
        log-probability of the generated tokens (nats/token); reward: external
        reward model score, if one was given; repaired_rounds: how many times it was
        re-denoised (``Search(strategy="repair")``; None without repair, left out of
        results lines then); trail: per sampler step, in step order, the answer read from
        the step's prediction of the clean completion and whether it is correct, as
        ``[answer, correct]`` (``Search(temporal=True)``; None without, left out of
        results lines then).
    """

    text: str
    answer: str | None
    correct: bool
    verified: bool | None
    score: float
    reward: float | None = None
    repaired_rounds: int | None = None
    trail: list[list] | None = None  # [[answer | None, correct], ...]


@dataclass
class ProblemResult:
    """All candidates of one problem, the selections and the compute they took."""

    id: str
    prompt: str
    reference: str
    candidates: list[Candidate]
    selected: dict[str, str | None] = field(default_factory=dict)
    nfe: float = 0.0  # network calls, shared out by rows when problems share a batch
    tokens: int = 0  # generated tokens up to and including EOS, over all candidates
    positions: int = 0  # generated positions (gen_length per candidate)
    seconds: float = 0.0  # sampling time attributed to this problem
    # a cascade (``search.cascade``): candidates and seconds per stage, in stage order
    # (0 where an earlier stage verified); None for a single-model search
    stage_samples: list[int] | None = None
    stage_seconds: list[float] | None = None
    # repair (``Search(strategy="repair")``): infill rows run, and their shares of network calls
    # and seconds (already in nfe, positions and seconds); None without repair
    repair: dict[str, float] | None = None
    # particle search (``Search(strategy="smc")``): partial checks run, particles dropped
    # (each took a survivor's state), particles started again; None without it
    particles: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict: a score that is not a finite number is written as null."""
        data = asdict(self)
        for key in ("repair", "particles"):  # results lines without them stay as they were
            if data[key] is None:
                del data[key]
        for c in data["candidates"]:
            for key in ("repaired_rounds", "trail"):
                if c[key] is None:
                    del c[key]
            for key in ("score", "reward"):
                if isinstance(c[key], float) and not math.isfinite(c[key]):
                    c[key] = None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ProblemResult":
        data = dict(data)
        data["candidates"] = [Candidate(**{**c, "score": float("-inf") if c.get("score") is None else c["score"]})
                              for c in data["candidates"]]
        return cls(**data)
