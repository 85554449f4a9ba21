"""SDTT's teacher targets and divergences (Deschenaux & Gulcehre, ICLR 2025).

Shapes: B = batch, L = length, V = vocabulary, N = positions in the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdtt_search.diffusion import LogLinearSchedule, categorical, denoise, is_time_conditioned, subs_log_probs

DIVERGENCES = ("kld", "fkl", "mse", "tvd")
TARGETS = ("paper", "marginal")


def teacher_grid(t: torch.Tensor, dt: float, n_steps: int, eps: float) -> list[torch.Tensor]:
    """Times of the teacher's ancestral steps: t_i = max(t - i * dt, eps), each [B].

    This is the paper's Algorithm 1 (Deschenaux & Gulcehre 2025). The released code
    interpolates with (1 - t) where (1 - space_i) is meant, which
    shrinks the first teacher step by up to 2x; we follow the paper because on its
    grid two teacher steps of dt from t cover the student's one step of 2 dt: a
    masked position is revealed by them with probability 1 - (1 - dt/t)(1 - dt/(t - dt))
    = 2 dt/t, the student's own chance (for t >= 2 dt; below, both reveal all). What
    agrees exactly is *which* positions get revealed, not the law of the revealed
    tokens under Algorithm 1's target: see ``teacher_targets``.
    """
    return [(t - i * dt).clamp(min=eps) for i in range(n_steps)]


def reveal_chances(t: torch.Tensor, dt: float, n_steps: int, eps: float, shape: torch.Size, *,
                   frozen: torch.Tensor | None = None,
                   ordered: tuple[torch.Tensor, ...] | None = None) -> list[torch.Tensor]:
    """q_i [B, L] float64: the chance that a position still masked before teacher step
    i is revealed at it, one tensor per step of ``teacher_grid``.

    MDLM's ancestral step from t_i to s_i = max(t_i - dt, 0) (Sahoo et al. 2024: the
    reverse step p(z_s | z_t) = q(z_s | z_t, x = x_theta(z_t)) of the absorbing-state
    posterior, under which a masked position unmasks with (alpha_s - alpha_t) /
    (1 - alpha_t)) has q_i = (t_i - s_i) / t_i under the log-linear schedule
    (alpha = 1 - (1 - eps) t), the same for every position of a row. ``frozen``
    positions get 0 (the random reveals leave them masked) and ``ordered[i]`` ones 1
    (revealed at step i whatever the time), as in ``teacher_targets``.

    Args:
        t: [B] times; shape: (B, L) of the tokens; frozen: [B, L] bool or None;
        ordered: one [B, L] bool per step, or None.
    """
    return [_step_chance(t_i, dt, shape, frozen, None if ordered is None else ordered[step])
            for step, t_i in enumerate(teacher_grid(t, dt, n_steps, eps))]


def _step_chance(t_i: torch.Tensor, dt: float, shape: torch.Size, frozen: torch.Tensor | None,
                 ordered: torch.Tensor | None) -> torch.Tensor:
    """q [B, L] float64 of one teacher step from t_i [B] (see ``reveal_chances``)."""
    s_i = (t_i - dt).clamp(min=0.0)
    q = ((t_i - s_i) / t_i).to(torch.float64)[:, None].expand(*shape).clone()
    if frozen is not None:
        q[frozen] = 0.0
    if ordered is not None:
        q[ordered] = 1.0
    return q


def marginal_weights(chances: list[torch.Tensor]) -> list[torch.Tensor]:
    """b_i [B, L] float64 of ``target="marginal"``: the share of a position's target
    passed on to the later steps when step i leaves it masked (b_n = 0 at the last).

    With R_i = q_i + (1 - q_i) R_(i+1) (R_(n+1) = 0) the chance that a position masked
    before step i is revealed at step i or later, b_i = R_(i+1) / R_i (1 where R_i = 0:
    positions never revealed keep the last step's log-probs, as in Algorithm 1). A
    position revealed at step k gets sum_(i<k) rho_i (1 - b_i) p_i + rho_k p_k with
    rho_i = prod_(m<i) b_m; its mean over the teacher's steps is sum_i pi_i E[p_i] /
    sum_i pi_i (pi_i = P(revealed at step i)), the law of the token the teacher's
    steps reveal there. For two unclamped steps (q_1 = dt/t, q_2 = dt/(t - dt)):
    b_1 = 1 / (2 (1 - dt/t)), so a position not revealed at step 1 gets
    (1 - b_1) p1 + b_1 p2 and the mean is 1/2 p1 + 1/2 E[p2].

    Args:
        chances: q_i [B, L] float64 per step (``reveal_chances``).
    Returns:
        b_i [B, L] float64 per step, in [0, 1].
    """
    remaining = torch.zeros_like(chances[-1])
    weights = []
    for q in reversed(chances):
        reach = q + (1.0 - q) * remaining
        # clamp: rounding can put R_(i+1) / R_i a hair above 1 (log1p(-b) would be NaN)
        weights.append(torch.where(reach > 0, (remaining / reach.clamp(min=1e-300)).clamp(max=1.0), torch.ones_like(q)))
        remaining = reach
    return weights[::-1]


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
    target: str = "paper",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability targets from ``n_steps`` teacher ancestral steps (Algorithm 1).

    Each step runs from t_i to s_i = max(t_i - dt, 0): a masked token is revealed
    with probability q_i = (t_i - s_i) / t_i (``reveal_chances``) and drawn from the
    teacher (float64).

    What the target is. Let p_i be the teacher's prediction at step i (for a position
    j, on the tokens after the steps before i, with j still masked).

    * ``target="paper"`` (SDTT's Algorithm 1, Deschenaux & Gulcehre 2025): a token
      revealed at step i takes that step's log-probs; tokens still masked at the end
      take the last step's. For two steps from t (q_1 = dt/t, q_2 = dt/(t - dt)) its
      mean over the teacher's steps is (dt/t) p1 + (1 - dt/t) E[p2] (E over the other
      positions' step-1 reveals and draws). The token the two steps reveal at a
      position is drawn from 1/2 p1 + 1/2 E[p2] (each step reveals it with the same
      probability dt/t), which is what the student's single step of 2 dt should draw:
      the mean target is 2 (1 - dt/t) times as far from p1 as that two-step marginal
      (the positions the teacher leaves masked, 1 - 2 dt/t of them, all take p2). It
      is exact where every scored position is sure to be revealed during the
      teacher's steps: t <= 2 dt, and the ``ordered`` layouts (block-wise halves,
      tails), where each column is revealed at a fixed step.
    * ``target="marginal"`` (beyond the paper): a position revealed at step k takes
      the mixture sum_(i<k) rho_i (1 - b_i) p_i + rho_k p_k (``marginal_weights``);
      for two unclamped steps, p1 if revealed at step 1, else
      (1 - b) p1 + b p2 with b = 1 / (2 (1 - dt/t)). Its mean is the exact per-position
      marginal of the revealed token (1/2 p1 + 1/2 E[p2] for two steps): unbiased,
      because a position's reveal is independent of the other positions' reveals
      and draws, on which its p2 depends. Fit it with forward KL (``fkl``), whose
      minimiser over noisy targets is their mean. It equals ``paper`` wherever the
      latter is exact (ordered layouts, t <= 2 dt) and draws the same random numbers,
      so the teacher's path is the same.

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
        target: ``paper`` | ``marginal``, as above.
    Returns:
        [B, L, V] float32 target log-probs (meaningful where ``z`` is MASK).
    """
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is unknown; use paper (SDTT's Algorithm 1) or marginal (the teacher's "
                         "exact two-step marginal)")
    time_conditioned = is_time_conditioned(teacher)
    current = z
    result: torch.Tensor | None = None
    if not temperature > 0:
        raise ValueError(f"teacher temperature must be > 0 (reverse KL to a one-hot target is infinite), got {temperature}")
    if ordered is not None and len(ordered) != n_steps:
        raise ValueError(f"ordered reveals for {len(ordered)} steps, expected {n_steps}")
    if target == "marginal":
        weights = [b.to(z.device) for b in marginal_weights(reveal_chances(t, dt, n_steps, eps, z.shape, frozen=frozen,
                                                                           ordered=ordered))]
        log_rho = torch.zeros(z.shape, dtype=torch.float64, device=z.device)  # log of the share still to hand out
    for step, t_i in enumerate(teacher_grid(t, dt, n_steps, eps)):
        sigma = schedule.sigma(t_i) if time_conditioned else None
        logits = denoise(teacher, current, attention_mask=attention_mask, sigma=sigma, gen_start=gen_start)
        log_probs = subs_log_probs(logits, current, mask_id).float()
        if temperature != 1.0:
            # p^(1/T) renormalised; MASK stays at -inf and clean rows stay one-hot.
            log_probs = torch.log_softmax(log_probs / temperature, dim=-1)
        masked = current == mask_id
        if result is None:
            result = log_probs.clone()
            if target == "marginal":  # the mixture is built up from nothing on the masked positions
                result[masked] = float("-inf")
        u = torch.rand(current.shape, generator=generator, dtype=torch.float64).to(z.device)
        # frozen positions have q = 0, ordered ones q = 1 (u < 1 always): Algorithm 1's random
        # reveals plus the layout's fixed ones
        q = _step_chance(t_i, dt, current.shape, frozen, None if ordered is None else ordered[step]).to(z.device)
        reveal = masked & (u < q)
        if target == "marginal":
            b = weights[step]
            share = torch.where(reveal, log_rho, log_rho + torch.log1p(-b))
            result[masked] = torch.logaddexp(result[masked], share[masked, None].float() + log_probs[masked])
            log_rho = torch.where(reveal, log_rho, log_rho + torch.log(b))
        if reveal.any():
            u_tok = torch.rand(int(reveal.sum()), generator=generator, dtype=torch.float64).to(z.device)
            nxt = current.clone()
            nxt[reveal] = categorical(log_probs[reveal].double().exp(), u_tok)
            if target == "paper":
                result[reveal] = log_probs[reveal]
            current = nxt
    still = current == mask_id
    if target == "paper":
        result[still] = log_probs[still]
    else:  # b_n = 0 wherever the last step could reveal, so only never-revealable positions have a share left
        result[still] = torch.logaddexp(result[still], log_rho[still, None].float() + log_probs[still])
    return (result, current) if return_tokens else result


def divergence(student: torch.Tensor, teacher: torch.Tensor, kind: str, mask_id: int) -> torch.Tensor:
    """Mean over rows of a divergence between [N, V] log-prob rows.

    * ``kld``: reverse KL, sum_v p_s (log p_s - log p_t) (the paper's choice);
    * ``fkl``: forward KL, sum_v p_t (log p_t - log p_s): its minimiser over noisy
      targets (one teacher path each) is their mean, where reverse KL's is their
      normalised geometric mean (sharper). That mean is the teacher's per-position
      marginal of the revealed token with ``teacher_targets(target="marginal")``, and
      with Algorithm 1's ``paper`` target only where every scored position is sure
      to be revealed (ordered layouts, t <= 2 dt); elsewhere it is
      (dt/t) p1 + (1 - dt/t) E[p2] (see ``teacher_targets``);
    * ``mse``: mean squared difference of log-probs over the real vocabulary;
    * ``tvd``: total variation 1/2 sum_v |p_s - p_t| on probabilities (the paper's
      definition; the released code uses an L1 on log-probs).

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
