"""Repair: re-denoise the wrong part of a finished diffusion candidate.

A masked diffusion model can draw any subset of a completion's positions again,
conditioned on all the others. A candidate that fails the task's verifier has the
positions to blame masked (``Task.partial_check`` on the finished text names them;
without a verdict that names any, its ``k`` least confident tokens by their
log-probabilities) and redrawn by the same model in a few sampler steps, the prompt
and every other token kept, up to ``rounds`` times or until it verifies. This is the
remasking idea of ReMDM (Wang et al. 2025, "Remasking Discrete Diffusion Models with
Inference-Time Scaling") and of Prism's self-correcting search (arXiv 2602.01842),
applied at the level of whole candidates between best-of-N and selection. An
autoregressive model cannot do it: a token in the middle can only change with
everything drawn after it.

Repair round r of candidate i of a problem draws from (seed, problem id, i, r) alone
(``repair_seed``), so a repaired candidate, like a drawn one, is the same whatever the
batch, the executor or a resume. No torch here; the model's ``infill`` does the
sampling (``DiffusionModel.infill``).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..checks import is_positive_int
from ..sampling_config import SamplerConfig

#: what ``Search(strategy=...)`` accepts: plain best-of-N, best-of-N with repair, particle search,
#: order search
STRATEGIES = ("best_of_n", "repair", "smc", "order")


@dataclass(frozen=True)
class RepairConfig:
    """How candidates are repaired.

    Attributes:
        rounds: at most this many repairs of one candidate (each a masked redraw).
        steps: sampler steps of one repair (network calls at most ``steps`` + 1; the
            search's sampler otherwise, without blocks, threshold or caches of keys).
        k: positions redrawn when the task blames none (Countdown or Sudoku text it
            cannot read, GSM8K): the candidate's ``k`` least confident tokens.
    """

    rounds: int = 2
    steps: int = 2
    k: int = 4

    def __post_init__(self) -> None:
        for key in ("rounds", "steps", "k"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"repair.{key}={value!r} must be a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")


def repair_seed(seed: int, problem_id: str, index: int, round_: int) -> int:
    """63-bit seed of repair round ``round_`` (1, 2, ...) of candidate ``index`` of a problem."""
    digest = hashlib.blake2b(f"{seed}|{problem_id}|{index}|repair|{round_}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def repair_sampler(sampler: SamplerConfig, steps: int) -> SamplerConfig:
    """The sampler of a repair: the search's, at ``steps`` steps over the whole completion
    (no blocks, confidence threshold, key/value cache, window or hot or stratified head,
    so a repair's cost is fixed and it draws only the masked positions)."""
    return sampler.replace(steps=steps, block_length=None, threshold=None, window=None, kv_cache=None,
                           kv_refresh=None, head_tokens=0, head_temperature=None, stratify=0)


def stop_ids(tokenizer) -> set[int]:
    """The ids that end a completion: EOS, and a hub tokenizer's end-of-turn ids (``stop_ids``)."""
    return set(getattr(tokenizer, "stop_ids", None) or {tokenizer.eos_id})


def pieces_of(tokenizer, tokens: Sequence[int]) -> tuple[list[str], bool]:
    """The decoded text of each generated position before the first EOS (or other stop id),
    and whether there is one."""
    stops = stop_ids(tokenizer)
    end = next((j for j, t in enumerate(tokens) if t in stops), None)
    span = tokens if end is None else tokens[:end]
    return [tokenizer.decode([t]) for t in span], end is not None


def to_blame(task, problem, tokenizer, tokens: Sequence[int], token_logprobs: Sequence[float], k: int,
             verified: bool | None) -> list[int]:
    """The positions of a finished candidate to redraw, [] to leave it as it is.

    A candidate is repaired when it fails the task's verifier or, on a task without one,
    when ``partial_check`` finds it violated. The positions are the ones the check blames,
    else (nothing blamed) the ``k`` lowest log-probabilities up to and including EOS."""
    if verified:
        return []
    pieces, ended = pieces_of(tokenizer, tokens)
    verdict = task.partial_check(problem, pieces, ended)
    if verified is None and not verdict.violated:
        return []
    blame = sorted({int(j) for j in verdict.blame if 0 <= int(j) < len(pieces)}) if verdict.violated else []
    if blame:
        return blame
    last = min(len(pieces) + (1 if ended else 0), len(tokens))  # EOS itself may be misplaced
    order = sorted(range(last), key=lambda j: (token_logprobs[j], j))
    return sorted(order[:k])


def summarise_repair(results: Sequence) -> dict[str, Any]:
    """metrics.json's ``repair``: infill rows run, their network calls and seconds, the
    candidates repaired and how many of those end verified."""
    candidates = [c for r in results for c in r.candidates if c.repaired_rounds]
    spent = [r.repair or {} for r in results]
    return {
        "rows": sum(s.get("rows", 0) for s in spent),
        "forward_passes": sum(s.get("nfe", 0.0) for s in spent),
        "seconds": sum(s.get("seconds", 0.0) for s in spent),
        "candidates_repaired": len(candidates),
        "repaired_verified": sum(1 for c in candidates if c.verified),
        "repaired_correct": sum(1 for c in candidates if c.correct),
    }
