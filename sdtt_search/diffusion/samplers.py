"""Prompt-conditioned, batched samplers for masked diffusion LMs.

Every sampler takes a batch laid out as ``[left padding | prompt | MASK * G]``:

* ``x``: [B, L] long, MASK (``mask_id``) on the positions to generate;
* ``gen_mask``: [B, L] bool, True on the positions to generate (the only ones a
  sampler may write; prompt tokens are clamped by construction);
* ``attention_mask``: [B, L] bool, False on padding.

The model is any callable ``model(x, attention_mask=..., sigma=...) -> logits [B, L, V]``
(our ``Denoiser``, or an adapter of a foreign model). Randomness comes from a
``RowRNG`` with one stream per row, so a row's result depends on its seed only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .blocks import attention_block, denoise, first_generated_column
from .config import SamplerConfig
from .rng import RowRNG, categorical, row_positions
from .schedule import LogLinearSchedule
from .subs import NEG_INF


@dataclass
class SampleOutput:
    """Sampler result.

    Attributes:
        tokens: [B, L] final tokens (no MASK left in the generated region).
        nfe: number of network calls (each call may cover a subset of the rows).
        row_forwards: rows processed over all calls (the compute actually spent).
        token_logprobs: [B, L] float64 log-probability (temperature 1) the model gave
            each generated token when it was committed; 0 outside the generated region.
    """

    tokens: torch.Tensor
    nfe: int
    row_forwards: int
    token_logprobs: torch.Tensor


def is_time_conditioned(model) -> bool:
    """Whether ``model`` wants sigma(t) (a ``config.time_conditioning`` flag; False if absent)."""
    return bool(getattr(getattr(model, "config", None), "time_conditioning", False))


def _token_probs(logits: torch.Tensor, mask_id: int, temperature: float) -> torch.Tensor:
    """[N, V] logits -> float64 probabilities with MASK excluded; one-hot argmax if T = 0."""
    logits = logits.to(torch.float64)
    logits[..., mask_id] = NEG_INF
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float64)
    return torch.softmax(logits / temperature, dim=-1)


def _sigma_for(model, schedule: LogLinearSchedule, t: torch.Tensor) -> torch.Tensor | None:
    return schedule.sigma(t) if is_time_conditioned(model) else None


def _masked_fraction(x: torch.Tensor, gen_mask: torch.Tensor, mask_id: int) -> torch.Tensor:
    """[B] share of the generated region still masked (the diffusion time of a row)."""
    still = ((x == mask_id) & gen_mask).sum(-1).to(torch.float32)
    return (still / gen_mask.sum(-1).clamp(min=1)).clamp(min=1e-5)


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
) -> SampleOutput:
    """MDLM ancestral sampler (spec §A7) with a per-row no-change cache.

    Time grid t_i = linspace(1, eps, steps + 1). At a step from t to s < t every
    masked position is revealed with probability (t - s) / t and, if revealed, takes
    a token drawn from p_theta(x | z_t) (float64 inverse-CDF draw); revealed tokens
    never change. A final noise-removal pass fills what is still masked greedily.

    The network does not see t unless the model is time-conditioned, so its output
    for a row is reused until that row changes (MDLM caches only when the whole
    batch is unchanged; per row is strictly more reuse with identical results).
    Network calls <= steps + 1.
    """
    x = x.clone()
    batch, length = x.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(x, dtype=torch.bool)
    positions = row_positions(attention_mask)
    gen_start = first_generated_column(gen_mask)
    use_cache = cache and not is_time_conditioned(model)
    grid = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    logits: torch.Tensor | None = None
    token_logprobs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)
    fresh = torch.zeros(batch, dtype=torch.bool, device=x.device)
    nfe = row_forwards = 0

    def refresh(t: float) -> None:
        nonlocal logits, nfe, row_forwards
        rows = torch.arange(batch, device=x.device) if not use_cache else (~fresh).nonzero().squeeze(-1)
        if rows.numel() == 0:
            return
        t_rows = torch.full((rows.numel(),), float(t), device=x.device)
        out = denoise(model, x[rows], attention_mask=attention_mask[rows], sigma=_sigma_for(model, schedule, t_rows),
                      gen_start=gen_start)
        if logits is None:
            logits = torch.empty(batch, length, out.shape[-1], dtype=out.dtype, device=x.device)
        logits[rows] = out
        fresh[rows] = True
        nfe += 1
        row_forwards += rows.numel()

    for i in range(steps):
        t, s = float(grid[i]), float(grid[i + 1])
        masked = (x == mask_id) & gen_mask
        if not masked.any():
            break
        u_reveal = rng.uniform(positions, key=(i, 0))
        u_token = rng.uniform(positions, key=(i, 1))
        reveal = masked & (u_reveal < (t - s) / t)
        if not reveal.any():
            continue
        refresh(t)
        model_probs = _token_probs(logits[reveal], mask_id, 1.0)
        probs = model_probs if temperature == 1.0 else _token_probs(logits[reveal], mask_id, temperature)
        drawn = categorical(probs, u_token[reveal])
        x[reveal] = drawn
        token_logprobs[reveal] = model_probs.gather(-1, drawn[:, None]).squeeze(-1).log()
        fresh &= ~reveal.any(-1)

    masked = (x == mask_id) & gen_mask
    if masked.any():  # noise removal at t = eps: greedy fill (spec §A7.4)
        refresh(eps)
        fill = _token_probs(logits[masked], mask_id, 1.0)
        chosen = fill.argmax(-1)
        x[masked] = chosen
        token_logprobs[masked] = fill.gather(-1, chosen[:, None]).squeeze(-1).log()
    return SampleOutput(tokens=x, nfe=nfe, row_forwards=row_forwards, token_logprobs=token_logprobs)


def transfer_counts(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's linear schedule: tokens to commit at each of ``steps`` steps.

    Args:
        num_masked: [B] masked tokens per row in the current block.
    Returns:
        [B, steps] long, rows sum to ``num_masked``; the remainder of
        num_masked // steps goes to the first steps.
    """
    base = num_masked // steps
    remainder = num_masked % steps
    counts = base[:, None].repeat(1, steps)
    counts += (torch.arange(steps, device=num_masked.device)[None, :] < remainder[:, None]).long()
    return counts


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
) -> SampleOutput:
    """Confidence-based parallel decoding (LLaDA; Fast-dLLM with ``threshold``).

    The generated region is cut into blocks of ``block_length`` decoded left to right
    (semi-autoregressive; one block if None). Each step predicts every masked
    position of the current block (a token drawn at ``temperature``, its confidence
    the untempered probability of that token) and commits:

    * without ``threshold``: the k most confident, k from LLaDA's linear schedule
      over the block's share of ``steps``;
    * with ``threshold`` tau: every token with confidence >= tau, and at least the
      most confident one (Fast-dLLM); the block runs until it is filled.

    ``remasking="random"`` ranks by a uniform draw instead of the confidence,
    ``"left_to_right"`` by position (leftmost first); the threshold always compares the
    confidence. Committed tokens are never changed again.

    ``prefix_cache`` (causal denoisers, ``supports_prefix_cache``): each call runs only
    the columns from the end of the cached clean prefix to the current block, and the
    finished blocks' keys and values are cached (Fast-dLLM's prefix cache, exact here
    because causal attention never revises a prefix): same tokens as without it. A
    block-causal model (``attention_block`` B) needs blocks that are multiples of B
    (``prefix_cache_fits``).
    """
    x = x.clone()
    batch, length = x.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(x, dtype=torch.bool)
    positions = row_positions(attention_mask)
    columns = gen_mask.any(0).nonzero().squeeze(-1)
    if not bool((gen_mask[:, columns]).all()):
        raise ValueError("confidence_sample needs the same generated columns in every row (use build_batch)")
    gen_len = columns.numel()
    block = block_length or gen_len
    blocks = [columns[i : i + block] for i in range(0, gen_len, block)]
    if threshold is None and steps < len(blocks):
        raise ValueError(f"steps={steps} is fewer than the {len(blocks)} blocks; use steps >= gen_length / block_length")
    nfe = row_forwards = 0
    token_logprobs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)
    if prefix_cache and not prefix_cache_fits(model, block, gen_len):
        raise ValueError(f"prefix_cache with a block-causal model of attention block {attention_block(model)} needs "
                         f"block_length a multiple of it (got {block}); set block_length or sampler.cache=false")
    cached = _PrefixCachedLogits(model, attention_mask, columns) if prefix_cache else None
    # remasking="left_to_right" ranks by position: a larger score for a smaller column
    column_score = (length - torch.arange(length, device=x.device, dtype=torch.float64)).expand(batch, -1)

    for b, cols in enumerate(blocks):
        in_block = torch.zeros(length, dtype=torch.bool, device=x.device)
        in_block[cols] = True
        block_steps = steps // len(blocks) + (1 if b < steps % len(blocks) else 0)
        if threshold is None:
            counts = transfer_counts(((x[:, cols] == mask_id)).sum(-1), block_steps)
        step = 0
        while True:
            candidates = (x == mask_id) & in_block & gen_mask
            if not candidates.any() or (threshold is None and step >= block_steps):
                break
            if threshold is None and not bool((counts[:, step] > 0).any()):
                step += 1
                continue
            u_token = rng.uniform(positions, key=(b, step, 0))
            u_rank = rng.uniform(positions, key=(b, step, 1))
            if cached is not None:
                logits = cached(x, cols)
            else:
                t_rows = _masked_fraction(x, gen_mask, mask_id)
                logits = denoise(model, x, attention_mask=attention_mask, sigma=_sigma_for(model, schedule, t_rows),
                                 gen_start=int(columns[0]))
            nfe += 1
            row_forwards += batch
            cand_logits = logits[candidates]
            probs = _token_probs(cand_logits, mask_id, 1.0)
            if temperature == 0:
                tokens = probs.argmax(-1)
            else:
                tokens = categorical(_token_probs(cand_logits, mask_id, temperature), u_token[candidates])
            drawn_prob = probs.gather(-1, tokens[:, None]).squeeze(-1)
            if remasking == "low_confidence":
                score = drawn_prob
            elif remasking == "left_to_right":
                score = column_score[candidates]
            else:
                score = u_rank[candidates]
            conf = torch.full((batch, length), -1.0, dtype=torch.float64, device=x.device)
            conf[candidates] = score
            proposal = torch.full_like(x, mask_id)
            proposal[candidates] = tokens
            proposal_logprob = torch.zeros_like(token_logprobs)
            proposal_logprob[candidates] = drawn_prob.log()
            # Rank candidates per row by confidence (non-candidates sort last).
            order = conf.argsort(dim=-1, descending=True)
            rank = torch.empty_like(order)
            rank.scatter_(-1, order, torch.arange(length, device=x.device).expand(batch, -1))
            if threshold is None:
                commit = candidates & (rank < counts[:, step][:, None])
            else:
                sure = torch.zeros_like(candidates)
                sure[candidates] = drawn_prob >= threshold  # always the drawn token's probability, whatever the order
                commit = candidates & (sure | (rank == 0))
            x = torch.where(commit, proposal, x)
            token_logprobs = torch.where(commit, proposal_logprob, token_logprobs)
            step += 1
    return SampleOutput(tokens=x, nfe=nfe, row_forwards=row_forwards, token_logprobs=token_logprobs)


def supports_prefix_cache(model) -> bool:
    """Whether ``model`` decodes block-wise with an exact prefix KV cache (causal Llama denoisers)."""
    return bool(getattr(model, "supports_prefix_cache", False))


def prefix_cache_fits(model, block_length: int | None, gen_length: int) -> bool:
    """Whether decoding blocks of ``block_length`` (None: one block) keeps the prefix
    cache exact: always for causal models; for block-causal ones when every block
    boundary is one of the model's (a block of B columns must be run whole)."""
    b = attention_block(model)
    block = block_length or gen_length
    return not b or block % b == 0 or block >= gen_length


class _PrefixCachedLogits:
    """Logits of a block being decoded, from a causal denoiser with a KV cache.

    The cache holds columns [0, s - 1) when the block starts at column s. A call runs
    columns [cache end, e - 1) for a block [s, e): the clean columns not yet cached (the
    previous block, or the prompt at the first call), then the block's own columns but
    its last (hidden i predicts column i + 1). A block-causal model runs to e: the
    block's other columns see its last one. Afterwards the clean columns before
    s - 1 join the cache; s - 1 is rerun by the block's later steps, whose logits at s
    need its hidden state.
    """

    def __init__(self, model, attention_mask: torch.Tensor, columns: torch.Tensor):
        if is_time_conditioned(model) or not supports_prefix_cache(model):
            raise ValueError("prefix_cache needs a causal denoiser without time conditioning (model.causal=true)")
        first, last = int(columns[0]), int(columns[-1])
        if first < 1 or last - first + 1 != columns.numel():
            raise ValueError("prefix_cache needs one contiguous generated span after a prompt (use build_batch)")
        self.model, self.attention_mask = model, attention_mask
        self.gen_start, self.whole_blocks = first, bool(attention_block(model))
        self.cache = model.new_cache()

    def __call__(self, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """[B, L, V] logits, filled on columns (cache end, block end) (zeros elsewhere)."""
        start, block_start, block_stop = self.cache.length, int(cols[0]), int(cols[-1]) + 1
        if self.whole_blocks:
            span, new = self.model.forward_span(x, self.attention_mask, start, block_stop, self.cache,
                                                gen_start=self.gen_start)
            span = span[:, :-1]  # the block's last hidden state predicts the next block
        else:
            span, new = self.model.forward_span(x, self.attention_mask, start, block_stop - 1, self.cache)
        logits = span.new_zeros(x.shape[0], x.shape[1], span.shape[-1])
        logits[:, start + 1:block_stop] = span
        if block_start - 1 > start:
            self.cache.extend(new, block_start - 1 - start)
        return logits


def sample(
    model,
    x: torch.Tensor,
    gen_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    config: SamplerConfig,
    *,
    mask_id: int,
    seeds: list[int] | torch.Tensor,
) -> SampleOutput:
    """Run the sampler named by ``config.method`` with one seed per row."""
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
        )
    return confidence_sample(
        model, x, gen_mask, attention_mask, mask_id=mask_id, rng=rng, steps=config.steps,
        temperature=config.temperature, block_length=config.block_length,
        threshold=config.threshold, remasking=config.remasking,
        prefix_cache=(config.cache and supports_prefix_cache(model)
                      and prefix_cache_fits(model, config.block_length, int(gen_mask.sum(-1).max()))),
    )
