"""Noise schedules for absorbing-state (masked) diffusion.

Convention: t in [0, 1], t = 1 is fully noisy. ``sigma(t)`` is the total
noise, ``alpha(t) = exp(-sigma(t))`` the probability that a token is still clean and
``move_chance(t) = 1 - alpha(t)`` the probability that it is masked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogLinearSchedule:
    """MDLM's log-linear schedule: sigma(t) = -log1p(-(1 - eps) t).

    The move chance is exactly (1 - eps) t, so training never masks 100 % of the
    tokens. ``eps`` is 1e-3 in MDLM and SDTT.
    """

    eps: float = 1e-3

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise sigma(t), same shape as ``t``."""
        return -torch.log1p(-(1.0 - self.eps) * t)

    def dsigma(self, t: torch.Tensor) -> torch.Tensor:
        """Rate d sigma / dt = (1 - eps) / (1 - (1 - eps) t)."""
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)

    def move_chance(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is masked at time t: 1 - exp(-sigma(t))."""
        return (1.0 - self.eps) * t

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is still clean at time t."""
        return 1.0 - self.move_chance(t)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """NELBO weight dsigma / expm1(sigma) of the per-token cross-entropy.

        For the log-linear schedule this is algebraically exactly 1 / t (MDLM eq. 10
        with alpha_t = 1 - (1 - eps) t: -alpha'_t / (1 - alpha_t) = 1 / t); the
        closed form also stays finite at t = 1 when eps = 0.
        """
        return 1.0 / t
