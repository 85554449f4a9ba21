"""Token draws of the samplers: distributions, hot heads and stratified uniforms.

Every draw is an inverse-CDF draw in float64 (``rng.categorical``) from one of a row's
own uniforms, so a row's tokens depend on its seed only. Two settings shape the draws
of the first generated columns:

* hot heads (``SamplerConfig.head_tokens`` / ``head_temperature``): the first
  ``head_tokens`` generated columns are drawn at ``head_temperature`` instead of the
  sampler's temperature (their log-probabilities and confidences stay untempered);
* stratified heads (``SamplerConfig.stratify``): ``heads`` [B, H] float64 replaces the
  uniforms of the first H generated columns, fixed for the whole decode
  (``rng.stratified_uniforms`` spreads the candidates of one problem over them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .rng import categorical
from .subs import NEG_INF


def token_probs(logits: torch.Tensor, mask_id: int, temperature: float) -> torch.Tensor:
    """[N, V] logits -> float64 probabilities with MASK excluded; one-hot argmax if T = 0."""
    logits = logits.to(torch.float64)
    logits[..., mask_id] = NEG_INF
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float64)
    return torch.softmax(logits / temperature, dim=-1)


def draw_probs(logits: torch.Tensor, mask_id: int, temperature: float, probs_t1: torch.Tensor,
               head: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
    """[N, V] draw distributions at ``temperature`` (``probs_t1``: the same logits at
    temperature 1, reused when it applies); ``head`` = (in_head [N] bool, head
    temperature) draws the rows in the head at that temperature instead."""
    def at(t: float) -> torch.Tensor:
        return probs_t1 if t == 1.0 else token_probs(logits, mask_id, t)

    if head is None or head[1] == temperature or not bool(head[0].any()):
        return at(temperature)
    in_head, head_t = head
    return torch.where(in_head[:, None], at(head_t), at(temperature))


def head_of(cells: torch.Tensor, gen_start: int, head_tokens: int, head_temperature: float | None):
    """For the cells [B, L] bool being drawn: (in the first ``head_tokens`` generated
    columns [N] in row-major order, head temperature), or None when no head is set."""
    if not head_tokens:
        return None
    return cells.nonzero()[:, 1] < gen_start + head_tokens, float(head_temperature)


def at_heads(u: torch.Tensor, columns: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
    """Uniforms [B, L] with the first generated ``columns`` set to ``heads`` [B, H]
    (``SamplerConfig.stratify``: a column draws at the same point whatever the step)."""
    if heads is None:
        return u
    if heads.shape[0] != u.shape[0]:
        raise ValueError(f"got stratified uniforms for {heads.shape[0]} rows and a batch of {u.shape[0]}")
    h = min(heads.shape[1], columns.numel())
    u = u.clone()
    u[:, columns[:h]] = heads[:, :h].to(device=u.device, dtype=u.dtype)
    return u


@dataclass(frozen=True)
class TokenDraw:
    """How ``confidence_sample`` draws a masked column from its logits.

    Attributes:
        mask_id: the MASK token (never drawn).
        temperature: of the draw (0: greedy); the confidence is always untempered.
        gen_start: the first generated column (hot heads count from it).
        head_tokens / head_temperature: hot heads (``SamplerConfig.head_tokens``).
        dream_score: [N, V] probabilities -> [N] score of Dream's orders
            (``orders.ORDERS``), kept per cell when the order ranks by it; None otherwise.
    """

    mask_id: int
    temperature: float
    gen_start: int
    head_tokens: int = 0
    head_temperature: float | None = None
    dream_score: Callable[[torch.Tensor], torch.Tensor] | None = None

    def proposal(self, x: torch.Tensor, cols: torch.Tensor, u_token: torch.Tensor) -> "Proposal":
        """An empty proposal for a step on ``x`` [B, L] in the block ``cols``, drawing at
        the uniforms ``u_token`` [B, L] float64."""
        return Proposal(self, x, cols, u_token)


class Proposal:
    """A step's drawn tokens, [B, L] each, filled cell by cell by ``draw``.

    Attributes:
        tokens: long, the drawn token (MASK where nothing was drawn).
        probs: float64, the untempered probability the model gave it (0 where nothing was
            drawn): LLaDA's confidence, and what a threshold compares.
        order: float64 Dream score of the distribution drawn from, or None.
    """

    def __init__(self, settings: TokenDraw, x: torch.Tensor, cols: torch.Tensor, u_token: torch.Tensor):
        self.settings, self.cols, self.u_token = settings, cols, u_token
        self.tokens = torch.full_like(x, settings.mask_id)
        self.probs = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        self.order = self.probs.clone() if settings.dream_score is not None else None

    def draw(self, cells: torch.Tensor, block_logits: torch.Tensor) -> None:
        """Draw the tokens of ``cells`` [B, L] bool (in the block) from ``block_logits``
        [B, len(cols), V]."""
        s = self.settings
        cell_logits = block_logits[cells[:, self.cols]]  # row-major, as cells (all in cols)
        probs = token_probs(cell_logits, s.mask_id, 1.0)
        head = head_of(cells, s.gen_start, s.head_tokens, s.head_temperature)
        tempered = None
        if s.temperature == 0 and head is None:
            tokens = probs.argmax(-1)
        else:  # at temperature 1 the draw's distribution is the confidence's (softmax(l / 1) = softmax(l))
            tempered = draw_probs(cell_logits, s.mask_id, s.temperature, probs, head)
            tokens = categorical(tempered, self.u_token[cells])
        self.tokens[cells] = tokens
        if self.order is not None:  # Dream's orders, from the distribution drawn from (untempered if greedy)
            self.order[cells] = s.dream_score(probs if s.temperature == 0 else tempered)
        self.probs[cells] = probs.gather(-1, tokens[:, None]).squeeze(-1)
