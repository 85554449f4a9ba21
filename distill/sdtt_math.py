"""SDTT's teacher targets and divergences (Deschenaux & Gulcehre, ICLR 2025; spec §B).

Shapes: B = batch, L = length, V = vocabulary, N = positions in the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdtt_search.diffusion import LogLinearSchedule, categorical, denoise, is_time_conditioned, subs_log_probs

DIVERGENCES = ("kld", "fkl", "mse", "tvd")


def teacher_grid(t: torch.Tensor, dt: float, n_steps: int, eps: float) -> list[torch.Tensor]:
    """Times of the teacher's ancestral steps: t_i = max(t - i * dt, eps).

    This is the paper's Algorithm 1. The released code interpolates with (1 - t)
    where (1 - space_i) is meant (spec §B2/§E3), which shrinks the first teacher
    step by up to 2x; we follow the paper because its grid is the one for which
    "one student step of 2 dt = two teacher steps of dt" holds exactly.
    """
    return [(t - i * dt).clamp(min=eps) for i in range(n_steps)]


@torch.no_grad()
def teacher_targets(
    teacher,
    z: torch.Tensor,
    t: torch.Tensor,
    dt: float,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    n_steps: int = 2,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    schedule: LogLinearSchedule = LogLinearSchedule(),
    frozen: torch.Tensor | None = None,
    ordered: tuple[torch.Tensor, ...] | None = None,
    temperature: float = 1.0,
    gen_start: int = 0,
    return_tokens: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability targets from ``n_steps`` teacher ancestral steps (Algorithm 1).

    Each step runs from t_i to s_i = max(t_i - dt, 0): a masked token is revealed
    with probability (t_i - s_i) / t_i and drawn from the teacher (float64). A token
    revealed at step i takes that step's log-probs as its target; tokens still
    masked at the end take the last step's log-probs.

    Args:
        z: [B, L] noisy tokens z_t (MASK where masked); t: [B] times.
        frozen: [B, L] bool, masked positions the random reveals must leave masked
            (the blocks of a block-wise layout), or None.
        ordered: one [B, L] bool per step: positions revealed at that step whatever
            the time (a block-wise sampler's left-to-right halves), added to the
            random reveals.
        temperature: the teacher's sampler is p^(1/temperature), renormalised: its
            reveals are drawn from it and the targets are its log-probs, so the
            student learns the teacher's sampler at that temperature (< 1: sharper).
        gen_start: the first generated column (block-causal teachers lay out their
            attention blocks from it).
        return_tokens: also return the tokens after the teacher's steps [B, L].
    Returns:
        [B, L, V] float32 target log-probs (meaningful where ``z`` is MASK).
    """
    time_conditioned = is_time_conditioned(teacher)
    current = z
    target: torch.Tensor | None = None
    if not temperature > 0:
        raise ValueError(f"teacher temperature must be > 0 (reverse KL to a one-hot target is infinite), got {temperature}")
    if ordered is not None and len(ordered) != n_steps:
        raise ValueError(f"ordered reveals for {len(ordered)} steps, expected {n_steps}")
    for step, t_i in enumerate(teacher_grid(t, dt, n_steps, eps)):
        s_i = (t_i - dt).clamp(min=0.0)
        sigma = schedule.sigma(t_i) if time_conditioned else None
        logits = denoise(teacher, current, attention_mask=attention_mask, sigma=sigma, gen_start=gen_start)
        log_probs = subs_log_probs(logits, current, mask_id).float()
        if temperature != 1.0:
            # p^(1/T) renormalised; MASK stays at -inf and clean rows stay one-hot.
            log_probs = torch.log_softmax(log_probs / temperature, dim=-1)
        if target is None:
            target = log_probs.clone()
        masked = current == mask_id
        u = torch.rand(current.shape, generator=generator, dtype=torch.float64).to(z.device)
        reveal = masked & (u < ((t_i - s_i) / t_i).to(torch.float64)[:, None])
        if frozen is not None:
            reveal &= ~frozen
        if ordered is not None:
            reveal |= masked & ordered[step]
        if reveal.any():
            u_tok = torch.rand(int(reveal.sum()), generator=generator, dtype=torch.float64).to(z.device)
            nxt = current.clone()
            nxt[reveal] = categorical(log_probs[reveal].double().exp(), u_tok)
            target[reveal] = log_probs[reveal]
            current = nxt
    still = current == mask_id
    target[still] = log_probs[still]
    return (target, current) if return_tokens else target


def divergence(student: torch.Tensor, teacher: torch.Tensor, kind: str, mask_id: int) -> torch.Tensor:
    """Mean over rows of a divergence between [N, V] log-prob rows.

    * ``kld``: reverse KL, sum_v p_s (log p_s - log p_t) (the paper's choice);
    * ``fkl``: forward KL, sum_v p_t (log p_t - log p_s): its minimiser over noisy
      targets (one teacher path each) is their mean, the teacher's marginal, where
      reverse KL's is their geometric mean (sharper);
    * ``mse``: mean squared difference of log-probs over the real vocabulary;
    * ``tvd``: total variation 1/2 sum_v |p_s - p_t| on probabilities (the paper's
      definition; the released code uses an L1 on log-probs, spec §B4).

    The MASK column (probability 0 under SUBS in both) is left out.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence={kind!r} is unknown; use one of {', '.join(DIVERGENCES)}")
    keep = torch.ones(student.shape[-1], dtype=torch.bool, device=student.device)
    keep[mask_id] = False
    s, u = student[:, keep], teacher[:, keep]
    if kind == "kld":
        return (s.exp() * (s - u)).sum(-1).mean()
    if kind == "fkl":
        p = u.exp()
        terms = torch.where(p > 0, p * (u - s), torch.zeros_like(s))  # 0 log 0 = 0 where the teacher is one-hot
        return terms.sum(-1).mean()
    if kind == "mse":
        return ((s - u) ** 2).mean()
    return 0.5 * (s.exp() - u.exp()).abs().sum(-1).mean()


@dataclass
class RoundPlan:
    """Step counts of the distillation rounds: teacher_steps -> ... -> min_steps."""

    teacher_steps: int
    min_steps: int
    halving: bool = True  # False: one round straight to min_steps (tail distillation)

    def __post_init__(self) -> None:
        if self.teacher_steps < 2 or self.min_steps < 1 or self.min_steps >= self.teacher_steps:
            raise ValueError(f"need teacher_steps > min_steps >= 1, got {self.teacher_steps} and {self.min_steps}")
        if not self.halving:
            return
        ratio = self.teacher_steps / self.min_steps
        if ratio != 2 ** round(math.log2(ratio)):
            raise ValueError(f"teacher_steps / min_steps must be a power of 2, got {self.teacher_steps} / {self.min_steps}")

    @property
    def rounds(self) -> int:
        return round(math.log2(self.teacher_steps / self.min_steps)) if self.halving else 1

    def teacher_steps_of(self, round_index: int) -> int:
        """Teacher steps in round ``round_index`` (0-based)."""
        return self.teacher_steps // 2**round_index

    def student_steps_of(self, round_index: int) -> int:
        return self.teacher_steps_of(round_index) // 2 if self.halving else self.min_steps
