"""Decoding orders of ``confidence_sample`` (``SamplerConfig.remasking``): which masked
positions of a block a step commits first.

Each order scores the step's candidates (larger first); ``rank`` turns the scores into
per-row ranks, and the step rule (``commit_rules``) commits the best ranked:

* ``low_confidence`` (LLaDA, Nie et al. 2025): the untempered probability of the drawn
  token;
* ``margin`` / ``entropy`` (Dream, Ye et al. 2025: ``topk_margin`` and ``entropy``): the
  top-1 minus the top-2 probability, or the negative entropy, of the distribution drawn
  from (the untempered one when greedy);
* ``random``: a uniform draw per cell (LLaDA's random remasking), from the row's stream;
* ``left_to_right``: by position, leftmost first;
* ``prefix``: by position too, and a threshold step commits only the run of sure tokens
  right after the leftmost masked one (``Order.contiguous``).

A threshold always compares the confidence, whatever the order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .draws import Proposal


def margin(probs: torch.Tensor) -> torch.Tensor:
    """[N] top-1 minus top-2 probability of ``probs`` [N, V] (Dream's ``topk_margin``)."""
    top = probs.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def negative_entropy(probs: torch.Tensor) -> torch.Tensor:
    """[N] sum p log p of ``probs`` [N, V] (Dream's ``entropy``; larger = surer)."""
    return (probs * torch.log(probs.clamp(min=1e-300))).sum(-1)


#: a step's score of its candidates: (proposal, candidates [B, L] bool, the step's
#: uniforms [B, L] on demand) -> [N] float64, candidates in row-major order
Score = Callable[[Proposal, torch.Tensor, Callable[[], torch.Tensor]], torch.Tensor]


def _by_confidence(proposal: Proposal, candidates: torch.Tensor, uniforms) -> torch.Tensor:
    return proposal.probs[candidates]


def _by_dream_score(proposal: Proposal, candidates: torch.Tensor, uniforms) -> torch.Tensor:
    return proposal.order[candidates]


def _by_position(proposal: Proposal, candidates: torch.Tensor, uniforms) -> torch.Tensor:
    batch, length = candidates.shape  # a larger score for a smaller column
    column_score = (length - torch.arange(length, device=candidates.device, dtype=torch.float64)).expand(batch, -1)
    return column_score[candidates]


def _by_uniform(proposal: Proposal, candidates: torch.Tensor, uniforms) -> torch.Tensor:
    return uniforms()[candidates]


@dataclass(frozen=True)
class Order:
    """A decoding order.

    Attributes:
        score: the candidates' scores (``Score``).
        dream_score: [N, V] -> [N], kept per drawn cell (``draws.TokenDraw``) when the
            score reads it; None otherwise.
        contiguous: a threshold step commits only the sure run after the leftmost masked one.
    """

    score: Score
    dream_score: Callable[[torch.Tensor], torch.Tensor] | None = None
    contiguous: bool = False


ORDERS: dict[str, Order] = {
    "low_confidence": Order(_by_confidence),
    "margin": Order(_by_dream_score, dream_score=margin),
    "entropy": Order(_by_dream_score, dream_score=negative_entropy),
    "random": Order(_by_uniform),
    "left_to_right": Order(_by_position),
    "prefix": Order(_by_position, contiguous=True),
}


def rank(candidates: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """[B, L] long rank of each cell in its row by ``score`` [N] of the ``candidates``
    [B, L] bool (0 = best; non-candidates rank last)."""
    batch, length = candidates.shape
    # -inf, not 0, outside the candidates: scores may be < 0
    conf = torch.full((batch, length), float("-inf"), dtype=torch.float64, device=candidates.device)
    conf[candidates] = score
    order = conf.argsort(dim=-1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(length, device=candidates.device).expand(batch, -1))
    return ranks
