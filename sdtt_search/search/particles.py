"""Particle search: K partial completions per problem decoded in step, the ones the
task's partial check finds already wrong replaced by copies of the others.

A masked diffusion model commits a completion's tokens over ``steps`` sampler steps, in
any order, so a partial state can be checked long before it is finished. Particle
search (``Search(strategy="smc")``) decodes a problem's K candidates together in
*stages* of ``every`` steps. After each stage (except the last) every particle's
committed tokens go through ``Task.partial_check`` (:mod:`tasks.partial`); a particle
found ``violated`` is dropped and takes the state of a surviving one (chosen uniformly,
or in proportion to the exp of its committed tokens' mean log-probability with
``weights="confidence"``), then continues from there with its own fresh noise. When
every particle of a problem is violated there is nothing to copy and they go on as they
are (the verifier rejects them at the end). This is sequential Monte Carlo with a 0/1 potential
(Doucet, de Freitas and Gordon 2001) over the denoising trajectory, as in
verifier-guided resampling at each denoising step (S3, arXiv 2604.06260) and the
pruning of partial solutions in Prism (arXiv 2602.01842). An autoregressive model can
only prune a prefix; a diffusion particle may be checked wherever it has committed.

Stage j of a decode of ``steps`` = T steps in one block runs the sampler with T - j*every
steps and stops after ``every`` of them (``stop_after``): the linear schedules (MDLM's
grid, LLaDA's transfer counts) continue where they stopped. With blocks (semi-
autoregressive decoding, ``block_length``) a stage is a whole number of blocks (``every``
is rounded up to one) and each stage call runs all T steps' schedule, the blocks already
decoded being skipped. Either way, with no particle ever dropped, a candidate is decoded
on the schedule one call of T steps follows, except that its noise is drawn afresh each
stage. Every particle is at the same stage, so rows of any problems share a batch as
they would decode alone. Particle i of a problem draws stage j from
(seed, problem id, i, j) alone (``particle_seed``) and a problem's resampling from
(seed, problem id, its first particle, j) (``resample_seed``), so the candidates do not
depend on the batch, the executor or a resume. No torch here; the model's ``infill``
samples.

An autoregressive model gets the same search over prefixes (``draw_prefixes``, its fair
counterpart): a stage extends each particle by ``every`` tokens (``ARModel.extend``, the
prompt and the prefix run again through the network), and the partial check reads the
prefix, an equation being complete once the comma after it is drawn.
"""
from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..checks import is_positive_int
from ..sampling_config import SamplerConfig
from .repair import stop_ids

WEIGHTS = ("uniform", "confidence")
#: what a problem's ``ProblemResult.particles`` counts
PARTICLE_COUNTS = ("checks", "dropped", "stranded")


@dataclass(frozen=True)
class ParticleConfig:
    """How particle search runs (``Search(strategy="smc")``).

    Attributes:
        every: sampler steps between checks (a stage); 1 checks after every step.
        weights: how a dropped particle picks the survivor it copies: ``"uniform"``, or
            ``"confidence"`` (in proportion to exp of the survivor's mean committed
            log-probability, nats per token).
    """

    every: int = 1
    weights: str = "uniform"

    def __post_init__(self) -> None:
        if not is_positive_int(self.every):
            raise ValueError(f"smc.every={self.every!r} must be a positive integer (sampler steps between checks)")
        if self.weights not in WEIGHTS:
            raise ValueError(f"smc.weights={self.weights!r} is unknown; use one of {', '.join(WEIGHTS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def particle_seed(seed: int, problem_id: str, index: int, stage: int) -> int:
    """63-bit seed of stage ``stage`` (0, 1, ...) of particle ``index`` of a problem."""
    return _seed(seed, problem_id, index, "smc", stage)


def resample_seed(seed: int, problem_id: str, first: int, stage: int) -> int:
    """63-bit seed of the resampling after stage ``stage`` of the particle group whose first
    particle is ``first``."""
    return _seed(seed, problem_id, first, "smc-resample", stage)


def particle_sampler(sampler: SamplerConfig) -> SamplerConfig:
    """The sampler of particle search: the search's, without a confidence threshold,
    approximate key/value caches, a window or stratified heads, so that every particle
    commits on the same linear schedule and a stage is ``every`` steps for all of them
    (blocks and the exact prefix cache of a causal denoiser stay; with blocks, ``steps`` is
    rounded down to a multiple of them, at least one step per block)."""
    return sampler.replace(threshold=None, window=None, kv_cache=None, kv_refresh=None, stratify=0)


def stages(steps: int, every: int, blocks: int = 1) -> list[tuple[int, int | None]]:
    """(steps argument, stop_after) of each stage of a ``steps``-step decode of ``blocks``
    blocks checked every ``every`` steps (rounded up to whole blocks when there are
    several); the last stage runs to the end (stop_after None)."""
    if blocks > 1:
        if steps % blocks:
            raise ValueError(f"strategy=smc decodes {blocks} blocks in {steps} steps, which do not divide: "
                             "set sampler.steps to a multiple of the blocks (gen_length / block_length)")
        per_block = steps // blocks
        every = -(-every // per_block) * per_block
    out = []
    for start in range(0, steps, every):
        left = steps - start
        out.append((left if blocks == 1 else steps, every if left > every else None))
    return out


def partial_pieces(tokenizer, tokens: Sequence[int | None]) -> tuple[list[str | None], bool]:
    """A partial completion as ``Task.partial_check`` reads it: each generated position's
    text (None where still masked) before the first committed EOS (or other stop id), and
    whether there is one."""
    stops = stop_ids(tokenizer)
    end = next((j for j, t in enumerate(tokens) if t in stops), None)
    span = tokens if end is None else tokens[:end]
    return [None if t is None else tokenizer.decode([t]) for t in span], end is not None


def parents(alive: Sequence[bool], scores: Sequence[float], weights: str, rng: random.Random) -> list[int]:
    """For each particle the index of the particle whose state it continues from: itself
    when alive, or when no particle is; a survivor drawn by ``weights`` otherwise.
    ``scores``: mean committed log-probability per particle."""
    survivors = [k for k, ok in enumerate(alive) if ok]
    if not survivors:
        return list(range(len(alive)))
    if weights == "confidence":
        top = max(scores[k] for k in survivors)
        w = [math.exp(scores[k] - top) if math.isfinite(scores[k]) else 0.0 for k in survivors]
        if not sum(w) > 0:
            w = [1.0] * len(survivors)
    else:
        w = [1.0] * len(survivors)
    return [k if ok else rng.choices(survivors, weights=w)[0] for k, ok in enumerate(alive)]


def mean_committed(logprobs: Sequence[float], tokens: Sequence[int | None]) -> float:
    """Mean log-probability of a particle's committed tokens (0.0 with none committed)."""
    values = [lp for lp, t in zip(logprobs, tokens) if t is not None]
    return sum(values) / len(values) if values else 0.0


def summarise_particles(results: Sequence) -> dict[str, Any]:
    """metrics.json's ``smc``: partial checks run, particles dropped (each took a survivor's
    state), and particles found violated with no survivor to copy."""
    spent = [r.particles or {} for r in results]
    return {key: sum(s.get(key, 0) for s in spent) for key in PARTICLE_COUNTS}


def resample_groups(search, problems: Sequence, groups: dict[int, list[int]], stage: int, state: dict,
                    carried: tuple[dict, ...], counts: dict) -> None:
    """After stage ``stage``: check every particle of every group (``Task.partial_check`` on
    ``state``'s tokens, None = masked) and give each violated one a survivor's state and
    the entries of ``carried`` (dicts by particle key, e.g. log-probs), in place."""
    tokenizer, weights = search.model.tokenizer, search.smc.weights
    logprob = carried[0]
    for p, indices in groups.items():
        keys = [(p, i) for i in indices]
        alive = [not search.task.partial_check(problems[p], *partial_pieces(tokenizer, state[k])).violated
                 for k in keys]
        scores = [mean_committed(logprob[k], state[k]) for k in keys]
        for k in keys:
            counts[k]["checks"] += 1
        if all(alive):
            continue
        picks = parents(alive, scores, weights, random.Random(resample_seed(search.seed, problems[p].id, indices[0],
                                                                            stage)))
        before = {k: (list(state[k]), *(d[k] if isinstance(d[k], bool) else list(d[k]) for d in carried))
                  for k in keys}
        for j, (k, ok, parent) in enumerate(zip(keys, alive, picks)):
            if not ok:
                counts[k]["dropped" if parent != j else "stranded"] += 1
                source = before[keys[parent]]
                state[k] = list(source[0])
                for d, value in zip(carried, source[1:]):
                    d[k] = value if isinstance(value, bool) else list(value)


def group_rows(rows: list[tuple[int, int]]) -> dict[int, list[int]]:
    """``Search._draw``'s (problem, index) rows as {problem: its indices, in order}: a
    problem's group of particles, or its beam."""
    groups: dict[int, list[int]] = {}
    for p, i in rows:
        groups.setdefault(p, []).append(i)
    return groups


def draw_particles(search, problems: Sequence, prompts: Sequence[str],
                   rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """A diffusion model's particles: ``Search._draw``'s rows, a problem's rows one group,
    decoded stage by stage (``stages``) with ``model.infill(..., stop_after=)``,
    ``search.batch_size`` rows per call, resampled after each stage but the last
    (``resample_groups``). A row's eighth item counts its checks, the times it was dropped
    and the times it was found violated with no survivor to copy."""
    model, tokenizer = search.model, search.model.tokenizer
    sampler = particle_sampler(search.sampler)
    gen_length = sampler.gen_length or model.gen_length
    state = {key: [None] * gen_length for key in rows}  # committed token ids, None = masked
    logprob = {key: [0.0] * gen_length for key in rows}
    text: dict[tuple[int, int], str] = {}
    spent = {key: [0.0, 0.0, 0] for key in rows}  # network calls, seconds, positions run
    counts = {key: dict.fromkeys(PARTICLE_COUNTS, 0) for key in rows}
    blocks = -(-gen_length // sampler.block_length) if sampler.block_length else 1
    if sampler.steps % blocks:  # a threshold's step budget, say: whole steps per block, rounded down
        sampler = sampler.replace(steps=max(blocks, sampler.steps // blocks * blocks))
    plan = stages(sampler.steps, search.smc.every, blocks)
    groups, stops = group_rows(rows), stop_ids(tokenizer)
    for stage, (steps, stop_after) in enumerate(plan):
        stage_sampler = sampler.replace(steps=steps)
        for lo in range(0, len(rows), search.batch_size):
            chunk = rows[lo : lo + search.batch_size]
            start = time.perf_counter()
            out = model.infill([prompts[p] for p, _ in chunk], [state[key] for key in chunk], stage_sampler,
                               seeds=[particle_seed(search.seed, problems[p].id, i, stage) for p, i in chunk],
                               stop_after=stop_after)
            elapsed = time.perf_counter() - start
            for r, key in enumerate(chunk):
                old = state[key]
                new = [None if t == tokenizer.mask_id else t for t in out.tokens[r]]
                logprob[key] = [out.token_logprobs[r][j] if old[j] is None and new[j] is not None
                                else logprob[key][j] for j in range(gen_length)]
                state[key], text[key] = new, out.texts[r]
                spent[key][0] += out.nfe / len(chunk)
                spent[key][1] += elapsed / len(chunk)
                spent[key][2] += out.positions  # a stage runs the whole row through the network
        if stop_after is None:
            break
        resample_groups(search, problems, groups, stage, state, (logprob,), counts)
    out_rows: dict[tuple[int, int], tuple] = {}
    for key in rows:
        tokens, full = state[key], logprob[key]
        end = next((j for j, t in enumerate(tokens) if t in stops), len(tokens) - 1)
        out_rows[key] = (text[key], full[: end + 1], spent[key][2], spent[key][0], spent[key][1], tokens, full,
                         counts[key], None)
    return out_rows


def draw_prefixes(search, problems: Sequence, prompts: Sequence[str],
                  rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """An AR model's particles: prefixes extended ``every`` tokens a stage
    (``model.extend``), the ones whose prefix a partial check finds violated given a
    survivor's prefix after each stage; a particle that drew EOS (or ``gen_length``
    tokens) is finished and only copied. Rows as ``draw_particles``'."""
    model, tokenizer = search.model, search.model.tokenizer
    gen_length = search.sampler.gen_length or model.gen_length
    sampler = search.sampler.replace(head_tokens=0, head_temperature=None, stratify=0)
    every = search.smc.every
    stops = stop_ids(tokenizer)
    state: dict[tuple[int, int], list[int]] = {key: [] for key in rows}
    logprob: dict[tuple[int, int], list[float]] = {key: [] for key in rows}
    done = {key: False for key in rows}
    spent = {key: [0.0, 0.0, 0] for key in rows}
    counts = {key: dict.fromkeys(PARTICLE_COUNTS, 0) for key in rows}
    n_stages, groups = -(-gen_length // every), group_rows(rows)
    for stage in range(n_stages):
        todo = [key for key in rows if not done[key]]
        if not todo:
            break
        for lo in range(0, len(todo), search.batch_size):
            chunk = todo[lo : lo + search.batch_size]
            start = time.perf_counter()
            out = model.extend([prompts[p] for p, _ in chunk], [state[key] for key in chunk], sampler,
                               seeds=[particle_seed(search.seed, problems[p].id, i, stage) for p, i in chunk],
                               max_tokens=min(every, gen_length - stage * every))
            elapsed = time.perf_counter() - start
            for r, key in enumerate(chunk):
                state[key] += out.tokens[r]
                logprob[key] += out.token_logprobs[r]
                done[key] = any(t in stops for t in out.tokens[r]) or len(state[key]) >= gen_length
                spent[key][0] += out.nfe / len(chunk)
                spent[key][1] += elapsed / len(chunk)
                spent[key][2] += len(state[key])  # the prefix runs through the network again each stage
        if stage < n_stages - 1:
            resample_groups(search, problems, groups, stage, state, (logprob, done), counts)
    out_rows: dict[tuple[int, int], tuple] = {}
    for key in rows:
        tokens = state[key]
        end = next((j for j, t in enumerate(tokens) if t in stops), len(tokens))
        text = tokenizer.decode(tokens[:end])
        out_rows[key] = (text, logprob[key][: end + 1], spent[key][2], spent[key][0], spent[key][1], None, None,
                         counts[key], None)
    return out_rows
