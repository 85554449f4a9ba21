"""A candidate depends on (seed, problem, index) only: the same bits in any batch.

Best-of-N packs the rows of several problems into each batch, and which problems
share a batch changes with ``batch_size``, ``limit``, a resumed run and the executor.
Each row has its own random numbers (``diffusion.rng``); these tests check that the
rest holds too, bit for bit: every zoo family (diffusion students, teachers, AR twins)
in every decoding mode it supports (thresholds with a per-row step budget, the prefix
cache, its window, Fast-dLLM's approximate cache, stratified heads, ancestral
sampling) gives each candidate the same text and the same log-probability whether its
problem runs alone, packed with others, split over several calls, or after another
offset. The network side is ``sdtt_search.model.invariant`` (batch-invariant kernels
in the sense of He and Thinking Machines Lab, "Defeating Nondeterminism in LLM
Inference", 2025).
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.loading import load_model
from sdtt_search.model.invariant import ROW_TILE, active, batch_invariance, invariant_linear, invariant_sdpa, pointwise
from sdtt_search.search.engine import Search
from sdtt_search.search.stopping import StopRule
from tasks import load_task

SEEDS = (0, 1)
N = 3  # candidates per problem


@functools.lru_cache(maxsize=None)
def _model(name: str):
    return load_model(name, device="cpu", ar_backend="transformers")  # vLLM batches by its own rules


@functools.lru_cache(maxsize=None)
def _problems(task_name: str):
    task = load_task("countdown", n=3) if task_name == "countdown" else load_task("sudoku", size=4)
    return task, task.problems("test", limit=4)


def _sampler(model, overrides: dict) -> SamplerConfig:
    return SamplerConfig.from_dict({**model.default_sampler().to_dict(), **overrides})


def _candidates(results) -> dict:
    """{(problem id, index): (text, score)} (score: the mean log-probability, compared bit for bit)."""
    return {(r.id, i): (c.text, c.score) for r in results for i, c in enumerate(r.candidates)}


def _assert_same(reference: dict, other: dict, what: str) -> None:
    shared = reference.keys() & other.keys()
    assert shared, what
    differ = [(key, reference[key], other[key]) for key in sorted(shared) if reference[key] != other[key]]
    assert not differ, f"{what}: {len(differ)} of {len(shared)} candidates differ, e.g. {differ[:2]}"


CASES = [
    # block-causal student: threshold with a binding step budget (10 steps, 6 blocks), exact prefix cache
    ("countdown-cd3-num-sdtt-8", "countdown", {}),
    ("countdown-cd3-num-sdtt-8", "countdown", {"cache": False, "stratify": 2}),
    # causal noise-input student: prefix remasking with a threshold, the prefix cache and its window
    ("countdown-cd3-num-sdtt-4", "countdown", {"window": 2, "stratify": 1}),
    # teacher: LLaDA's schedule (no threshold) in blocks, prefix cache
    ("countdown-cd3-num-teacher", "countdown", {"block_length": 4, "steps": 6}),
    # bidirectional DiT: ancestral sampling (rows refreshed in subsets), stratified heads
    ("sudoku4-teacher", "sudoku", {"steps": 4, "stratify": 2}),
    # confidence decoding with Fast-dLLM's dual cache, refreshed every other call
    ("sudoku4-sdtt-2", "sudoku", {"method": "confidence", "steps": 6, "block_length": 6, "threshold": 0.9,
                                  "kv_cache": "dual", "kv_refresh": 2}),
    # AR twins on the transformers backend
    ("countdown-cd3-ar", "countdown", {}),
    ("sudoku4-ar", "sudoku", {"stratify": 2}),
    # the rest of the zoo, each in its recorded decoding (the public-range CD3 family, the
    # default Sudoku student)
    ("countdown-cd3-wide-sdtt-8", "countdown", {}),
    ("countdown-cd3-wide-sdtt-4", "countdown", {}),
    ("countdown-cd3-wide-teacher", "countdown", {}),
    ("countdown-cd3-wide-ar", "countdown", {"stratify": 1}),
    ("sudoku4-sdtt-4", "sudoku", {}),
]


@pytest.mark.parametrize("name, task_name, overrides", CASES, ids=[f"{c[0]}{c[2] or ''}" for c in CASES])
def test_a_candidate_does_not_depend_on_its_batch(name, task_name, overrides):
    model = _model(name)
    task, problems = _problems(task_name)
    sampler = _sampler(model, overrides)
    for seed in SEEDS:
        def search(batch_size: int) -> Search:
            return Search(model, task, sampler, batch_size=batch_size, seed=seed)

        alone = {}
        for problem in problems[:3]:  # each problem alone, its N rows in one call
            alone |= _candidates(search(N).generate_problems([problem], N))
        # rows of one problem spread over calls shared with other problems (the last call holds one row)
        _assert_same(alone, _candidates(search(N + 1).generate_problems(problems[:3], N)), f"split, seed {seed}")
        # another offset (a resumed run, another limit): other batch-mates, other row positions, one call
        _assert_same(alone, _candidates(search(3 * N).generate_problems(problems[1:4], N)), f"offset, seed {seed}")


def test_a_stopped_search_draws_the_full_searchs_candidates():
    """Rounds of 1 (the rows of the problems still open) give the bits of the full best-of-N."""
    model = _model("countdown-cd3-num-sdtt-8")
    task, problems = _problems("countdown")
    search = Search(model, task, model.default_sampler(), batch_size=6, seed=3)
    full = _candidates(search.generate_problems(problems, N))
    _assert_same(full, _candidates(search.until_stopped(problems, N, StopRule(1))), "until_stopped")


# prompts of different token lengths: left-padded in one batch, each padding's attention run apart
MIXED = {
    "countdown-cd3-num-sdtt-8": ["3,26,82,53", "4,7,9,12,40", "40,2,8", "3,26,82,53"],
    "countdown-cd3-num-sdtt-4": ["3,26,82,53", "4,7,9,12,40", "40,2,8"],
    "gsm8k-sdtt": ["Tom has 3 apples and buys 4 more. How many apples does he have?",
                   "A train goes 60 miles in 2 hours. How far does it go in 5 hours at that speed?", "What is 7 + 5?"],
    "gsm8k-teacher": ["Tom has 3 apples and buys 4 more. How many apples does he have?", "What is 7 + 5?"],
    "gsm8k-ar": ["Tom has 3 apples and buys 4 more. How many apples does he have?", "What is 7 + 5?"],
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_prompts_of_other_lengths_leave_a_row_unchanged(name):
    model = _model(name)
    prompts = MIXED[name]
    sampler = _sampler(model, {"gen_length": 24, **({} if model.kind == "ar" else {"steps": 4})}
                       if name.startswith("gsm8k") else {})
    assert len({len(model.tokenizer.encode(p)) for p in prompts}) > 1
    seeds = [11 * i + 5 for i in range(len(prompts))]
    mixed = model.generate(prompts, sampler, seeds=seeds)
    for i, prompt in enumerate(prompts):
        alone = model.generate([prompt], sampler, seeds=[seeds[i]])
        assert (alone.texts[0], alone.logprobs[0]) == (mixed.texts[i], mixed.logprobs[i]), prompt


@pytest.mark.parametrize("remasking", ["low_confidence", "prefix"])
def test_a_threshold_step_budget_is_each_rows_own(remasking):
    """With fewer steps than tokens, a row's last allowed step in a block commits all it
    has left; counted per row, a row decodes as it would alone, whatever steps its
    batch-mates needed (an exactly batch-invariant fake network isolates the sampler)."""
    from fakes import ContextModel

    from sdtt_search.diffusion import build_batch, sample

    vocab, mask = 12, 11
    model = ContextModel(vocab, mask, seed=3)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, mask, (5,), generator=g).tolist() for _ in range(8)]
    config = SamplerConfig(method="confidence", steps=7, temperature=1.0, block_length=2, threshold=0.3,
                           remasking=remasking)
    batch = build_batch(prompts, 12, pad_id=0, mask_id=mask)
    together = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=mask, seeds=range(8))
    for row in range(8):
        one = build_batch([prompts[row]], 12, pad_id=0, mask_id=mask)
        alone = sample(model, one.x, one.gen_mask, one.attention_mask, config, mask_id=mask, seeds=[row])
        assert torch.equal(alone.tokens[0], together.tokens[row]), row
        assert torch.equal(alone.token_logprobs[0], together.token_logprobs[row]), row


@torch.no_grad()
def test_invariant_linear_gives_a_row_the_same_bits_for_any_row_count():
    torch.manual_seed(0)
    weight, bias, x = torch.randn(96, 64), torch.randn(96), torch.randn(3 * ROW_TILE + 5, 64)
    whole = invariant_linear(x, weight, bias)
    for rows in range(1, x.shape[0]):
        assert torch.equal(invariant_linear(x[-rows:], weight, bias), whole[-rows:]), rows
    assert torch.equal(invariant_linear(x.view(1, -1, 64), weight, bias)[0], whole)  # leading dims folded
    assert torch.allclose(whole, F.linear(x, weight, bias), atol=1e-5)  # the same map


def test_training_and_switched_off_kernels_are_the_plain_ones():
    """With gradients (training) or inside ``batch_invariance(False)`` every call is the
    plain ``F.linear`` / SDPA one, bit for bit (training numerics do not change)."""
    torch.manual_seed(0)
    weight, x = torch.randn(96, 64), torch.randn(5, 64)
    q, k, v = torch.randn(3, 2, 1, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8)
    with torch.no_grad(), batch_invariance(False):
        assert not active()
        assert torch.equal(invariant_linear(x, weight), F.linear(x, weight))
        assert torch.equal(invariant_sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v))
    assert active() is False  # gradients on here
    assert torch.equal(invariant_linear(x, weight), F.linear(x, weight))
    with torch.no_grad():
        assert active()


@pytest.mark.parametrize("name", ["countdown-cd3-num-sdtt-4", "countdown-cd3-num-sdtt-8"])
def test_a_prefix_cache_span_does_not_change_a_column(name):
    """A column's logits have the same bits whichever span (start, stop) computes them,
    with whichever rows: the spans a sampler runs are chosen by the whole batch."""
    net = _model(name).model
    torch.manual_seed(1)
    x = torch.randint(3, net.config.vocab_size, (5, 19))
    mask = torch.ones_like(x, dtype=torch.bool)
    gen_start = 7
    kwargs = {"gen_start": gen_start} if net.config.attention_block else {}
    noise = torch.rand(x.shape, dtype=torch.float64) if net.config.noise_input else None

    def logits(rows, cut: int, stop: int) -> torch.Tensor:
        cache = net.new_cache()
        extra = dict(kwargs, **({} if noise is None else {"noise": noise[rows]}))
        net.forward_span(x[rows], mask[rows], 0, cut, cache, **extra)
        cache.extend(cut)
        return net.forward_span(x[rows], mask[rows], cut, stop, cache, **extra)

    reference = logits(torch.arange(5), gen_start, 19)  # columns gen_start .. 18
    spans = [(gen_start, 13), (gen_start + 2, 19), (gen_start + 4, gen_start + 6), (17, 19)]  # attention blocks of 2
    if not net.config.attention_block:
        spans += [(gen_start + 1, gen_start + 2), (18, 19)]
    for rows in (torch.arange(5), torch.tensor([3]), torch.tensor([4, 0, 3])):
        for cut, stop in spans:
            got = logits(rows, cut, stop)
            assert torch.equal(got, reference[rows][:, cut - gen_start : stop - gen_start]), (rows, cut, stop)


@pytest.mark.parametrize("name", ["silu", "gelu_tanh"])
def test_pointwise_gives_an_element_the_same_bits_whatever_the_tensor_size(name):
    """ATen runs an elementwise op's remainder with its scalar function, which rounds
    otherwise than the vector one for these two: an element at the end of a short tensor
    gets other bits than in a long one, unless ``pointwise`` pads to whole vectors."""
    fn = F.silu if name == "silu" else functools.partial(F.gelu, approximate="tanh")
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 3
    # (on an AVX-512 CPU, plain fn(x[:n])[-1] differs from fn(x)[n - 1] for several n < 200)
    whole = pointwise(fn, x)
    assert all(torch.equal(pointwise(fn, x[:n]), whole[:n]) for n in range(1, 200))
