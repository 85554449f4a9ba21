"""Best-of-N search: sample N candidates per problem, score them, select, measure.

``Search`` runs in-process; ``sdtt_search.search.ray_executor`` runs the same
``generate_problems`` on Ray actors. A candidate is a function of (seed, problem,
candidate index) alone, bit for bit (its text and log-probabilities): its randomness
is seeded by (seed, problem id, index), the samplers decode each row as it would
decode alone (a threshold's step budget is the row's own), and the networks are
batch-invariant (``sdtt_search.model.invariant``). So candidates do not depend on how
problems are packed into batches (``batch_size``, ``limit``, a resumed run) or spread
over workers, and a search that stops early (``until_stopped`` with a
``stopping.StopRule``: a verified candidate, a settled majority) holds exactly the
first candidates of the full one. This is tested on CPU for the zoo's networks (our
DiT and Llama denoisers, the AR twins on the ``transformers`` backend); the vLLM
backend batches by its own rules (batch-invariant only in vLLM's batch-invariant
mode, ``VLLM_BATCH_INVARIANT=1`` on a GPU), ``hf:`` models run their own kernels, and
on CUDA the promise is untested. A problem's ``nfe`` and ``seconds`` are shares of the
calls it ran in, so they do depend on its batch-mates. ``cascade.Cascade`` chains such
searches over several models, each seeing only what the ones before it did not accept.
With ``strategy="repair"`` a diffusion model re-denoises the blamed positions of each
candidate that fails the verifier before anything is selected (``repair``); with
``strategy="smc"`` a problem's candidates are decoded together as particles, the ones a
partial check finds wrong replaced by copies of the others as they go (``particles``).
"""
from __future__ import annotations

import hashlib
import inspect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..diffusion.blocks import takes_noise
from ..diffusion.rng import stratified_uniforms
from ..interface import Model
from ..sampling_config import SamplerConfig

from .planning import chunked, first_round, problems_per_batch
from .order_search import OrderConfig, draw_order_search, draw_prefix_beam
from .particles import PARTICLE_COUNTS, ParticleConfig, draw_particles, draw_prefixes
from .repair import RepairConfig, check_strategy, repair_sampler, repair_seed, stop_ids, to_blame
from .report import summarise, summarise_stopped
from .results import Candidate, ProblemResult
from .select import SELECTORS, RewardFn
from .stopping import StopRule


#: most candidates one problem may ask for: a problem's candidates are held in memory
#: (about a kilobyte each) and written as one results line
MAX_SAMPLES = 100_000
#: characters per token no tokenizer exceeds in practice: a longer prompt is refused unread
MAX_CHARS_PER_TOKEN = 64


def check_samples(n: int) -> None:
    """A one-line error for a sample count that is not a count or would not fit in memory."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"samples={n!r} must be a positive integer")
    if n > MAX_SAMPLES:
        raise ValueError(f"samples={n} is over {MAX_SAMPLES} per problem: a problem's candidates are held in memory "
                         "and written as one line; run several searches with different seeds instead")


def check_prompt(model, problem_id: str, prompt: str, gen_length: int) -> None:
    """A one-line error when a prompt cannot fit the model's context (``model.context_length``
    tokens, if the model says), checked on characters before any tokenizing."""
    context = getattr(model, "context_length", None)
    if not context:
        return
    room = int(context) - int(gen_length or 0)
    if len(prompt) > MAX_CHARS_PER_TOKEN * max(room, 1):
        raise ValueError(f"problem {problem_id}: its prompt has {len(prompt)} characters, far more than the "
                         f"{room} tokens model {getattr(model, 'name', '')} has for a prompt ({context} context - "
                         f"{gen_length} generated)")
    encode = getattr(getattr(model, "tokenizer", None), "encode", None)
    if callable(encode):
        tokens = len(encode(prompt))
        if tokens > room:
            raise ValueError(f"problem {problem_id}: its prompt has {tokens} tokens, more than the {room} model "
                             f"{getattr(model, 'name', '')} has for a prompt ({context} context - {gen_length} "
                             "generated); shorten the prompt (fewer shots) or use a model with a longer context")


#: what each strategy needs of a model, by family: the method it calls (None: refused)
STRATEGY_NEEDS = {"repair": {"diffusion": "infill", "ar": None}, "smc": {"diffusion": "infill", "ar": "extend"},
                  "order": {"diffusion": "predict", "ar": "extend"}}


def check_model_for(strategy: str, model) -> None:
    """A one-line error when ``model`` cannot run ``strategy``: an AR model cannot redraw
    positions in the middle (repair), every strategy but best-of-N needs its method
    (``STRATEGY_NEEDS``), and a noise-conditioned student is tied to the uniforms of one
    whole decode (particles and beams draw otherwise)."""
    if strategy not in STRATEGY_NEEDS:
        return
    name = getattr(model, "name", type(model).__name__)
    ar = getattr(model, "kind", None) == "ar"
    needed = STRATEGY_NEEDS[strategy]["ar" if ar else "diffusion"]
    if needed is None:
        raise ValueError(f"strategy={strategy} decodes positions in any order, which an autoregressive model "
                         f"({name}) cannot do without redrawing all that follows; use strategy=best_of_n")
    if not callable(getattr(model, needed, None)):
        if strategy == "order":
            raise ValueError(f"strategy=order needs a diffusion model whose predict gives every position's "
                             f"distribution, or an AR model that extends prefixes; {name} has neither: "
                             "use strategy=best_of_n")
        if ar:
            raise ValueError(f"strategy={strategy} on an AR model extends prefixes (extend); {name} has none: "
                             "use strategy=best_of_n")
        raise ValueError(f"strategy={strategy} needs a model that re-denoises masked positions (infill); "
                         f"{name} has none: use strategy=best_of_n")
    if strategy == "smc" and takes_noise(getattr(model, "model", None)):
        raise ValueError(f"strategy=smc: {name} is noise-conditioned (it is shown the uniforms of a whole "
                         "decode, which particles draw afresh each stage); use strategy=best_of_n")
    if strategy == "order" and takes_noise(getattr(model, "model", None)):
        raise ValueError(f"strategy=order: {name} is noise-conditioned (it expects the uniforms its draws are "
                         "made at, which a beam's choices are not); use strategy=best_of_n")


def candidate_seed(seed: int, problem_id: str, index: int) -> int:
    """63-bit seed of candidate ``index`` of a problem (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{seed}|{problem_id}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def problem_seed(seed: int, problem_id: str) -> int:
    """63-bit seed shared by a problem's candidates (the shift of their stratified
    uniforms, ``SamplerConfig.stratify``); index -1 is no candidate's."""
    return candidate_seed(seed, problem_id, -1)


@dataclass
class SearchResult:
    """Per-problem results plus the aggregate metrics (see ``report.summarise``)."""

    problems: list[ProblemResult]
    metrics: dict = field(default_factory=dict)


class Search:
    """Generate and score N candidates per problem with one model.

    Args:
        model: a loaded model (``sdtt_search.load_model``, ``sdtt_search.interface.Model``):
            anything with ``generate(prompts, sampler, seeds=...) -> Completions``.
        task: a ``tasks.Task``.
        sampler: sampling settings (default: the model's recommended steps).
        batch_size: rows per network call; problems are packed when N is smaller.
        reward_fn: optional external reward model, (prompt, completion) -> float.
        seed: base seed of the per-candidate seeds.
        strategy: ``"best_of_n"`` (draw, score, select) or ``"repair"``: a diffusion model
            then re-denoises the blamed positions of every candidate that fails the task's
            verifier, as ``repair`` says (``sdtt_search.search.repair``), before selection;
            a repaired candidate replaces the one drawn, in its place.
        repair: ``RepairConfig`` (rounds, steps, k) of ``strategy="repair"`` (default
            ``RepairConfig()``).
        smc: ``ParticleConfig`` (every, weights) of ``strategy="smc"``, particle search
            (``sdtt_search.search.particles``; default ``ParticleConfig()``): a problem's N
            candidates (with early stopping, a round's) are decoded together as particles.
        order: ``OrderConfig`` (branch) of ``strategy="order"``, order search
            (``sdtt_search.search.order_search``): a problem's N candidates are a beam over
            which positions to commit next and what.
        temporal: also read an answer from each sampler step's prediction of the clean
            completion (``Candidate.trail``; a diffusion model's ``generate(trace=True)``),
            for the ``temporal`` selector and temporal@k (``select.temporal``).

    With ``sampler.stratify`` = H, candidate i of a problem draws its first H tokens
    at point i of a randomised Halton sequence shared by the problem's candidates
    (``rng.stratified_uniforms``), passed to ``generate`` as ``heads``.
    """

    def __init__(
        self,
        model: Model,
        task,
        sampler: SamplerConfig | None = None,
        *,
        batch_size: int = 256,
        reward_fn: RewardFn | None = None,
        seed: int = 0,
        strategy: str = "best_of_n",
        repair: RepairConfig | None = None,
        smc: ParticleConfig | None = None,
        order: OrderConfig | None = None,
        temporal: bool = False,
    ):
        check_strategy(strategy)
        for name, options in (("repair", repair), ("smc", smc), ("order", order)):
            if options is not None and strategy != name:
                raise ValueError(f"{name}={options} is for strategy={name!r}, not {strategy!r}")
        check_model_for(strategy, model)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be a positive integer")
        self.model = model
        self.task = task
        self.sampler = sampler or model.default_sampler()
        self.batch_size = batch_size
        self.reward_fn = reward_fn
        self.seed = seed
        self.strategy = strategy
        self.repair = (repair or RepairConfig()) if strategy == "repair" else None
        self.smc = (smc or ParticleConfig()) if strategy == "smc" else None
        self.order = (order or OrderConfig()) if strategy == "order" else None
        self.temporal = bool(temporal)
        if self.temporal and "trace" not in inspect.signature(model.generate).parameters:
            raise ValueError(f"temporal voting reads the predictions of a diffusion decode's steps; "
                             f"{getattr(model, 'name', type(model).__name__)} gives none (generate takes no trace=): "
                             "set temporal=false")
        if self.temporal and strategy != "best_of_n":
            raise ValueError(f"temporal voting reads the steps of candidates drawn in one decode; strategy={strategy} "
                             "changes them after: use strategy=best_of_n with temporal=true")
        if self.sampler.stratify and "heads" not in inspect.signature(model.generate).parameters:
            raise ValueError(f"sampler.stratify={self.sampler.stratify} needs a model whose generate takes heads= "
                             f"(stratified uniforms); {type(model).__name__}.generate does not: set sampler.stratify=0")

    # ------------------------------------------------------------------ core
    def _score(self, problem, prompt: str, text: str, logprobs: list[float],
               repaired_rounds: int | None = None, trail: list[str] | None = None) -> Candidate:
        task = self.task
        verified = task.verify(problem, text) if task.has_verifier else None
        return Candidate(
            text=text,
            answer=task.extract_answer(text),
            correct=bool(task.is_correct(problem, text)),
            verified=None if verified is None else bool(verified),
            score=sum(logprobs) / len(logprobs) if logprobs else 0.0,
            reward=None if self.reward_fn is None else float(self.reward_fn(prompt, text)),
            repaired_rounds=repaired_rounds,
            trail=None if trail is None else [[task.extract_answer(t), bool(task.is_correct(problem, t))]
                                              for t in trail],
        )

    def generate_problems(self, problems: Sequence, n: int) -> list[ProblemResult]:
        """Candidates for each problem, packing rows of several problems per batch.

        Returns one ``ProblemResult`` per problem, in order.
        """
        check_samples(n)
        drawn = self._draw(problems, [(p, i) for p in range(len(problems)) for i in range(n)])
        scored = self._score_rows(problems, drawn)
        spent = self._repair(problems, drawn, scored)
        return self._results(problems, drawn, scored, spent)

    def until_verified(self, problems: Sequence, max_samples: int, round_size: int,
                       fill: bool = False) -> list[ProblemResult]:
        """Verify-and-stop best-of-N: ``until_stopped`` with ``StopRule(round_size, fill=fill)``."""
        return self.until_stopped(problems, max_samples, StopRule(round_size, fill=fill))

    def until_stopped(self, problems: Sequence, max_samples: int, rule: StopRule) -> list[ProblemResult]:
        """Best-of-N that stops early: candidates in rounds of ``rule.round_size`` per
        problem (the rounds of all problems still open packed into batches), a problem
        closing at the end of the first round after which ``rule.done`` holds (a verified
        candidate; a settled majority), or at ``max_samples``.

        Candidate i of a problem is the one ``generate_problems`` draws (same seed), so a
        problem's candidates are the first ones of its full best-of-N: its answer is the
        full run's at the samples drawn, and solving takes on average fewer samples
        (``ProblemResult.candidates`` holds as many as were drawn).
        """
        rule.check(self.task)
        check_samples(max_samples)
        drawn: dict[tuple[int, int], tuple] = {}
        scored: dict[tuple[int, int], Candidate] = {}
        spent: dict[int, dict] = {}
        open_, lo = list(range(len(problems))), 0
        while open_ and lo < max_samples:
            hi = min(lo + rule.round_for(len(open_), self.batch_size), max_samples)
            new = self._draw(problems, [(p, i) for p in open_ for i in range(lo, hi)])
            new_scored = self._score_rows(problems, new)
            for p, cost in self._repair(problems, new, new_scored).items():  # a round's candidates, repaired
                spent[p] = {key: spent.get(p, {}).get(key, 0) + value for key, value in cost.items()}
            drawn |= new
            scored |= new_scored
            open_ = [p for p in open_ if not rule.done([scored[(p, i)] for i in range(hi)], max_samples - hi)]
            lo = hi
        return self._results(problems, drawn, scored, spent)

    def _draw(self, problems: Sequence, rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
        """Generate candidate i of problem p for each (p, i) in ``rows``, ``batch_size``
        rows per call: {(p, i): (text, logprobs, positions, nfe share, seconds share, token
        ids, per-position log-probs, particle counts, step texts)} (each call's network calls
        and time are shared out over its rows; token ids and log-probs None when the model
        does not return them; particle counts None but with ``strategy="smc"``; step texts,
        each step's prediction of the clean completion, None but with ``temporal``)."""
        if self.strategy in ("smc", "order"):
            return self._draw_groups(problems, rows)
        prompts = [self.task.format_prompt(p) for p in problems]
        gen_length = self.sampler.gen_length or getattr(self.model, "gen_length", 0)
        for p in sorted({p for p, _ in rows}):
            check_prompt(self.model, problems[p].id, prompts[p], gen_length)
        out_rows: dict[tuple[int, int], tuple] = {}
        for lo in range(0, len(rows), self.batch_size):
            chunk = rows[lo : lo + self.batch_size]
            extra = {}
            if self.temporal:
                extra["trace"] = True
            if self.sampler.stratify:
                extra["heads"] = stratified_uniforms([problem_seed(self.seed, problems[p].id) for p, _ in chunk],
                                                     [i for _, i in chunk], self.sampler.stratify)
            start = time.perf_counter()
            out = self.model.generate(
                [prompts[p] for p, _ in chunk], self.sampler,
                seeds=[candidate_seed(self.seed, problems[p].id, i) for p, i in chunk], **extra,
            )
            elapsed = time.perf_counter() - start
            for row, (p, i) in enumerate(chunk):  # the call's cost (network calls, time) split by rows
                out_rows[(p, i)] = (out.texts[row], out.logprobs[row], out.positions, out.nfe / len(chunk),
                                    elapsed / len(chunk), None if out.tokens is None else out.tokens[row],
                                    None if out.token_logprobs is None else out.token_logprobs[row], None,
                                    None if out.trails is None else out.trails[row])
        return out_rows

    def _draw_groups(self, problems: Sequence, rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
        """``_draw`` for the strategies whose candidates of a problem are made together: its
        rows are one group of particles (``strategy="smc"``: ``particles.draw_particles``, an AR
        model's prefixes ``particles.draw_prefixes``) or one beam (``strategy="order"``:
        ``order_search.draw_order_search``, an AR model's ``draw_prefix_beam``)."""
        gen_length = self.sampler.gen_length or getattr(self.model, "gen_length", 0)
        prompts = [self.task.format_prompt(p) for p in problems]
        for p in sorted({p for p, _ in rows}):
            check_prompt(self.model, problems[p].id, prompts[p], gen_length)
        ar = getattr(self.model, "kind", None) == "ar"
        if self.strategy == "order":
            draw = draw_prefix_beam if ar else draw_order_search
        else:
            draw = draw_prefixes if ar else draw_particles
        return draw(self, problems, prompts, rows)

    def _repair(self, problems: Sequence, drawn: dict[tuple[int, int], tuple],
                scored: dict[tuple[int, int], Candidate]) -> dict[int, dict]:
        """With ``strategy="repair"``: repair the candidates of ``drawn`` in place (their rows
        and their scored candidates), round by round, ``batch_size`` infill rows per call.
        Returns per problem what its repairs cost: {p: {"rows", "nfe", "seconds", "positions"}}
        (each call's network calls and time shared out over its rows). A no-op otherwise."""
        if self.strategy != "repair":
            return {}
        config, tokenizer = self.repair, self.model.tokenizer
        sampler = repair_sampler(self.sampler, config.steps)
        prompts = {p: self.task.format_prompt(problems[p]) for p in {p for p, _ in drawn}}
        spent: dict[int, dict] = {}
        for key, candidate in scored.items():
            if drawn[key][5] is None:
                raise ValueError(f"strategy=repair: model {getattr(self.model, 'name', '')} returned no token ids "
                                 "from generate; use strategy=best_of_n")
            scored[key] = Candidate(**{**candidate.__dict__, "repaired_rounds": 0})
        for round_ in range(1, config.rounds + 1):
            todo = []  # (key, blamed positions), in (problem, index) order
            for key in sorted(drawn):
                blame = to_blame(self.task, problems[key[0]], tokenizer, drawn[key][5], drawn[key][6], config.k,
                                 scored[key].verified)
                if blame:
                    todo.append((key, blame))
            if not todo:
                break
            for lo in range(0, len(todo), self.batch_size):
                chunk = todo[lo : lo + self.batch_size]
                rows = []
                for key, blame in chunk:
                    row = list(drawn[key][5])
                    for j in blame:
                        row[j] = None
                    rows.append(row)
                start = time.perf_counter()
                out = self.model.infill([prompts[p] for (p, _), _ in chunk], rows, sampler,
                                        seeds=[repair_seed(self.seed, problems[p].id, i, round_) for (p, i), _ in chunk])
                elapsed = time.perf_counter() - start
                for r, ((p, i), blame) in enumerate(chunk):
                    old = drawn[(p, i)]
                    blamed = set(blame)
                    tokens = out.tokens[r]
                    full = [out.token_logprobs[r][j] if j in blamed else old[6][j] for j in range(len(tokens))]
                    end = next((j for j, t in enumerate(tokens) if t in stop_ids(tokenizer)), len(tokens) - 1)
                    logprobs = full[: end + 1]
                    drawn[(p, i)] = (out.texts[r], logprobs, old[2], old[3], old[4], tokens, full, old[7], None)
                    scored[(p, i)] = self._score(problems[p], prompts[p], out.texts[r], logprobs, round_)
                    cost = spent.setdefault(p, {"rows": 0, "nfe": 0.0, "seconds": 0.0, "positions": 0})
                    cost["rows"] += 1
                    cost["nfe"] += out.nfe / len(chunk)
                    cost["seconds"] += elapsed / len(chunk)
                    cost["positions"] += out.positions
        return spent

    def _score_rows(self, problems: Sequence, drawn: dict[tuple[int, int], tuple]) -> dict[tuple[int, int], Candidate]:
        prompts = {p: self.task.format_prompt(problems[p]) for p in {p for p, _ in drawn}}
        return {(p, i): self._score(problems[p], prompts[p], row[0], row[1], trail=row[8])
                for (p, i), row in drawn.items()}

    def _results(self, problems: Sequence, drawn: dict[tuple[int, int], tuple],
                 scored: dict[tuple[int, int], Candidate], spent: dict[int, dict] | None = None) -> list[ProblemResult]:
        """One ``ProblemResult`` per problem from ``_draw``'s rows and their scored
        candidates, candidates by index; ``spent``: what repairs cost per problem (added to
        its network calls, positions and seconds)."""
        counts = Counter(p for p, _ in drawn)
        results = []
        for p_index, problem in enumerate(problems):
            prompt = self.task.format_prompt(problem)
            rows = [drawn[(p_index, i)] for i in range(counts[p_index])]
            candidates = [scored[(p_index, i)] for i in range(counts[p_index])]
            result = ProblemResult(
                id=problem.id, prompt=prompt, reference=problem.reference, candidates=candidates,
                nfe=sum(r[3] for r in rows), tokens=sum(len(r[1]) for r in rows), positions=sum(r[2] for r in rows),
                seconds=sum(r[4] for r in rows),
            )
            if self.strategy == "repair":
                cost = {"rows": 0, "nfe": 0.0, "seconds": 0.0, "positions": 0, **(spent or {}).get(p_index, {})}
                result.nfe += cost["nfe"]
                result.seconds += cost["seconds"]
                result.positions += cost["positions"]
                result.repair = {key: cost[key] for key in ("rows", "nfe", "seconds")}
            if self.strategy == "smc":
                result.particles = {key: sum(r[7][key] for r in rows) for key in PARTICLE_COUNTS}
            result.selected = {name: pick(candidates) for name, pick in SELECTORS.items()
                               if (name != "reward" or self.reward_fn is not None)
                               and (name != "temporal" or self.temporal)}
            results.append(result)
        return results

    def problems_per_batch(self, n: int) -> int:
        """How many problems share one batch of ``batch_size`` rows."""
        check_samples(n)
        return problems_per_batch(self.batch_size, n)

    def iter_results(self, problems: Sequence, n: int, *, stop: StopRule | None = None) -> Iterable[ProblemResult]:
        """Stream results chunk by chunk (what the local executor writes as it goes);
        with ``stop``, early stopping (``until_stopped``) over chunks of problems whose
        first round fills a batch."""
        for chunk in chunked(problems, self.problems_per_batch(first_round(n, stop))):
            yield from (self.generate_problems(chunk, n) if stop is None else self.until_stopped(chunk, n, stop))

    def best_of_n(self, problems: Sequence, n: int, *, on_result: Callable[[ProblemResult], None] | None = None,
                  round_size: int | None = None, stop_on: str = "verified",
                  stop_confidence: float | None = None, stop_fill: bool = False) -> SearchResult:
        """Run the search in-process and summarise it (``report.summarise``). With
        ``round_size``: at most ``n`` samples per problem, drawn in rounds of
        ``round_size`` until one verifies (``stop_on="verified"``) or the majority answer is
        settled (``"majority"``, exactly or at ``stop_confidence``); ``stop_fill``: rounds
        with few problems left open draw more per problem, up to a batch (``StopRule.fill``);
        see ``stopping`` and ``report.summarise_stopped``."""
        stop = None if round_size is None else StopRule(round_size, stop_on, stop_confidence, stop_fill)
        if stop is not None:
            stop.check(self.task)
        start = time.perf_counter()
        results = []
        for result in self.iter_results(problems, n, stop=stop):
            results.append(result)
            if on_result is not None:
                on_result(result)
        wall = time.perf_counter() - start
        if stop is not None:
            return SearchResult(problems=results, metrics=summarise_stopped(results, n, stop, self.task.has_verifier,
                                                                            wall_s=wall))
        return SearchResult(problems=results, metrics=summarise(results, n, has_verifier=self.task.has_verifier, wall_s=wall,
                                                                first_k=self.sampler.stratify > 0))
