"""SDTT targets, divergences and the round plan."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from distill.sdtt_math import RoundPlan, divergence, teacher_grid, teacher_targets
from sdtt_search.diffusion import subs_log_probs

V, MASK = 6, 5


class CountingTeacher:
    """Logits that say which call produced them: call k favours token k."""

    def __init__(self):
        self.config = SimpleNamespace(time_conditioning=False)
        self.inputs = []

    def __call__(self, x, attention_mask=None, sigma=None):
        k = len(self.inputs)
        self.inputs.append(x.clone())
        logits = torch.zeros(*x.shape, V)
        logits[..., k] = 3.0
        return logits


def test_teacher_grid_follows_algorithm_1():
    t = torch.tensor([0.9, 0.1, 1e-6])
    t0, t1 = teacher_grid(t, 1 / 1024, 2, 1e-5)
    assert torch.allclose(t0, torch.tensor([0.9, 0.1, 1e-5]))
    assert torch.allclose(t1, torch.tensor([0.9 - 1 / 1024, 0.1 - 1 / 1024, 1e-5]))


def test_two_step_targets_take_each_tokens_reveal_step():
    """Revealed at step 1 -> step-1 log-probs; everything else -> step-2 log-probs;
    positions not masked in z_t are carried over."""
    teacher = CountingTeacher()
    z = torch.full((4, 400), MASK)
    z[:, :50] = 2  # clean positions
    t = torch.full((4,), 0.5)
    target = teacher_targets(teacher, z, t, dt=0.2, mask_id=MASK, generator=torch.Generator().manual_seed(0))
    assert len(teacher.inputs) == 2
    first, second = teacher.inputs
    revealed_at_1 = (first == MASK) & (second != MASK)
    lp = lambda k: subs_log_probs(  # noqa: E731
        torch.nn.functional.one_hot(torch.tensor(k), V).float()[None, None] * 3.0, torch.tensor([[MASK]]), MASK)[0, 0]
    assert revealed_at_1.sum() > 0
    assert torch.allclose(target[revealed_at_1], lp(0).expand(int(revealed_at_1.sum()), V))
    rest = (z == MASK) & ~revealed_at_1
    assert torch.allclose(target[rest], lp(1).expand(int(rest.sum()), V))
    # reveal fraction of step 1 is dt / t = 0.4
    share = revealed_at_1[:, 50:].float().mean().item()
    assert abs(share - 0.4) < 0.03
    assert (target[z != MASK].argmax(-1) == 2).all()


def test_teacher_temperature_sharpens_reveals_and_targets():
    """At temperature T the teacher samples from and scores with p^(1/T) renormalised:
    step-1 reveals pick the favoured token with e^(3/T) / (e^(3/T) + 4) (5 real tokens)."""
    z = torch.full((8, 500), MASK)
    t = torch.full((8,), 0.5)
    for temperature in (1.0, 0.5):
        teacher = CountingTeacher()
        target = teacher_targets(teacher, z, t, dt=0.2, mask_id=MASK, temperature=temperature,
                                 generator=torch.Generator().manual_seed(0))
        first, second = teacher.inputs
        revealed = second[first == MASK]
        revealed = revealed[revealed != MASK]
        expected = math.exp(3 / temperature) / (math.exp(3 / temperature) + 4)
        assert abs((revealed == 0).float().mean().item() - expected) < 0.01, temperature
        still = second == MASK
        want = torch.log_softmax(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0]) / temperature, -1)
        assert torch.allclose(target[still][:, :5], want.expand(int(still.sum()), 5), atol=1e-5)
        assert (target[still][:, MASK] < -1e5).all()  # SUBS: MASK never drawn
    with pytest.raises(ValueError, match="temperature"):
        teacher_targets(CountingTeacher(), z, t, dt=0.2, mask_id=MASK, temperature=0.0)


def test_reverse_kl_matches_the_explicit_formula():
    g = torch.Generator().manual_seed(0)
    s = torch.log_softmax(torch.randn(7, V, generator=g), -1)
    u = torch.log_softmax(torch.randn(7, V, generator=g), -1)
    s[:, MASK], u[:, MASK] = -1e6, -1e6
    s = s - torch.logsumexp(s, -1, keepdim=True)
    u = u - torch.logsumexp(u, -1, keepdim=True)
    expected = sum(sum(math.exp(s[i, v]) * (s[i, v] - u[i, v]) for v in range(MASK)) for i in range(7)) / 7
    assert math.isclose(divergence(s, u, "kld", MASK).item(), expected, rel_tol=1e-5)
    assert divergence(s, s, "kld", MASK).item() == pytest.approx(0.0, abs=1e-7)
    # reverse, not forward: KL(s || u) differs from KL(u || s)
    assert not math.isclose(divergence(s, u, "kld", MASK).item(), divergence(u, s, "kld", MASK).item(), rel_tol=1e-3)


def test_tvd_and_mse():
    s = torch.log(torch.tensor([[0.5, 0.5, 1e-30, 1e-30, 1e-30, 1e-30]]))
    u = torch.log(torch.tensor([[0.25, 0.75, 1e-30, 1e-30, 1e-30, 1e-30]]))
    assert divergence(s, u, "tvd", MASK).item() == pytest.approx(0.25, abs=1e-6)
    assert divergence(s, u, "mse", MASK).item() == pytest.approx((math.log(2) ** 2 + math.log(1.5) ** 2) / 5, rel=1e-5)
    with pytest.raises(ValueError, match="unknown"):
        divergence(s, u, "js", MASK)


def test_round_plan_halves_the_steps():
    plan = RoundPlan(64, 4)
    assert plan.rounds == 4
    assert [plan.teacher_steps_of(r) for r in range(4)] == [64, 32, 16, 8]
    assert [plan.student_steps_of(r) for r in range(4)] == [32, 16, 8, 4]
    for bad in [(64, 5), (4, 4), (3, 1)]:
        with pytest.raises(ValueError):
            RoundPlan(*bad)
