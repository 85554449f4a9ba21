"""Training objectives: MDLM's continuous-time NELBO, MDM's reweighted masked loss and the
causal (AR) loss.

Shapes: B = batch, L = sequence length, V = vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .blocks import denoise, first_generated_column
from .schedule import LogLinearSchedule
from .subs import NEG_INF

# (input_ids [B, L], attention_mask [B, L] | None, sigma [B] | None) -> logits [B, L, V]
DenoiserFn = Callable[..., torch.Tensor]


@dataclass
class LossOutput:
    """A scalar loss plus what it was averaged over (for logging and exact reduction)."""

    loss: torch.Tensor  # scalar, nats per loss token
    num_tokens: int  # number of positions the loss is averaged over
    num_masked: int  # number of positions that were masked (the only non-zero terms)


def uniform(shape, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Float32 uniforms in [0, 1) of ``shape`` on ``device``, drawn on the generator's device.

    Training keeps one CPU ``torch.Generator`` (its state is checkpointed and resumed);
    drawing on it and moving the result makes a CUDA run see the very numbers a CPU run
    sees (``torch.rand`` refuses a CPU generator for a CUDA tensor).
    """
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def sample_times(
    batch_size: int,
    *,
    eps: float = 1e-3,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Diffusion times t in [eps, 1], shape [B].

    With ``antithetic`` (MDLM's low-discrepancy sampler, paper App. D.3) sample i is
    drawn uniformly inside stratum [i/B, (i+1)/B), which lowers the variance of the
    Monte-Carlo NELBO.
    """
    u = uniform(batch_size, generator, device)
    if antithetic:
        offsets = torch.arange(batch_size, device=device, dtype=u.dtype) / batch_size
        u = (u / batch_size + offsets) % 1.0
    return (1.0 - eps) * u + eps


def mask_tokens(
    x: torch.Tensor,
    move_chance: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Forward process q(z_t | x): mask each maskable token with prob ``move_chance``.

    Args:
        x: [B, L] clean tokens.
        move_chance: [B] masking probability per row.
        maskable: [B, L] bool, positions that may be masked (completion tokens).
    Returns:
        z_t: [B, L].
    """
    u = uniform(x.shape, generator, x.device)
    masked = (u < move_chance[:, None]) & maskable
    return torch.where(masked, torch.full_like(x, mask_id), x)


def window_masks(
    maskable: torch.Tensor, rows: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semi-autoregressive layout of the completion for the rows in ``rows``.

    For each such row, draw a window start s uniformly among its n completion tokens
    and a window length b uniformly in 1..n - s. Returns (window [B, L], future [B, L])
    bool: the completion tokens inside the window (masked with probability t, the
    loss's terms) and after it (always masked, no loss); tokens before the window stay
    clean. This is the state a block-wise (semi-autoregressive) sampler is in while it
    decodes a block of length b at offset s (block diffusion's per-block objective,
    Arriola et al. 2025, with the future blocks masked instead of cut off).

    Args:
        maskable: [B, L] bool completion positions; rows: [B] bool.
    """
    index = maskable.long().cumsum(-1) - 1  # completion index of each position (-1 in the prompt)
    n = maskable.sum(-1)
    start = (uniform(n.shape, generator, maskable.device) * n).long()
    length = 1 + (uniform(n.shape, generator, maskable.device) * (n - start)).long()
    start, end = start[:, None], (start + length)[:, None]
    window = maskable & (index >= start) & (index < end) & rows[:, None]
    future = maskable & (index >= end) & rows[:, None]
    return window, future


def masked_nll(model: DenoiserFn, x: torch.Tensor, z: torch.Tensor, loss_positions: torch.Tensor, t: torch.Tensor,
               *, mask_id: int, attention_mask: torch.Tensor | None, schedule: LogLinearSchedule,
               gen_start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The denoiser on z_t [B, L] at times t [B]: (-log p_theta(x_l | z_t) [M] at the M
    masked positions among ``loss_positions``, those positions [B, L] bool). SUBS
    restricted to what a loss needs: zero masking probability, then the cross-entropy at
    masked positions (carry-over makes the others exactly 0)."""
    logits = denoise(model, z, attention_mask=attention_mask, sigma=schedule.sigma(t), gen_start=gen_start)
    logits = logits.float().index_fill(-1, torch.tensor([mask_id], device=x.device), NEG_INF)
    masked = (z == mask_id) & loss_positions
    return F.cross_entropy(logits[masked], x[masked], reduction="none"), masked


def mdlm_loss(
    model: DenoiserFn,
    x: torch.Tensor,
    maskable: torch.Tensor,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    schedule: LogLinearSchedule = LogLinearSchedule(),
    t: torch.Tensor | None = None,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    semi_ar: float = 0.0,
) -> LossOutput:
    """Continuous-time NELBO of MDLM (paper eq. 10/11), prompt-conditioned.

    loss = sum_{masked l} w(t) * -log p_theta(x_l | z_t) / #maskable, with
    w(t) = dsigma/expm1(sigma) = 1/t. Under SUBS unmasked positions contribute exactly
    0, so the sum runs over masked positions only. Dividing by the number of maskable
    positions (not of masked ones) gives the NELBO per completion token; for
    unconditional data with no padding this is MDLM's division by B * L.

    Args:
        x: [B, L] clean tokens (prompt + completion).
        maskable: [B, L] bool, True on completion tokens (prompt and left padding False).
        attention_mask: [B, L] bool, False on padding, or None.
        t: [B] optional fixed times (tests); sampled with ``sample_times`` otherwise.
        semi_ar: fraction of rows laid out by ``window_masks`` (clean prefix, a window
            masked at rate t that carries the loss, the rest masked): trains the states a
            semi-autoregressive sampler visits, which uniform masking almost never
            shows (a clean prefix with everything after it masked has probability
            ~t^(n-k)(1-t)^k). 0 (default) is exactly MDLM; > 0 is an auxiliary mixture,
            not the NELBO.
    """
    batch = x.shape[0]
    if not 0.0 <= semi_ar <= 1.0:
        raise ValueError(f"semi_ar={semi_ar!r} must be in [0, 1]")
    if t is None:
        t = sample_times(batch, eps=schedule.eps, antithetic=antithetic, generator=generator, device=x.device)
    z = mask_tokens(x, schedule.move_chance(t), maskable, mask_id, generator)
    loss_positions = maskable
    if semi_ar > 0.0:
        rows = uniform(batch, generator, x.device) < semi_ar
        window, future = window_masks(maskable, rows, generator)
        # rows in the mixture: prefix clean, window as drawn, future masked
        z = torch.where(rows[:, None] & ~window & ~future & maskable, x, z)
        z = torch.where(future, torch.full_like(z, mask_id), z)
        loss_positions = torch.where(rows[:, None], window, maskable)
    nll, masked = masked_nll(model, x, z, loss_positions, t, mask_id=mask_id, attention_mask=attention_mask,
                             schedule=schedule, gen_start=first_generated_column(maskable))
    weight = schedule.loss_weight(t)[:, None].expand_as(x)[masked]
    num_tokens = int(maskable.sum())
    loss = (nll * weight).sum() / max(num_tokens, 1)
    return LossOutput(loss=loss, num_tokens=num_tokens, num_masked=int(masked.sum()))


def mdm_loss(
    model: DenoiserFn,
    x: torch.Tensor,
    maskable: torch.Tensor,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    schedule: LogLinearSchedule = LogLinearSchedule(),
    steps: int = 20,
    alpha: float = 0.25,
    gamma: float = 1.0,
    t: torch.Tensor | None = None,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """Multi-granularity diffusion modeling (MDM; Ye et al., ICLR 2025, "Beyond
    Autoregression", Sec. 4): the masked-token cross-entropy reweighted at two grains
    so that the hard subgoals of a planning task are not drowned by the easy ones.

    loss = sum_{masked l} w(m) * alpha * (1 - exp(-nll_l))^gamma * nll_l / #masked, with
    m = the row's masking rate and w(m) = steps * (1 - m) + 1: the token weight is focal
    (a confidently right token, nll ~ 0, counts little; Lin et al. 2017), the sequence
    weight the continuous form of the authors' "linear" time weight T - t for a discrete
    t in 0..T-1 masked at rate (t + 1) / T (the lightly masked rows, whose few masked
    tokens are the hardest to infer, weigh most). Not an ELBO: a training objective for
    decoders that commit the easiest token first (``remasking`` "low_confidence",
    "margin", "entropy").

    Args as ``mdlm_loss``; steps: T of the time weight; alpha, gamma: the focal weight
    (the authors' Sudoku run: 0.25 and 1).
    """
    if t is None:
        t = sample_times(x.shape[0], eps=schedule.eps, antithetic=antithetic, generator=generator, device=x.device)
    rate = schedule.move_chance(t)
    z = mask_tokens(x, rate, maskable, mask_id, generator)
    nll, masked = masked_nll(model, x, z, maskable, t, mask_id=mask_id, attention_mask=attention_mask,
                             schedule=schedule, gen_start=first_generated_column(maskable))
    focal = alpha * (1.0 - torch.exp(-nll)).pow(gamma) * nll
    weight = (steps * (1.0 - rate) + 1.0)[:, None].expand_as(x)[masked]
    num_masked = int(masked.sum())
    loss = (focal * weight).sum() / max(num_masked, 1)
    return LossOutput(loss=loss, num_tokens=int(maskable.sum()), num_masked=num_masked)


def ar_loss(
    model: DenoiserFn,
    x: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
) -> LossOutput:
    """Next-token cross-entropy of a causal model on the positions in ``loss_mask``.

    Position l is predicted from tokens < l, so logits[:, l-1] scores x[:, l].

    Args:
        x: [B, L] tokens; loss_mask: [B, L] bool, True where x is a target
        (completion tokens); attention_mask: [B, L] bool or None.
    """
    logits = model(x, attention_mask=attention_mask, sigma=None).float()
    targets = loss_mask[:, 1:]
    nll = F.cross_entropy(logits[:, :-1][targets], x[:, 1:][targets], reduction="sum")
    num_tokens = int(targets.sum())
    return LossOutput(loss=nll / max(num_tokens, 1), num_tokens=num_tokens, num_masked=0)
