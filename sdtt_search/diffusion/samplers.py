"""Prompt-conditioned, batched samplers for masked diffusion LMs.

Every sampler takes a batch laid out as ``[left padding | prompt | MASK * G]``:

* ``x``: [B, L] long, MASK (``mask_id``) on the positions to generate;
* ``gen_mask``: [B, L] bool, True on the positions to generate (the only ones a
  sampler may write; prompt tokens are clamped by construction);
* ``attention_mask``: [B, L] bool, False on padding.

The model is any callable ``model(x, attention_mask=..., sigma=...) -> logits [B, L, V]``
(our ``Denoiser``, or an adapter of a foreign model). Randomness comes from a
``RowRNG`` with one stream per row, so a row's result depends on its seed only.

``confidence_sample`` is LLaDA's loop (for each block, for each step: logits ->
confidences -> positions to commit -> commit) over small pieces: ``logits_sources``
(where the logits come from: the full forward, the exact prefix KV cache and its
window, Fast-dLLM's approximate caches), ``draws`` (token draws, hot and stratified
heads), ``orders`` (the decoding orders) and ``commit_rules`` (LLaDA's linear schedule,
Fast-dLLM's threshold with a per-row step budget).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ..sampling_config import SamplerConfig
from .blocks import first_generated_column, is_time_conditioned, takes_noise
from .commit_rules import LinearSchedule, ThresholdBudget, transfer_counts
from .draws import TokenDraw, at_heads, draw_probs, head_of, token_probs
from .logits_sources import (
    RowReusedLogits,
    check_kv_cache,
    make_logits_source,
    supports_prefix_cache,
    supports_replace_cache,
)
from .orders import ORDERS, rank
from .rng import RowRNG, categorical, row_positions
from .schedule import LogLinearSchedule

__all__ = [
    "SampleOutput", "ancestral_sample", "confidence_sample", "sample", "is_time_conditioned", "transfer_counts",
    "supports_prefix_cache", "supports_replace_cache",
]


@dataclass
class SampleOutput:
    """Sampler result.

    Attributes:
        tokens: [B, L] final tokens (no MASK left in the generated region).
        nfe: number of network calls (each call may cover a subset of the rows).
        row_forwards: rows processed over all calls (the compute actually spent; a prefix
            cache's shared prompt counts once per distinct prompt, done rows not at all).
        token_logprobs: [B, L] float64 log-probability (temperature 1) the model gave
            each generated token when it was committed; 0 outside the generated region.
    """

    tokens: torch.Tensor
    nfe: int
    row_forwards: int
    token_logprobs: torch.Tensor


#: RowRNG key of the per-column noise a noise-conditioned model is shown (the step
#: keys are (block, step, 0 | 1) with small non-negative entries)
_NOISE_KEY = 1 << 40


@torch.no_grad()
def ancestral_sample(
    model,
    x: torch.Tensor,
    gen_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    mask_id: int,
    rng: RowRNG,
    steps: int,
    temperature: float = 1.0,
    cache: bool = True,
    eps: float = 1e-5,
    schedule: LogLinearSchedule = LogLinearSchedule(),
    head_tokens: int = 0,
    head_temperature: float | None = None,
    heads: torch.Tensor | None = None,
    stop_after: int | None = None,
    trace: list | None = None,
) -> SampleOutput:
    """MDLM ancestral sampler (Sahoo et al. 2024, Sec. 3) with a per-row no-change cache.

    Time grid t_i = linspace(1, eps, steps + 1). At a step from t to s < t every
    masked position is revealed with probability (t - s) / t and, if revealed, takes
    a token drawn from p_theta(x | z_t) (float64 inverse-CDF draw); revealed tokens
    never change. A final noise-removal pass fills what is still masked greedily.

    The network does not see t unless the model is time-conditioned, so its output
    for a row is reused until that row changes (MDLM caches only when the whole
    batch is unchanged; per row is strictly more reuse with identical results).
    Network calls <= steps + 1. The first ``head_tokens`` generated columns are drawn
    at ``head_temperature`` (``SamplerConfig.head_tokens``).

    ``heads`` [B, H] (``SamplerConfig.stratify``): the token uniforms of the first H
    generated columns, whatever the step that reveals them (a column is revealed once,
    and whether it is comes from its own uniform, so each draw stays exact).

    ``stop_after`` = m: return after the first m steps of the grid, masks left in place
    and no noise removal (a stage of particle search). On this linear grid step i
    reveals a masked position with probability 1 / (steps - i), so a later call with
    ``steps - m`` steps continues exactly where this one stopped.

    ``trace``: a list to which each step that calls the network appends the step's
    prediction of the clean sequence, [B, L] long: committed tokens, and at every masked
    position the network's most likely token (temporal voting, ``Search(temporal=True)``).
    """
    if takes_noise(model):
        raise ValueError("a noise-conditioned model (model.noise_input) decodes with sampler.method=confidence, "
                         "which draws each column at the uniform the model was shown")
    x = x.clone()
    batch, length = x.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(x, dtype=torch.bool)
    positions = row_positions(attention_mask)
    gen_start = first_generated_column(gen_mask)
    columns = gen_mask.any(0).nonzero().squeeze(-1)
    grid = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    source = RowReusedLogits(model, attention_mask, schedule, gen_start, reuse=cache and not is_time_conditioned(model))
    token_logprobs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)

    for i in range(steps):
        if stop_after is not None and i >= stop_after:
            return SampleOutput(tokens=x, nfe=source.nfe, row_forwards=source.row_forwards,
                                token_logprobs=token_logprobs)
        t, s = float(grid[i]), float(grid[i + 1])
        masked = (x == mask_id) & gen_mask
        if not masked.any():
            break
        u_reveal = rng.uniform(positions, key=(i, 0))
        u_token = at_heads(rng.uniform(positions, key=(i, 1)), columns, heads)
        reveal = masked & (u_reveal < (t - s) / t)
        if not reveal.any():
            continue
        logits = source.logits(x, t)
        if trace is not None:
            trace.append(torch.where(masked, token_probs(logits, mask_id, 1.0).argmax(-1), x).cpu())
        model_probs = token_probs(logits[reveal], mask_id, 1.0)
        probs = draw_probs(logits[reveal], mask_id, temperature, model_probs,
                           head_of(reveal, gen_start, head_tokens, head_temperature))
        drawn = categorical(probs, u_token[reveal])
        x[reveal] = drawn
        token_logprobs[reveal] = model_probs.gather(-1, drawn[:, None]).squeeze(-1).log()
        source.changed(reveal.any(-1))

    masked = (x == mask_id) & gen_mask
    if masked.any():  # noise removal at t = eps: greedy fill
        fill = token_probs(source.logits(x, eps)[masked], mask_id, 1.0)
        chosen = fill.argmax(-1)
        x[masked] = chosen
        token_logprobs[masked] = fill.gather(-1, chosen[:, None]).squeeze(-1).log()
    return SampleOutput(tokens=x, nfe=source.nfe, row_forwards=source.row_forwards, token_logprobs=token_logprobs)


def _check_options(model, remasking: str, threshold: float | None, prefix_cache: bool, window: int | None,
                   kv_cache: str | None, kv_refresh: int | None) -> None:
    """One-line errors for option sets ``confidence_sample`` cannot run."""
    check_kv_cache(model, kv_cache, kv_refresh)
    if window is not None and not (prefix_cache and remasking == "prefix" and threshold is not None):
        raise ValueError(f"sampler.window={window} needs remasking=prefix, a threshold and the prefix cache "
                         "(cache=true on a causal denoiser); or set sampler.window=null")
    if remasking not in ORDERS:
        raise ValueError(f"sampler.remasking={remasking!r} is unknown; use one of {', '.join(ORDERS)}")


def _blocks(gen_mask: torch.Tensor, columns: torch.Tensor, block_length: int | None, steps: int) -> list[torch.Tensor]:
    """The generated ``columns`` cut into blocks of ``block_length`` (one block if None)."""
    if not bool((gen_mask[:, columns]).all()):
        raise ValueError("confidence_sample needs the same generated columns in every row (use build_batch)")
    gen_len = columns.numel()
    block = block_length or gen_len
    blocks = [columns[i : i + block] for i in range(0, gen_len, block)]
    if steps < len(blocks):
        raise ValueError(f"steps={steps} is fewer than the {len(blocks)} blocks; "
                         "use steps >= gen_length / block_length")
    return blocks


# confidence_sample is long only by its signature and docstring (every option of the
# decoding, documented in one place); the decoding loop itself is about 25 lines.
@torch.no_grad()
def confidence_sample(
    model,
    x: torch.Tensor,
    gen_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    mask_id: int,
    rng: RowRNG,
    steps: int,
    temperature: float = 0.0,
    block_length: int | None = None,
    threshold: float | None = None,
    remasking: str = "low_confidence",
    schedule: LogLinearSchedule = LogLinearSchedule(),
    prefix_cache: bool = False,
    head_tokens: int = 0,
    head_temperature: float | None = None,
    window: int | None = None,
    heads: torch.Tensor | None = None,
    kv_cache: str | None = None,
    kv_refresh: int | None = None,
    stop_after: int | None = None,
    trace: list | None = None,
) -> SampleOutput:
    """Confidence-based parallel decoding (LLaDA, Nie et al. 2025; Fast-dLLM, Wu et al.
    2025, with ``threshold``).

    The generated region is cut into blocks of ``block_length`` decoded left to right
    (semi-autoregressive; one block if None). Each step of a block reads as LLaDA's
    ``generate``: the block's logits (``logits_sources``) -> for every masked position a
    token drawn at ``temperature``, its confidence the untempered probability of that
    token (``draws``) -> the positions ranked by ``remasking`` (``orders``) -> the ones
    committed (``commit_rules``):

    * without ``threshold``: the k best ranked, k from LLaDA's linear schedule over the
      block's share of ``steps`` (``transfer_counts``);
    * with ``threshold`` tau: every token with confidence >= tau, and at least the best
      ranked one (Fast-dLLM); ``steps`` is each row's budget of steps, shared by its
      blocks (each keeps one for every later block), and a row's last allowed step in a
      block commits every token it has left (with ``steps`` >= the generated length the
      budget never binds: Fast-dLLM's uncapped decoding). A row spends a step only when
      it has a masked column in the block, so it decodes as it would alone, whatever its
      batch-mates need. A step is a network call unless the prefix cache already holds
      its logits (then ``nfe`` < steps; same tokens).

    Committed tokens are never changed again.

    Args:
        remasking: the order (``orders.ORDERS``): "low_confidence" (LLaDA), "margin" /
            "entropy" (Dream's ``topk_margin`` / ``entropy``, of the distribution drawn
            from), "random" (a uniform draw), "left_to_right" (leftmost first), "prefix"
            (by position, and a threshold step commits only the run of sure tokens right
            after the leftmost masked one). A threshold always compares the confidence.
        prefix_cache: the exact KV cache of the committed prefix (causal and block-causal
            denoisers, ``supports_prefix_cache``; ``logits_sources.PrefixCachedLogits``):
            same tokens as without it, and a call is skipped when the cached logits
            already cover it.
        window: the prefix cache run ``window`` columns at a time (``SamplerConfig.window``;
            ``remasking="prefix"``, a threshold and a causal denoiser;
            ``logits_sources.WindowedPrefixLogits``): the same tokens from fewer columns run.
        kv_cache / kv_refresh: Fast-dLLM's approximate "prefix" | "dual" cache of
            bidirectional denoisers (``supports_replace_cache``), the whole sequence run
            again every ``kv_refresh``-th call of a block (``logits_sources.ReplaceCachedLogits``):
            not the same tokens as without it.
        head_tokens / head_temperature: the first ``head_tokens`` generated columns are
            drawn at ``head_temperature`` (``SamplerConfig.head_tokens``); their
            confidence stays the untempered one.
        heads: [B, H] float64 (``SamplerConfig.stratify``): the uniforms of the first H
            generated columns, fixed for the whole decode (a noise-conditioned model is
            shown them), in place of the row's own draws; the rest are the row's.
        stop_after: return after this many steps of the schedule (idle ones included),
            the rest still masked (a stage of particle search: the next stage is a call
            with the steps left).
        trace: a list to which each step appends its prediction of the clean sequence,
            [B, L] long: committed tokens, and the step's draw at every position it drew
            (temporal voting, ``Search(temporal=True)``).

    A noise-conditioned model (``takes_noise``: ``model.noise_input``) is shown one
    uniform u_j per generated column, drawn once per row, and column j is drawn at u_j
    whenever it is committed, so the columns after j in the same call know how j is
    drawn (``sdtt_search.model.noise``). Such a student assumes draws at the
    temperature it was distilled for; at another one (or greedy, temperature 0) its
    later columns may expect a token the draw did not give.
    """
    _check_options(model, remasking, threshold, prefix_cache, window, kv_cache, kv_refresh)
    x = x.clone()
    batch, length = x.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(x, dtype=torch.bool)
    positions = row_positions(attention_mask)
    columns = gen_mask.any(0).nonzero().squeeze(-1)
    blocks = _blocks(gen_mask, columns, block_length, steps)
    noise_u = noise = None
    if takes_noise(model):  # one uniform per column for the whole decode, shown to the model
        noise_u = at_heads(rng.uniform(positions, key=(_NOISE_KEY,)), columns, heads)
        noise = torch.where(gen_mask, noise_u, torch.full_like(noise_u, float("nan")))
    source = make_logits_source(model, attention_mask=attention_mask, gen_mask=gen_mask, columns=columns,
                                mask_id=mask_id, schedule=schedule, steps=steps, noise=noise, prefix_cache=prefix_cache,
                                window=window, threshold=threshold, kv_cache=kv_cache, kv_refresh=kv_refresh)
    order = ORDERS[remasking]
    rule = LinearSchedule(steps, len(blocks), batch, x.device) if threshold is None \
        else ThresholdBudget(threshold, steps, len(blocks), batch, x.device, contiguous=order.contiguous)
    draw = TokenDraw(mask_id, temperature, first_generated_column(gen_mask), head_tokens, head_temperature,
                     order.dream_score)
    token_logprobs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)
    budget = itertools.count() if stop_after is None else iter(range(stop_after))  # steps this call may take

    for b, cols in enumerate(blocks):
        in_block = torch.zeros(length, dtype=torch.bool, device=x.device)
        in_block[cols] = True
        rule.start_block(b, (x[:, cols] == mask_id).sum(-1))
        source.start_block()
        for step in itertools.count():
            candidates = (x == mask_id) & in_block & gen_mask
            if not candidates.any() or rule.block_over(step):
                break
            if next(budget, None) is None:  # stop_after steps taken: return the partial state
                return SampleOutput(tokens=x, nfe=source.nfe, row_forwards=source.row_forwards,
                                    token_logprobs=token_logprobs)
            if rule.idle(step):  # no row commits anything at this step of the schedule
                continue
            # a noise-conditioned model's columns are drawn at the uniforms it was shown
            u_token = noise_u if noise_u is not None else at_heads(rng.uniform(positions, key=(b, step, 0)), columns,
                                                                     heads)
            last_step = rule.take_step(candidates.any(-1))  # [B]: rows that commit all they have left
            proposal = draw.proposal(x, cols, u_token)
            source.propose(x, cols, candidates, proposal, whole_tail=bool(last_step.any()))  # logits -> tokens
            if trace is not None:
                trace.append(torch.where(proposal.tokens != mask_id, proposal.tokens, x).cpu())
            score = order.score(proposal, candidates, lambda: rng.uniform(positions, key=(b, step, 1)))
            commit = rule.commit(candidates, proposal.probs, rank(candidates, score), step, last_step)
            x = torch.where(commit, proposal.tokens, x)
            token_logprobs = torch.where(commit, proposal.probs.log(), token_logprobs)
    return SampleOutput(tokens=x, nfe=source.nfe, row_forwards=source.row_forwards, token_logprobs=token_logprobs)


def sample(
    model,
    x: torch.Tensor,
    gen_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    config: SamplerConfig,
    *,
    mask_id: int,
    seeds: list[int] | torch.Tensor,
    heads: torch.Tensor | None = None,
    stop_after: int | None = None,
    trace: list | None = None,
) -> SampleOutput:
    """Run the sampler named by ``config.method`` with one seed per row; ``heads``
    [B, config.stratify] the rows' stratified uniforms (``Search`` makes them), None
    for independent draws; ``stop_after``: return after that many steps, the rest
    still masked; ``trace``: a list that collects each step's prediction of the clean
    sequence (see the two samplers)."""
    seeds = [int(s) for s in seeds]
    if len(seeds) != x.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {x.shape[0]} rows; pass one seed per row")
    if config.method not in ("ancestral", "confidence"):
        raise ValueError(f"sampler.method={config.method!r} is for autoregressive models; masked diffusion models "
                         "sample with method=ancestral or method=confidence")
    rng = RowRNG(seeds, device=x.device)
    if config.method == "ancestral":
        return ancestral_sample(
            model, x, gen_mask, attention_mask, mask_id=mask_id, rng=rng, steps=config.steps,
            temperature=config.temperature, cache=config.cache, eps=config.eps,
            head_tokens=config.head_tokens, head_temperature=config.head_temperature, heads=heads,
            stop_after=stop_after, trace=trace,
        )
    return confidence_sample(
        model, x, gen_mask, attention_mask, mask_id=mask_id, rng=rng, steps=config.steps,
        temperature=config.temperature, block_length=config.block_length,
        threshold=config.threshold, remasking=config.remasking,
        prefix_cache=config.cache and supports_prefix_cache(model),
        head_tokens=config.head_tokens, head_temperature=config.head_temperature, window=config.window,
        heads=heads, kv_cache=config.kv_cache, kv_refresh=config.kv_refresh, stop_after=stop_after, trace=trace,
    )
