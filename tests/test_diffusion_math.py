"""Schedule, SUBS and the NELBO against hand-computed values (, §F)."""
from __future__ import annotations

import math

import pytest
import torch
from fakes import FixedModel

from sdtt_search.diffusion import NEG_INF, LogLinearSchedule, mask_tokens, mdlm_loss, sample_times, subs_log_probs
from sdtt_search.diffusion.loss import ar_loss, mdm_loss, window_masks


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


def test_mdm_loss_hand_computed():
    """Ye et al.'s MDM loss by hand: focal token weight alpha (1 - p)^gamma on each masked
    token's nll, the row's time weight steps (1 - rate) + 1, mean over masked tokens."""
    mask_id = 3
    model = FixedModel(torch.tensor([0.0, math.log(2), math.log(3), 100.0]))  # p = 1/6, 2/6, 3/6
    x = torch.tensor([[0, 1, 2], [2, 2, 0]])
    maskable = torch.tensor([[False, True, True], [True, True, True]])
    out = mdm_loss(model, x, maskable, mask_id=mask_id, schedule=LogLinearSchedule(eps=0.0),
                   t=torch.tensor([1.0, 1.0]), steps=20, alpha=0.25, gamma=2.0)
    p = {0: 1 / 6, 1: 2 / 6, 2: 3 / 6}
    focal = {k: 0.25 * (1 - v) ** 2 * -math.log(v) for k, v in p.items()}
    weight = 20 * (1 - 1.0) + 1  # everything masked: the lightest time weight
    expected = weight * (focal[1] + focal[2] + focal[2] + focal[2] + focal[0]) / 5
    assert out.num_masked == 5
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-5)


def test_mdm_loss_weighs_lightly_masked_rows_more():
    """With alpha = 1, gamma = 0 the token weight is 1 and a row masked at rate m
    counts steps (1 - m) + 1 times its nll: at m = 0.25 vs 0.75, (20*0.75+1)/(20*0.25+1)."""
    mask_id = 3
    model = FixedModel(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    x = torch.randint(0, 3, (2, 4000), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(x, dtype=torch.bool)
    t = torch.tensor([0.25, 0.75])
    schedule = LogLinearSchedule(eps=0.0)
    out = mdm_loss(model, x, maskable, mask_id=mask_id, t=t, schedule=schedule, steps=20, alpha=1.0, gamma=0.0,
                   generator=torch.Generator().manual_seed(3))
    z = model.calls[0]
    lp = torch.log_softmax(torch.tensor([0.3, -0.2, 0.1]), -1)
    sums = [float(-lp[x[b][z[b] == mask_id]].sum()) for b in range(2)]
    manual = (sums[0] * (20 * 0.75 + 1) + sums[1] * (20 * 0.25 + 1)) / int((z == mask_id).sum())
    assert math.isclose(out.loss.item(), manual, rel_tol=1e-5)


def test_ar_loss_hand_computed():
    logits = torch.tensor([0.0, math.log(3)])  # p = (1/4, 3/4) everywhere
    model = FixedModel(logits)
    x = torch.tensor([[0, 1, 0, 1]])
    loss_mask = torch.tensor([[False, False, True, True]])
    out = ar_loss(model, x, loss_mask)
    assert out.num_tokens == 2
    assert math.isclose(out.loss.item(), (math.log(4) + math.log(4 / 3)) / 2, rel_tol=1e-6)


def _ks_uniform(values: torch.Tensor, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance between the empirical law of ``values`` and Uniform(lo, hi)."""
    v = ((values.double().flatten() - lo) / (hi - lo)).sort().values
    n = v.numel()
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - v
    below = v - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


def _ks_bound(n: int) -> float:
    """The KS distance exceeded with probability about 1e-3 by n uniform draws (1.95 / sqrt(n))."""
    return 1.95 / math.sqrt(n)


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_sample_times_without_antithetic_are_uniform(eps):
    """MDLM trains on t ~ Uniform(eps, 1): the seeded draws pass a KS test against that
    law (a constant, a point mass or a skewed law do not), stay inside [eps, 1] and
    reach both ends."""
    t = sample_times(20000, eps=eps, antithetic=False, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert _ks_uniform(t, eps, 1.0) < _ks_bound(t.numel())
    assert t.min() >= eps and t.max() <= 1.0
    assert t.min() < eps + 1e-3 and t.max() > 1.0 - 1e-3
    assert abs(float(t.var()) - (1 - eps) ** 2 / 12) < 0.003  # Var Uniform(eps, 1) = (1 - eps)^2 / 12
    again = sample_times(20000, eps=eps, antithetic=False, generator=torch.Generator().manual_seed(0))
    other = sample_times(20000, eps=eps, antithetic=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t, again) and not torch.equal(t, other)  # seeded by the generator alone


def test_antithetic_times_draw_sample_i_uniformly_in_stratum_i():
    """MDLM's low-discrepancy sampler (Sahoo et al. 2024, App. D.3): with u = (t - eps) /
    (1 - eps), sample i of a batch of B lies in [i/B, (i+1)/B), uniformly there. Pooled
    over batches each t is still Uniform(eps, 1); each batch covers every stratum once, so
    its mean barely moves."""
    eps, batch, calls = 1e-3, 8, 2500
    g = torch.Generator().manual_seed(0)
    t = torch.stack([sample_times(batch, eps=eps, antithetic=True, generator=g) for _ in range(calls)])
    assert t.min() >= eps and t.max() <= 1.0
    u = ((t.double() - eps) / (1 - eps)).clamp(0.0, 1.0 - 1e-12)
    position = torch.arange(batch, dtype=torch.float64)
    assert bool((torch.floor(u * batch) == position).all())  # sample i in stratum i
    within = u * batch - position  # where in its stratum each sample fell
    for i in range(batch):
        assert _ks_uniform(within[:, i], 0.0, 1.0) < _ks_bound(calls), i
    assert _ks_uniform(t, eps, 1.0) < _ks_bound(t.numel())  # the marginal law is unchanged
    # the batch mean of B stratified draws has variance 1 / (12 B^3) in u, against 1 / (12 B) for
    # independent draws: its spread shrinks by a factor B
    means = u.mean(-1)
    assert abs(float(means.mean()) - 0.5) < 0.01
    assert float(means.std()) < 2.0 / math.sqrt(12 * batch**3)


def test_window_masks_split_each_selected_completion_into_prefix_window_and_future():
    maskable = torch.zeros(64, 14, dtype=torch.bool)
    maskable[:, 4:] = True
    maskable[::3, 4:7] = False  # shorter completions (left part is prompt)
    rows = torch.arange(64) % 4 != 0
    window, future = window_masks(maskable, rows, torch.Generator().manual_seed(0))
    assert not (window | future)[~rows].any()
    starts = set()
    for r in torch.nonzero(rows).flatten().tolist():
        w, f, m = window[r], future[r], maskable[r]
        idx = torch.nonzero(w).flatten()
        assert len(idx) >= 1 and bool((idx.diff() == 1).all())  # one contiguous, non-empty window
        assert not (w & f).any() and bool((f <= m).all()) and bool((w <= m).all())
        after = torch.arange(14) > idx.max()
        assert torch.equal(f, m & after)  # everything after the window is future
        starts.add(int(idx.min()) - int(torch.nonzero(m).min()))
    assert len(starts) > 4  # starts vary over the completion


def test_semi_ar_rows_keep_the_prefix_mask_the_future_and_score_only_the_window():
    seen = []

    def model(z, attention_mask=None, sigma=None):
        seen.append(z)
        return torch.zeros(*z.shape, 9)

    x = torch.randint(2, 9, (32, 10), generator=torch.Generator().manual_seed(1))
    maskable = torch.zeros_like(x, dtype=torch.bool)
    maskable[:, 3:] = True
    t = torch.full((32,), 0.5)
    out = mdlm_loss(model, x, maskable, mask_id=1, t=t, generator=torch.Generator().manual_seed(2), semi_ar=1.0)
    z = seen[0]
    # replay the draws to recover the layout
    g = torch.Generator().manual_seed(2)
    torch.rand(x.shape, generator=g)
    torch.rand(32, generator=g)
    window, future = window_masks(maskable, torch.ones(32, dtype=torch.bool), g)
    prefix = maskable & ~window & ~future
    assert torch.equal(z[prefix], x[prefix]) and bool((z[future] == 1).all()) and torch.equal(z[:, :3], x[:, :3])
    scored = (z == 1) & window
    # uniform logits over 9 tokens with the mask removed: every scored term is log 8 at weight 1/t = 2
    expected = scored.sum() * math.log(8) * 2.0 / maskable.sum()
    assert out.num_masked == int(scored.sum()) and math.isclose(float(out.loss), float(expected), rel_tol=1e-5)
    plain = mdlm_loss(model, x, maskable, mask_id=1, t=t, generator=torch.Generator().manual_seed(2))
    again = mdlm_loss(model, x, maskable, mask_id=1, t=t, generator=torch.Generator().manual_seed(2), semi_ar=0.0)
    assert torch.equal(plain.loss, again.loss)  # semi_ar=0 is exactly MDLM (same draws)
    with pytest.raises(ValueError, match="semi_ar"):
        mdlm_loss(model, x, maskable, mask_id=1, t=t, semi_ar=1.5)
