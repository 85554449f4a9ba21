"""What SDTT's distillation target is, checked by brute force on a toy teacher.

Two teacher ancestral steps of size dt from time t (SDTT, Deschenaux & Gulcehre
2025, Algorithm 1) are enumerated exactly on a two-position teacher whose logits at
one position depend on the token at the other, and compared with what
``teacher_targets`` draws and returns over many seeded rows:

* the tokens its teacher draws follow the exact two-step law (MDLM's reverse step,
  Sahoo et al. 2024: a masked position unmasks from t to s with
  (alpha_s - alpha_t) / (1 - alpha_t), alpha_t = 1 - t);
* ``target="paper"``'s mean is Algorithm 1's (dt/t) p1 + (1 - dt/t) E[p2], which is
  not the law of the revealed tokens (1/2 p1 + 1/2 E[p2]);
* ``target="marginal"``'s mean is that law.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from distill.sdtt_math import teacher_targets

MASK = 2  # vocabulary {0, 1} plus MASK
# LOGITS[l, s]: logits of tokens (0, 1) at position l when the other position holds s (0, 1 or MASK):
# far apart, so p1 (other masked) and p2 (other often revealed) differ.
LOGITS = torch.tensor([[[-2.0, 1.0], [-1.0, 1.0], [2.0, -1.0]],
                       [[1.0, -1.0], [2.0, -0.5], [-1.5, 1.0]]], dtype=torch.float64)
ROWS = 200_000


class PairTeacher:
    """Length 2: position l's logits are LOGITS[l, token at the other position]; MASK's logit is 0 (SUBS drops it)."""

    def __init__(self):
        self.config = SimpleNamespace(time_conditioning=False)

    def __call__(self, x, attention_mask=None, sigma=None):
        logits = torch.zeros(*x.shape, 3)
        for pos in range(2):
            logits[:, pos, :2] = LOGITS[pos][x[:, 1 - pos]].float()
        return logits


def prob(pos: int, other: int) -> torch.Tensor:
    """The toy teacher's distribution [2] over tokens (0, 1) at ``pos`` given the other position's token."""
    return torch.softmax(LOGITS[pos, other], -1)


def unmask_chance(t: float, s: float) -> float:
    """MDLM's reverse step from t to s unmasks a masked position with (alpha_s - alpha_t) / (1 - alpha_t)."""
    alpha = lambda u: 1.0 - u  # noqa: E731  (the log-linear schedule; its (1 - eps) factor cancels)
    return (alpha(s) - alpha(t)) / (1.0 - alpha(t))


def two_step_law(t: float, dt: float) -> dict:
    """Enumerate the teacher's two steps t -> t - dt -> t - 2 dt (clamped at 0) from (MASK, MASK).

    Returns joint [3, 3] (the law of the tokens after both steps, MASK included),
    marginal [2, 2] (position l's token given that the steps revealed it), and
    algorithm1 [2, 2] (Algorithm 1's mean target: p1 where step 1 revealed the
    position, else p2, computed on each step-1 outcome of the other position).
    """
    q1 = unmask_chance(t, max(t - dt, 0.0))
    q2 = unmask_chance(t - dt, max(t - 2 * dt, 0.0)) if t > dt else 0.0
    p1 = [prob(pos, MASK) for pos in range(2)]
    step1 = []  # per position: [(state after step 1, probability)]
    for pos in range(2):
        step1.append([(MASK, 1 - q1)] + [(v, q1 * float(p1[pos][v])) for v in range(2)])
    joint = torch.zeros(3, 3, dtype=torch.float64)
    algorithm1 = torch.zeros(2, 2, dtype=torch.float64)
    for (a, pa), (b, pb) in itertools.product(*step1):
        state = (a, b)
        after = []  # per position: [(final token, probability)] given the step-1 state
        for pos in range(2):
            if state[pos] != MASK:
                after.append([(state[pos], 1.0)])
                algorithm1[pos] += pa * pb * p1[pos]
            else:
                p2 = prob(pos, state[1 - pos])
                after.append([(MASK, 1 - q2)] + [(v, q2 * float(p2[v])) for v in range(2)])
                algorithm1[pos] += pa * pb * p2
        for (x0, w0), (x1, w1) in itertools.product(*after):
            joint[x0, x1] += pa * pb * w0 * w1
    revealed = [joint[:2, :].sum(1), joint[:, :2].sum(0)]
    marginal = torch.stack([r / r.sum() for r in revealed])
    return {"joint": joint, "marginal": marginal, "algorithm1": algorithm1, "q1": q1, "q2": q2}


def run_teacher(t: float, dt: float, target: str, seed: int = 0):
    """``teacher_targets`` on ROWS copies of (MASK, MASK): (target probabilities [ROWS, 2, 2], tokens [ROWS, 2])."""
    z = torch.full((ROWS, 2), MASK)
    out, tokens = teacher_targets(PairTeacher(), z, torch.full((ROWS,), t), dt, mask_id=MASK, target=target,
                                  generator=torch.Generator().manual_seed(seed), return_tokens=True)
    return out.double().exp()[..., :2], tokens


def assert_mean_close(samples: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """The mean of ``samples`` [N, ...] is within 5 standard errors of ``want`` [...] in every entry."""
    mean = samples.mean(0)
    se = samples.std(0) / samples.shape[0] ** 0.5
    assert ((mean - want).abs() <= 5 * se + 1e-6).all(), \
        f"{what}: {mean.tolist()} vs {want.tolist()} (se {se.max():.1e})"


@pytest.mark.parametrize("t, dt", [(0.5, 1 / 8), (0.9, 0.3), (0.3, 0.2)])
def test_the_teachers_tokens_follow_the_exact_two_step_law(t, dt):
    """The joint law of both positions' tokens after the two steps (a wrong reveal
    chance at either step, or draws from the wrong step's prediction, fail it)."""
    law = two_step_law(t, dt)
    _, tokens = run_teacher(t, dt, "paper")
    cells = torch.nn.functional.one_hot(tokens[:, 0] * 3 + tokens[:, 1], 9).double()
    assert_mean_close(cells, law["joint"].flatten(), "joint law of the tokens")
    # each step reveals a masked position with the same chance dt / t (unclamped steps), so
    # the two steps reveal it with 2 dt / t, the student's chance over one step of 2 dt
    if t > 2 * dt:
        assert law["q1"] == pytest.approx(dt / t) and (1 - law["q1"]) * law["q2"] == pytest.approx(dt / t)
        revealed = (tokens != MASK).double()
        assert_mean_close(revealed, torch.full((2,), 2 * dt / t, dtype=torch.float64), "reveal share")


@pytest.mark.parametrize("t, dt", [(0.5, 1 / 8), (0.9, 0.3)])
def test_the_paper_target_is_algorithm_1_not_the_two_step_marginal(t, dt):
    """Algorithm 1's mean target is (dt/t) p1 + (1 - dt/t) E[p2]; the token the teacher
    reveals is drawn from 1/2 p1 + 1/2 E[p2]: the mean target sits 2 (1 - dt/t) times as
    far from p1 (a wrong mixing of p1 and p2 fails the first check)."""
    law = two_step_law(t, dt)
    probs, tokens = run_teacher(t, dt, "paper")
    assert_mean_close(probs, law["algorithm1"], "mean paper target")
    p1 = torch.stack([prob(pos, MASK) for pos in range(2)])
    e_p2 = (law["algorithm1"] - (dt / t) * p1) / (1 - dt / t)
    assert torch.allclose(law["marginal"], 0.5 * p1 + 0.5 * e_p2)  # the law the two steps reveal
    assert torch.allclose(law["algorithm1"] - p1, 2 * (1 - dt / t) * (law["marginal"] - p1))
    assert (law["algorithm1"] - law["marginal"]).abs().max() > 0.01  # the toy separates them
    for pos in range(2):  # and the revealed tokens do follow the marginal
        shown = tokens[:, pos] != MASK
        onehot = torch.nn.functional.one_hot(tokens[shown, pos], 2).double()
        assert_mean_close(onehot, law["marginal"][pos], f"revealed tokens at {pos}")


@pytest.mark.parametrize("t, dt", [(0.5, 1 / 8), (0.9, 0.3), (0.3, 0.2)])
def test_the_marginal_target_averages_to_the_exact_two_step_marginal(t, dt):
    """target=marginal: over the teacher's steps, the mean target at each position is
    the law of the token the two steps reveal there (at t <= 2 dt it is Algorithm 1's)."""
    law = two_step_law(t, dt)
    probs, _ = run_teacher(t, dt, "marginal")
    assert_mean_close(probs, law["marginal"], "mean marginal target")
    assert torch.allclose(probs.sum(-1), torch.ones(ROWS, 2, dtype=torch.float64), atol=1e-5)


def test_both_targets_agree_where_the_reveals_are_ordered_or_sure():
    """The ordered layouts reveal each column at a fixed step (block halves, tails) and
    at t <= 2 dt the two steps reveal everything: there Algorithm 1's target is
    already the marginal and target=marginal returns the same targets and path."""
    n = 512
    z = torch.full((n, 2), MASK)
    frozen = torch.ones(n, 2, dtype=torch.bool)
    first = torch.zeros(n, 2, dtype=torch.bool)
    first[:, 0] = True
    ordered = (first, ~first)  # left column at step 1, right at step 2
    t = torch.rand(n, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1
    outs = {kind: teacher_targets(PairTeacher(), z, t, 0.05, mask_id=MASK, frozen=frozen, ordered=ordered,
                                  target=kind, generator=torch.Generator().manual_seed(0), return_tokens=True)
            for kind in ("paper", "marginal")}
    assert torch.equal(outs["paper"][0], outs["marginal"][0]) and torch.equal(outs["paper"][1], outs["marginal"][1])
    t = torch.full((n,), 0.15)  # dt < t < 2 dt: step 1 reveals dt/t, step 2 the rest
    outs = {kind: teacher_targets(PairTeacher(), z, t, 0.1, mask_id=MASK, target=kind,
                                  generator=torch.Generator().manual_seed(0), return_tokens=True)
            for kind in ("paper", "marginal")}
    assert (outs["paper"][1] != MASK).all()
    assert torch.allclose(outs["paper"][0], outs["marginal"][0], atol=1e-6)


def test_an_unknown_target_is_refused_in_one_line():
    from distill import sdtt
    from sdtt_search.cli import compose

    with pytest.raises(ValueError, match="target='mean' is unknown") as err:
        teacher_targets(PairTeacher(), torch.full((1, 2), MASK), torch.ones(1), 0.1, mask_id=MASK, target="mean")
    assert "\n" not in str(err.value)
    assert compose("sdtt", ["teacher=unused"]).target == "paper"
    with pytest.raises(ValueError, match="target='mean' is unknown") as err:
        sdtt.run(compose("sdtt", ["teacher=unused", "target=mean"]))
    assert "\n" not in str(err.value)


def test_sdtt_targets_hand_the_target_option_to_the_teacher():
    """distill.sdtt's layouts: random reveals (semi_ar=0) get a different target with
    target=marginal on the same path; the ordered block-wise and tail layouts the same."""
    from fakes import ContextModel

    from distill.sdtt import sdtt_targets

    vocab, mask = 8, 7
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, mask, (64, 12), generator=g)
    maskable = torch.zeros(64, 12, dtype=torch.bool)
    maskable[:, 4:] = True
    batch = SimpleNamespace(x=x, maskable=maskable, attention_mask=torch.ones(64, 12, dtype=torch.bool))
    layouts = {"random": {"semi_ar": 0.0}, "blocks": {"semi_ar": 1.0, "block": 4},
               "tail": {"semi_ar": 1.0, "layout": "tail"}}
    for name, options in layouts.items():
        outs = {kind: sdtt_targets(ContextModel(vocab, mask, seed=3), batch, torch.Generator().manual_seed(1), dt=1 / 8,
                                   mask_id=mask, eps=1e-5, conditional=True, target=kind, **options)
                for kind in ("paper", "marginal")}
        z, paper, scored = outs["paper"].z, outs["paper"].target, outs["paper"].scored
        z_m, marginal, scored_m = outs["marginal"].z, outs["marginal"].target, outs["marginal"].scored
        assert torch.equal(z, z_m) and torch.equal(scored, scored_m)
        gap = (paper[scored].exp() - marginal[scored].exp()).abs().amax(-1)
        if name == "random":
            assert (gap > 1e-3).any(), name
        else:
            assert torch.equal(paper[scored], marginal[scored]), name
    with pytest.raises(ValueError, match="target='exact' is unknown"):
        sdtt_targets(ContextModel(vocab, mask), batch, None, dt=0.1, mask_id=mask, eps=1e-5, conditional=True,
                     target="exact")
