"""Samplers: prompt clamping, no MASK, call budgets, batch invariance, and the
statistics of the ancestral and confidence updates."""
from __future__ import annotations

import math

import pytest
import torch
from fakes import ContextModel, FixedModel, TableModel

from sdtt_search.diffusion import (
    RowRNG,
    SamplerConfig,
    ancestral_sample,
    build_batch,
    confidence_sample,
    fit_blocks,
    sample,
    transfer_counts,
)

V, MASK, PAD = 12, 11, 0

CONFIGS = [
    SamplerConfig(method="ancestral", steps=1, temperature=1.0),
    SamplerConfig(method="ancestral", steps=7, temperature=1.0),
    SamplerConfig(method="ancestral", steps=64, temperature=0.7, cache=False),
    SamplerConfig(method="confidence", steps=6, temperature=0.0),
    SamplerConfig(method="confidence", steps=9, temperature=1.0, block_length=4),
    SamplerConfig(method="confidence", steps=3, temperature=0.0, threshold=0.5, block_length=4),
    SamplerConfig(method="confidence", steps=12, temperature=1.0, remasking="random"),
]


def _prompts(n: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, MASK, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-{c.steps}-{c.threshold}-{c.block_length}")
def test_prompt_kept_no_mask_and_call_budget(config):
    model = ContextModel(V, MASK)
    batch = build_batch(_prompts(6), 12, pad_id=PAD, mask_id=MASK)
    out = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=range(6))
    assert torch.equal(out.tokens[~batch.gen_mask], batch.x[~batch.gen_mask])  # prompt and padding untouched
    assert not (out.tokens == MASK).any()
    assert out.nfe == len(model.calls)
    if config.method == "ancestral":
        assert out.nfe <= config.steps + 1
    elif config.threshold is None:
        assert out.nfe <= config.steps


def test_ancestral_cache_hits_make_fewer_calls_with_identical_results():
    batch = build_batch(_prompts(1), 8, pad_id=PAD, mask_id=MASK)
    cached, uncached = ContextModel(V, MASK), ContextModel(V, MASK)
    rng = lambda: RowRNG([5])  # noqa: E731
    a = ancestral_sample(cached, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=rng(), steps=256, cache=True)
    b = ancestral_sample(uncached, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=rng(), steps=256, cache=False)
    assert torch.equal(a.tokens, b.tokens)
    # 8 tokens over 256 steps: at most 8 steps reveal something, so at most 8 + 1 calls.
    assert a.nfe <= 9 < 256


def test_ancestral_per_row_cache_recomputes_only_changed_rows():
    batch = build_batch(_prompts(8), 6, pad_id=PAD, mask_id=MASK)
    model = ContextModel(V, MASK)
    out = ancestral_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG(range(8)), steps=32)
    assert out.row_forwards < out.nfe * 8  # some calls covered only part of the batch


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-{c.steps}-{c.threshold}-{c.block_length}")
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batched_equals_one_by_one(config, temperature):
    config = SamplerConfig(**{**config.to_dict(), "temperature": temperature})
    prompts = _prompts(5, seed=3)
    seeds = [11, 12, 13, 14, 15]
    model = ContextModel(V, MASK)
    batch = build_batch(prompts, 10, pad_id=PAD, mask_id=MASK)
    together = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=seeds)
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        single = build_batch([prompt], 10, pad_id=PAD, mask_id=MASK)
        alone = sample(model, single.x, single.gen_mask, single.attention_mask, config, mask_id=MASK, seeds=[seed])
        assert torch.equal(batch.completions(together.tokens)[row], single.completions(alone.tokens)[0])


def test_seeds_change_samples_and_are_reproducible():
    batch = build_batch([[1, 2]] * 2, 16, pad_id=PAD, mask_id=MASK)
    model = ContextModel(V, MASK)
    config = SamplerConfig(steps=8)
    a = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[1, 2])
    b = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[1, 2])
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens[0], a.tokens[1])


def test_ancestral_reveal_fraction_follows_the_time_grid():
    """After the step from t to s, a masked token stays masked with prob s / t, so
    the masked share seen by the network at step i is ~ t_i."""
    gen, steps = 4000, 5
    model = FixedModel(torch.zeros(V))
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    ancestral_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]), steps=steps, cache=False)
    grid = torch.linspace(1.0, 1e-5, steps + 1)
    # The network is called at the first step with a reveal, i.e. step 0, and then
    # after every step (each reveals ~ gen * dt tokens).
    assert len(model.calls) == steps
    for i, x in enumerate(model.calls):
        share = (x[0, -gen:] == MASK).float().mean().item()
        assert abs(share - grid[i].item()) < 0.03, (i, share, grid[i].item())


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_ancestral_tokens_follow_the_tempered_model_distribution(temperature):
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0])
    logits[5:11] = -30.0  # make a few tokens essentially impossible
    model = FixedModel(logits)
    gen = 6000
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    out = ancestral_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([7]), steps=4, temperature=temperature)
    counts = torch.bincount(out.tokens[0, -gen:], minlength=V).double()
    masked_logits = logits.clone().double()
    masked_logits[MASK] = -math.inf
    expected = torch.softmax(masked_logits / temperature, -1)
    expected_noise_removed = expected.clone()  # final greedy fill of the few leftover masks
    assert counts[MASK] == 0
    freq = counts / gen
    assert torch.allclose(freq[:5], expected_noise_removed[:5], atol=0.02), (freq, expected)


def test_transfer_counts_linear_schedule():
    counts = transfer_counts(torch.tensor([10, 3, 0]), 4)
    assert counts.tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0]]


def test_confidence_commits_the_most_confident_tokens_first():
    gen = 6
    table = torch.zeros(gen + 1, V)
    # Position j prefers token 1 + j with a margin that grows with j: the later the
    # position the more confident, so decoding must go right to left.
    for j in range(gen):
        table[1 + j, 1 + j] = 1.0 + j
    model = TableModel(table)
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]), steps=3, temperature=0.0)
    assert out.tokens[0, 1:].tolist() == [1, 2, 3, 4, 5, 6]
    assert out.nfe == 3
    masked_before = [(x[0, 1:] == MASK).tolist() for x in model.calls]
    assert masked_before[1] == [True] * 4 + [False] * 2  # two most confident committed first
    assert masked_before[2] == [True] * 2 + [False] * 4


def test_threshold_commits_all_confident_tokens_and_at_least_one():
    gen = 6
    table = torch.zeros(gen + 1, V)
    table[1:4, 2] = 20.0  # three positions are sure (prob ~1)
    table[4:, 3] = 0.5  # three are unsure
    model = TableModel(table)
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]), steps=gen, temperature=0.0, threshold=0.9)
    assert not (out.tokens == MASK).any()
    first = (model.calls[1][0, 1:] == MASK).tolist()
    assert first == [False, False, False, True, True, True]  # the three sure ones at once
    assert out.nfe == 1 + 3  # then one unsure token per call


def test_left_to_right_commits_the_leftmost_masked_token_plus_the_confident_ones():
    """Even where later positions are more confident, the leftmost masked token is the
    one a step must commit; with a threshold the sure tokens join it (the order a
    block-wise SDTT student was distilled in)."""
    gen = 6
    table = torch.zeros(gen + 1, V)
    for j in range(gen):  # confidence grows to the right, as in the low-confidence test
        table[1 + j, 1 + j] = 1.0 + j
    model = TableModel(table)
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                            steps=3, temperature=0.0, remasking="left_to_right")
    assert out.tokens[0, 1:].tolist() == [1, 2, 3, 4, 5, 6]
    masked_before = [(x[0, 1:] == MASK).tolist() for x in model.calls]
    assert masked_before[1] == [False] * 2 + [True] * 4  # the two leftmost first
    table = torch.zeros(gen + 1, V)
    table[1:, 3] = 0.5  # unsure everywhere ...
    table[5, 2] = 20.0  # ... except position 5
    model = TableModel(table)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                            steps=gen, temperature=0.0, threshold=0.9, remasking="left_to_right")
    first = (model.calls[1][0, 1:] == MASK).tolist()
    assert first == [False, True, True, True, False, True]  # the leftmost and the sure one
    assert out.nfe == 1 + 4


def test_semi_autoregressive_blocks_decode_left_to_right():
    model = ContextModel(V, MASK)
    batch = build_batch([[1, 2]], 8, pad_id=PAD, mask_id=MASK)
    confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]), steps=4, block_length=4)
    seen = [call["x"][0] for call in model.calls]
    assert len(seen) == 4
    for x in seen[:2]:  # while block 1 is decoded, block 2 stays fully masked
        assert (x[-4:] == MASK).all()
    assert not (seen[2][2:6] == MASK).any()  # block 1 done before block 2 starts


def test_fit_blocks_gives_every_block_at_least_one_step():
    wide = fit_blocks(SamplerConfig(method="confidence", steps=4, block_length=5), 25)
    assert wide.block_length == 7  # ceil(25 / 4): one step per block
    # with a threshold, steps is a budget too
    assert fit_blocks(SamplerConfig(method="confidence", steps=2, block_length=5, threshold=0.9), 25).block_length == 13
    for unchanged in [SamplerConfig(method="confidence", steps=8, block_length=5),  # 8 steps cover 5 blocks
                      SamplerConfig(method="confidence", steps=5, block_length=5, threshold=0.9),
                      SamplerConfig(method="ancestral", steps=2)]:
        assert fit_blocks(unchanged, 25) == unchanged
    model = ContextModel(V, MASK)
    batch = build_batch([[1, 2]], 9, pad_id=PAD, mask_id=MASK)
    fitted = fit_blocks(SamplerConfig(method="confidence", steps=3, block_length=2), 9)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                            steps=fitted.steps, block_length=fitted.block_length)
    assert out.nfe == 3 and not (out.tokens == MASK).any()


def test_time_conditioned_models_get_sigma_and_no_cache():
    model = ContextModel(V, MASK, time_conditioning=True)
    batch = build_batch(_prompts(3), 8, pad_id=PAD, mask_id=MASK)
    out = ancestral_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([1, 2, 3]), steps=16)
    assert all(c["sigma"] is not None for c in model.calls)
    assert out.row_forwards == out.nfe * 3  # every call covers the whole batch


def test_bad_sampler_config_is_a_one_line_error():
    for bad in [dict(method="beam"), dict(steps=0), dict(temperature=-1), dict(threshold=1.5), dict(remasking="x")]:
        with pytest.raises(ValueError) as err:
            SamplerConfig(**bad)
        assert "\n" not in str(err.value) and list(bad)[0] in str(err.value)
    with pytest.raises(ValueError, match="unknown sampler option"):
        SamplerConfig.from_dict({"stepz": 3})


def test_build_batch_left_pads_and_aligns_the_generated_region():
    batch = build_batch([[5], [6, 7, 8]], 2, pad_id=PAD, mask_id=MASK)
    assert batch.x.tolist() == [[PAD, PAD, 5, MASK, MASK], [6, 7, 8, MASK, MASK]]
    assert batch.attention_mask.tolist() == [[False, False, True, True, True], [True] * 5]
    assert batch.gen_mask[:, -2:].all() and not batch.gen_mask[:, :-2].any()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.method}-{c.steps}-{c.threshold}-{c.block_length}")
def test_token_logprobs_are_the_model_probabilities_of_the_chosen_tokens(config):
    logits = torch.randn(V, generator=torch.Generator().manual_seed(4))
    model = FixedModel(logits)
    batch = build_batch([[1, 2], [3]], 9, pad_id=PAD, mask_id=MASK)
    out = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[0, 1])
    reference = torch.log_softmax(torch.cat([logits[:MASK], logits[MASK + 1 :]]).double(), -1)
    expected = reference[out.tokens[batch.gen_mask]]  # MASK is the last id, so ids below it map directly
    assert torch.allclose(out.token_logprobs[batch.gen_mask], expected, atol=1e-9)
    assert (out.token_logprobs[~batch.gen_mask] == 0).all()


def test_threshold_steps_cap_the_calls_and_the_last_step_commits_the_rest():
    """With a threshold, ``steps`` is a budget: a block's last allowed step commits
    every token left (unsure ones included); a budget of one call per token never binds."""
    gen = 6
    table = torch.zeros(gen + 1, V)
    table[1:, 3] = 0.5  # unsure everywhere
    table[2, 2] = 20.0  # but position 2
    batch = build_batch([[1]], gen, pad_id=PAD, mask_id=MASK)
    model = TableModel(table)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                            steps=2, temperature=0.0, threshold=0.9, remasking="left_to_right")
    assert out.nfe == 2 and not (out.tokens == MASK).any()
    assert (model.calls[1][0, 1:] == MASK).tolist() == [False, False, True, True, True, True]  # leftmost + sure one
    uncapped = confidence_sample(TableModel(table), batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                                 rng=RowRNG([0]), steps=gen, temperature=0.0, threshold=0.9, remasking="left_to_right")
    assert uncapped.nfe == 1 + 4  # one unsure token per call after the first
    with pytest.raises(ValueError, match="fewer than"):
        confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                          steps=2, block_length=2, threshold=0.9)


@pytest.mark.parametrize("remasking,first", [("low_confidence", 0), ("margin", 1), ("entropy", 2)])
def test_dreams_orders_pick_which_column_is_committed_first(remasking, first):
    """Three columns: A the most probable top token (0.5) but a close second (0.45) and a
    spread tail; B a clear margin (0.4 over 0.15); C two near-equal tokens and nothing else
    (lowest entropy). One token per step, greedy: each order commits its own column first."""
    from fakes import TableModel

    from sdtt_search.diffusion.batching import build_batch
    from sdtt_search.diffusion.rng import RowRNG
    from sdtt_search.diffusion.samplers import confidence_sample

    V, MASK = 8, 7
    rows = {0: [0.5, 0.45, 0.0125, 0.0125, 0.0125, 0.0125, 0.0], 1: [0.4, 0.15, 0.15, 0.15, 0.15, 0.0, 0.0],
            2: [0.49, 0.48, 0.03, 0.0, 0.0, 0.0, 0.0]}
    batch = build_batch([[2, 3]], 3, pad_id=0, mask_id=MASK)
    table = torch.zeros(batch.x.shape[1], V)
    for j, probs in rows.items():
        table[2 + j, :7] = torch.tensor(probs).clamp(min=1e-9).log()
    table[:, MASK] = -1e4
    model = TableModel(table)
    out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([0]),
                            steps=3, temperature=0.0, remasking=remasking)
    second_input = model.calls[1][0, 2:]  # what the second step saw: only the first committed column is filled
    assert [int(t) != MASK for t in second_input] == [j == first for j in range(3)]
    assert not (out.tokens == MASK).any()


def test_every_remasking_name_has_an_order_and_no_other_name_decodes():
    from sdtt_search.diffusion.orders import ORDERS
    from sdtt_search.sampling_config import REMASKING

    assert set(ORDERS) == set(REMASKING)
    batch = build_batch(_prompts(2), 4, pad_id=PAD, mask_id=MASK)
    with pytest.raises(ValueError, match="remasking='confident'"):
        confidence_sample(ContextModel(V, MASK), batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                          rng=RowRNG([0, 1]), steps=4, remasking="confident")
