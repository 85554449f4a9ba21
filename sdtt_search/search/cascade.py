"""Cascades: a cheap model first, a stronger one only where the cheap one is not sure.

A ``Cascade`` runs early-stopping best-of-N (``Search.until_stopped``) with each of its
stages in turn. A stage *accepts* a problem when its rule holds on the candidates it drew:

* ``on="verified"`` (tasks with a verifier: Countdown, Sudoku): a candidate verified;
  the stage draws rounds until one does, at most its sample cap;
* ``on="majority"`` with a ``confidence`` c (any task, e.g. GSM8K): the posterior
  probability that its leading answer beats the runner-up reached c (the Beta rule of
  ``stopping``); agreement among a model's samples as the signal that it knows the answer,
  as model cascades built on answer consistency do.

The problems a stage does not accept go on to the next stage, so a fast few-step
diffusion student can answer most problems in a few samples and an autoregressive model
take the hard remainder. Each stage is a ``Search`` of its own (model, sampler, batch
size, seed).

A problem's result holds every candidate drawn for it, stage by stage, with
``ProblemResult.stage_samples`` / ``stage_seconds`` saying how many and how long per
stage; its selections (the answer) are those of its answering stage: the one that
accepted it, or the last one it reached.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..checks import is_positive_int
from .engine import Search, SearchResult
from .planning import chunked, first_round
from .report import summarise_cascade
from .results import ProblemResult
from .stages import Take, run_stages
from .stopping import StopRule


@dataclass(frozen=True)
class Stage:
    """One stage of a cascade: draw rounds of ``round_size`` candidates per problem with
    ``search`` until the rule holds (``on``, ``confidence``: see the module), at most
    ``samples`` per problem."""

    search: Search
    samples: int
    round_size: int
    on: str = "verified"
    confidence: float | None = None
    fill: bool = False

    def __post_init__(self) -> None:
        if not is_positive_int(self.samples):
            raise ValueError(f"a cascade stage's samples={self.samples!r} must be a positive integer")
        self.rule  # the rule's one-line errors
        if self.on == "majority" and self.confidence is None:
            raise ValueError("a cascade stage on the majority needs a confidence (stop_confidence, e.g. 0.9): "
                             "a settled exact majority at the sample cap says nothing about being sure")

    @property
    def rule(self) -> StopRule:
        return StopRule(self.round_size, self.on, self.confidence, self.fill)

    @property
    def name(self) -> str:
        model = self.search.model
        return str(getattr(model, "name", None) or type(model).__name__)


class Cascade:
    """Early-stopping best-of-N over stages of models (see the module).

    Args:
        stages: in the order they run; each stage sees only the problems no stage before
            it accepted.
    """

    def __init__(self, stages: Sequence[Stage]):
        stages = list(stages)
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        task = stages[0].search.task
        for i, stage in enumerate(stages):
            if stage.search.task.name != task.name:
                raise ValueError(f"cascade stage {i + 1} searches task {stage.search.task.name!r}, stage 1 "
                                 f"{task.name!r}; give every stage the same task")
            stage.rule.check(task)  # a task without a verifier cannot accept on one
            for j in range(i):
                earlier = stages[j].search
                if earlier.model is stage.search.model and earlier.seed == stage.search.seed:
                    raise ValueError(f"cascade stages {j + 1} and {i + 1} use the same model and seed, so the later "
                                     "one would redraw the same candidates; give its Search another seed")
        self.stages = stages
        self.task = task

    def run(self, problems: Sequence) -> list[ProblemResult]:
        """One merged ``ProblemResult`` per problem, in order (see the module and ``stages.run_stages``)."""
        problems = list(problems)
        merged: list[ProblemResult | None] = [None] * len(problems)

        def draw(s: int, open_problems: list, take: Take) -> None:
            stage = self.stages[s]
            for j, result in enumerate(stage.search.until_stopped(open_problems, stage.samples, stage.rule)):
                take(j, result)

        def emit(p: int, result: ProblemResult) -> None:
            merged[p] = result

        rewarded = all(stage.search.reward_fn is not None for stage in self.stages)
        run_stages(problems, [stage.rule for stage in self.stages], draw, emit, rewarded=rewarded)
        return merged

    def problems_per_batch(self) -> int:
        """Problems per chunk: as many as fill stage 1's batch with their first round."""
        first = self.stages[0]
        return first.search.problems_per_batch(first_round(first.samples, first.rule))

    def iter_results(self, problems: Sequence) -> Iterable[ProblemResult]:
        """Stream merged results chunk by chunk (every stage runs on a chunk before the next)."""
        problems = list(problems)
        for chunk in chunked(problems, self.problems_per_batch()):
            yield from self.run(chunk)

    def best_of_n(self, problems: Sequence, *,
                  on_result: Callable[[ProblemResult], None] | None = None) -> SearchResult:
        """Run the cascade in-process and summarise it (``report.summarise_cascade``)."""
        start = time.perf_counter()
        results = []
        for result in self.iter_results(problems):
            results.append(result)
            if on_result is not None:
                on_result(result)
        return SearchResult(problems=results, metrics=summarise_cascade(
            results, self.describe(), self.task.has_verifier, wall_s=time.perf_counter() - start))

    def describe(self) -> list[dict]:
        """Each stage's model name, engine, sampler, sample cap, round size and rule (metrics.json's ``stages``)."""
        return [{"model": s.name, "backend": getattr(s.search.model, "backend_name", "sdtt-search"),
                 "sampler": s.search.sampler.to_dict(), "samples": s.samples, "round_size": s.round_size, "on": s.on,
                 "confidence": s.confidence, "fill": s.fill}
                for s in self.stages]
