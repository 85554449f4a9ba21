"""Schedule, SUBS and the NELBO against hand-computed values (spec §A1–A3, §F)."""
from __future__ import annotations

import math

import pytest
import torch
from fakes import FixedModel

from sdtt_search.diffusion import NEG_INF, LogLinearSchedule, mask_tokens, mdlm_loss, sample_times, subs_log_probs
from sdtt_search.diffusion.loss import ar_loss


def test_loglinear_weight_is_one_over_t():
    sched = LogLinearSchedule()
    t = torch.linspace(1e-3, 1.0, 1000, dtype=torch.float64)
    assert torch.allclose(sched.loss_weight(t), sched.dsigma(t) / torch.expm1(sched.sigma(t)), rtol=1e-9)
    assert torch.allclose(sched.move_chance(t), 1 - torch.exp(-sched.sigma(t)), rtol=1e-12)
    assert math.isclose(float(sched.move_chance(torch.tensor(1.0))), 0.999, rel_tol=1e-6)


def test_subs_properties():
    g = torch.Generator().manual_seed(0)
    V, mask_id = 9, 8
    logits = torch.randn(3, 7, V, generator=g) * 5
    z = torch.randint(0, V, (3, 7), generator=g)
    z[:, ::2] = mask_id
    lp = subs_log_probs(logits, z, mask_id)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3, 7), atol=1e-6)
    masked = z == mask_id
    assert (lp[masked][:, mask_id] < -1e5).all()  # never predicts MASK
    observed = lp.gather(-1, z.unsqueeze(-1)).squeeze(-1)
    assert (observed[~masked] == 0).all()  # carry-over: exactly 0 at the observed token
    others = lp[~masked].clone()
    others.scatter_(-1, z[~masked].unsqueeze(-1), NEG_INF)
    assert (others <= NEG_INF + 1).all()
    # masked rows are the softmax of the logits with MASK removed
    ref = torch.log_softmax(logits[masked][:, :mask_id], -1)
    assert torch.allclose(lp[masked][:, :mask_id], ref, atol=1e-5)


def test_antithetic_times_one_per_stratum():
    t = sample_times(8, eps=1e-3, antithetic=True, generator=torch.Generator().manual_seed(1))
    u = (t - 1e-3) / (1 - 1e-3)
    strata = torch.floor(u * 8).long()
    assert sorted(strata.tolist()) == list(range(8))
    assert (t >= 1e-3).all() and (t <= 1).all()


def test_mask_tokens_rate_and_maskable():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (4, 5000), generator=g)
    maskable = torch.ones_like(x, dtype=torch.bool)
    maskable[:, :100] = False
    mc = torch.tensor([0.1, 0.5, 0.9, 0.0])
    z = mask_tokens(x, mc, maskable, mask_id=7, generator=g)
    assert not (z[:, :100] == 7).any()
    rate = (z[:, 100:] == 7).float().mean(-1)
    assert torch.allclose(rate, mc, atol=0.02)
    assert torch.equal(z[z != 7], x[z != 7])


def test_mdlm_loss_hand_computed():
    """All completion tokens masked at t = 1 (eps = 0): the loss is the mean of
    -log p(x) over completion tokens with p = softmax without the MASK column."""
    mask_id = 3
    logits = torch.tensor([0.0, math.log(2), math.log(3), 100.0])  # MASK logit is ignored
    model = FixedModel(logits)
    x = torch.tensor([[0, 1, 2], [2, 2, 0]])
    maskable = torch.tensor([[False, True, True], [True, True, True]])
    out = mdlm_loss(model, x, maskable, mask_id=mask_id, schedule=LogLinearSchedule(eps=0.0), t=torch.tensor([1.0, 1.0]))
    nll = {0: math.log(6), 1: math.log(3), 2: math.log(2)}
    expected = (nll[1] + nll[2] + nll[2] + nll[2] + nll[0]) / 5
    assert out.num_tokens == 5 and out.num_masked == 5
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-5)
    z_seen = model.calls[0]
    assert z_seen[0, 0] == 0 and (z_seen[maskable] == mask_id).all()


def test_mdlm_loss_weight_is_one_over_t_on_masked_tokens():
    """With the masks fixed, halving t doubles each masked token's contribution."""
    mask_id = 3
    model = FixedModel(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    x = torch.randint(0, 3, (2, 4000), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(x, dtype=torch.bool)
    t = torch.tensor([0.5, 0.25])
    out = mdlm_loss(model, x, maskable, mask_id=mask_id, t=t, generator=torch.Generator().manual_seed(3))
    z = model.calls[0]
    lp = torch.log_softmax(torch.tensor([0.3, -0.2, 0.1]), -1)
    manual = sum(float(-lp[x[b][z[b] == mask_id]].sum() / t[b]) for b in range(2)) / x.numel()
    assert math.isclose(out.loss.item(), manual, rel_tol=1e-5)


def test_ar_loss_hand_computed():
    logits = torch.tensor([0.0, math.log(3)])  # p = (1/4, 3/4) everywhere
    model = FixedModel(logits)
    x = torch.tensor([[0, 1, 0, 1]])
    loss_mask = torch.tensor([[False, False, True, True]])
    out = ar_loss(model, x, loss_mask)
    assert out.num_tokens == 2
    assert math.isclose(out.loss.item(), (math.log(4) + math.log(4 / 3)) / 2, rel_tol=1e-6)


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_sample_times_without_antithetic_are_uniform(eps):
    t = sample_times(20000, eps=eps, antithetic=False, generator=torch.Generator().manual_seed(0))
    assert abs(t.mean().item() - 0.5) < 0.01 and t.min() >= eps
