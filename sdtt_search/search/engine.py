"""Best-of-N search: sample N candidates per problem, score them, select, measure.

``Search`` runs in-process; ``sdtt_search.search.ray_executor`` runs the same
``generate_problems`` on Ray actors. Each candidate's randomness is seeded by
(seed, problem id, candidate index), so results do not depend on how problems
are packed into batches or spread over workers.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sdtt_search.diffusion import SamplerConfig

from .results import Candidate, ProblemResult
from .select import SELECTORS, RewardFn


def candidate_seed(seed: int, problem_id: str, index: int) -> int:
    """63-bit seed of candidate ``index`` of a problem (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{seed}|{problem_id}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class SearchResult:
    """Per-problem results plus the aggregate metrics (see ``report.summarise``)."""

    problems: list[ProblemResult]
    metrics: dict = field(default_factory=dict)


class Search:
    """Generate and score N candidates per problem with one model.

    Args:
        model: a loaded model (``sdtt_search.load_model``): anything with
            ``generate(prompts, sampler, seeds=...) -> Generation``.
        task: a ``tasks.Task``.
        sampler: sampling settings (default: the model's recommended steps).
        batch_size: rows per network call; problems are packed when N is smaller.
        reward_fn: optional external reward model, (prompt, completion) -> float.
        seed: base seed of the per-candidate seeds.
    """

    def __init__(
        self,
        model,
        task,
        sampler: SamplerConfig | None = None,
        *,
        batch_size: int = 256,
        reward_fn: RewardFn | None = None,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be a positive integer")
        self.model = model
        self.task = task
        self.sampler = sampler or model.default_sampler()
        self.batch_size = batch_size
        self.reward_fn = reward_fn
        self.seed = seed

    # ------------------------------------------------------------------ core
    def _score(self, problem, prompt: str, text: str, logprobs: list[float]) -> Candidate:
        task = self.task
        verified = task.verify(problem, text) if task.has_verifier else None
        return Candidate(
            text=text,
            answer=task.extract_answer(text),
            correct=bool(task.is_correct(problem, text)),
            verified=None if verified is None else bool(verified),
            score=sum(logprobs) / len(logprobs) if logprobs else 0.0,
            reward=None if self.reward_fn is None else float(self.reward_fn(prompt, text)),
        )

    def generate_problems(self, problems: Sequence, n: int) -> list[ProblemResult]:
        """Candidates for each problem, packing rows of several problems per batch.

        Returns one ``ProblemResult`` per problem, in order.
        """
        if n < 1:
            raise ValueError(f"samples={n} must be a positive integer")
        rows = [(p_index, i) for p_index in range(len(problems)) for i in range(n)]
        prompts = [self.task.format_prompt(p) for p in problems]
        texts: dict[tuple[int, int], tuple[str, list[float], int]] = {}
        nfe = [0.0] * len(problems)
        seconds = [0.0] * len(problems)
        for lo in range(0, len(rows), self.batch_size):
            chunk = rows[lo : lo + self.batch_size]
            start = time.perf_counter()
            out = self.model.generate(
                [prompts[p] for p, _ in chunk], self.sampler,
                seeds=[candidate_seed(self.seed, problems[p].id, i) for p, i in chunk],
            )
            elapsed = time.perf_counter() - start
            share = {}
            for p, _ in chunk:
                share[p] = share.get(p, 0) + 1
            for p, count in share.items():  # split the batch's cost (network calls, time) by rows
                nfe[p] += out.nfe * count / len(chunk)
                seconds[p] += elapsed * count / len(chunk)
            for row, (p, i) in enumerate(chunk):
                texts[(p, i)] = (out.texts[row], out.logprobs[row], out.positions)
        results = []
        for p_index, problem in enumerate(problems):
            candidates, tokens, positions = [], 0, 0
            for i in range(n):
                text, logprobs, width = texts[(p_index, i)]
                candidates.append(self._score(problem, prompts[p_index], text, logprobs))
                tokens += len(logprobs)
                positions += width
            result = ProblemResult(
                id=problem.id, prompt=prompts[p_index], reference=problem.reference, candidates=candidates,
                nfe=nfe[p_index], tokens=tokens, positions=positions, seconds=seconds[p_index],
            )
            result.selected = {name: pick(candidates) for name, pick in SELECTORS.items()
                               if name != "reward" or self.reward_fn is not None}
            results.append(result)
        return results

    def problems_per_batch(self, n: int) -> int:
        """How many problems share one batch of ``batch_size`` rows."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"samples={n!r} must be a positive integer")
        return max(1, self.batch_size // n)

    def iter_results(self, problems: Sequence, n: int) -> Iterable[ProblemResult]:
        """Stream results chunk by chunk (what the local executor writes as it goes)."""
        step = self.problems_per_batch(n)
        for lo in range(0, len(problems), step):
            yield from self.generate_problems(problems[lo : lo + step], n)

    def best_of_n(self, problems: Sequence, n: int, *, on_result: Callable[[ProblemResult], None] | None = None) -> SearchResult:
        """Run the search in-process and summarise it (``report.summarise``)."""
        from .report import summarise

        start = time.perf_counter()
        results = []
        for result in self.iter_results(problems, n):
            results.append(result)
            if on_result is not None:
                on_result(result)
        wall = time.perf_counter() - start
        return SearchResult(problems=results, metrics=summarise(results, n, has_verifier=self.task.has_verifier, wall_s=wall))
