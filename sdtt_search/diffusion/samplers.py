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
from typing import TYPE_CHECKING

import torch

from .blocks import attention_block, denoise, first_generated_column, takes_noise
from ..sampling_config import KV_CACHES, SamplerConfig
from .rng import RowRNG, categorical, row_positions
from .schedule import LogLinearSchedule
from .subs import NEG_INF

if TYPE_CHECKING:
    from ..model.llama import KVCache


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

#: a prefix cache drops the rows that are done once they are this share of its rows
_DROP_SHARE = 0.125


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


def _draw_probs(logits: torch.Tensor, mask_id: int, temperature: float, probs_t1: torch.Tensor,
                head: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
    """[N, V] draw distributions at ``temperature`` (``probs_t1``: the same logits at
    temperature 1, reused when it applies); ``head`` = (in_head [N] bool, head
    temperature) draws the rows in the head at that temperature instead."""
    def at(t: float) -> torch.Tensor:
        return probs_t1 if t == 1.0 else _token_probs(logits, mask_id, t)

    if head is None or head[1] == temperature or not bool(head[0].any()):
        return at(temperature)
    in_head, head_t = head
    return torch.where(in_head[:, None], at(head_t), at(temperature))


def _head_of(cells: torch.Tensor, gen_start: int, head_tokens: int, head_temperature: float | None):
    """For the cells [B, L] bool being drawn: (in the first ``head_tokens`` generated
    columns [N] in row-major order, head temperature), or None when no head is set."""
    if not head_tokens:
        return None
    return cells.nonzero()[:, 1] < gen_start + head_tokens, float(head_temperature)


def _at_heads(u: torch.Tensor, columns: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
    """Uniforms [B, L] with the first generated ``columns`` set to ``heads`` [B, H]
    (``SamplerConfig.stratify``: a column draws at the same point whatever the step)."""
    if heads is None:
        return u
    if heads.shape[0] != u.shape[0]:
        raise ValueError(f"got stratified uniforms for {heads.shape[0]} rows and a batch of {u.shape[0]}")
    h = min(heads.shape[1], columns.numel())
    u = u.clone()
    u[:, columns[:h]] = heads[:, :h].to(device=u.device, dtype=u.dtype)
    return u


def _order_score(probs: torch.Tensor, remasking: str) -> torch.Tensor:
    """[N] how sure each distribution of ``probs`` [N, V] is, for Dream's decoding orders:
    "margin" the top-1 minus the top-2 probability, "entropy" the negative entropy
    (sum p log p; larger = surer)."""
    if remasking == "margin":
        top = probs.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]
    return (probs * torch.log(probs.clamp(min=1e-300))).sum(-1)


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
    head_tokens: int = 0,
    head_temperature: float | None = None,
    heads: torch.Tensor | None = None,
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
        u_token = _at_heads(rng.uniform(positions, key=(i, 1)), columns, heads)
        reveal = masked & (u_reveal < (t - s) / t)
        if not reveal.any():
            continue
        refresh(t)
        model_probs = _token_probs(logits[reveal], mask_id, 1.0)
        probs = _draw_probs(logits[reveal], mask_id, temperature, model_probs,
                            _head_of(reveal, gen_start, head_tokens, head_temperature))
        drawn = categorical(probs, u_token[reveal])
        x[reveal] = drawn
        token_logprobs[reveal] = model_probs.gather(-1, drawn[:, None]).squeeze(-1).log()
        fresh &= ~reveal.any(-1)

    masked = (x == mask_id) & gen_mask
    if masked.any():  # noise removal at t = eps: greedy fill
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
    head_tokens: int = 0,
    head_temperature: float | None = None,
    window: int | None = None,
    heads: torch.Tensor | None = None,
    kv_cache: str | None = None,
    kv_refresh: int | None = None,
) -> SampleOutput:
    """Confidence-based parallel decoding (LLaDA; Fast-dLLM with ``threshold``).

    The generated region is cut into blocks of ``block_length`` decoded left to right
    (semi-autoregressive; one block if None). Each step predicts every masked
    position of the current block (a token drawn at ``temperature``, its confidence
    the untempered probability of that token) and commits:

    * without ``threshold``: the k most confident, k from LLaDA's linear schedule
      over the block's share of ``steps``;
    * with ``threshold`` tau: every token with confidence >= tau, and at least the
      most confident one (Fast-dLLM); ``steps`` is each row's budget of steps, shared
      by its blocks (each keeps one for every later block), and a row's last allowed
      step in a block commits every token it has left (with ``steps`` >= the generated
      length the budget never binds: Fast-dLLM's uncapped decoding). A row spends a
      step only when it has a masked column in the block, so it decodes as it would
      alone, whatever its batch-mates need. A step is a network call unless the
      prefix cache already holds its logits (then ``nfe`` < steps; same tokens).

    ``remasking="margin"`` / ``"entropy"`` rank by Dream's orders (``topk_margin``: top-1
    minus top-2 probability; ``entropy``: negative entropy) of the distribution drawn from,
    ``remasking="random"`` by a uniform draw instead of the confidence,
    ``"left_to_right"`` by position (leftmost first); the threshold always compares the
    confidence. ``"prefix"`` ranks by position too, and a threshold step commits only
    the run of sure tokens right after the leftmost masked one (contiguous). Committed
    tokens are never changed again.

    ``prefix_cache`` (causal and block-causal denoisers, ``supports_prefix_cache``):
    the keys and values of the committed prefix are cached and each call runs only the
    columns that predict a masked one (``_PrefixCachedLogits``; Fast-dLLM's prefix
    cache, exact here because causal attention never revises a prefix): same tokens
    as without it, and a call is skipped when the cached logits already cover it.

    A noise-conditioned model (``takes_noise``: ``model.noise_input``) is shown one
    uniform u_j per generated column, drawn once per row, and column j is drawn at u_j
    whenever it is committed, so the columns after j in the same call know how j is
    drawn (``sdtt_search.model.noise``). Such a student assumes draws at the
    temperature it was distilled for; at another one (or greedy, temperature 0) its
    later columns may expect a token the draw did not give.

    The first ``head_tokens`` generated columns are drawn at ``head_temperature``
    (``SamplerConfig.head_tokens``); their confidence stays the untempered one.

    ``window`` (``SamplerConfig.window``; ``remasking="prefix"`` with a threshold and the
    prefix cache of a causal denoiser): a call runs the columns up to ``window`` past
    the leftmost masked one, then ``window`` more for the rows whose run of sure tokens
    reaches its end, until each row meets an unsure token or its last masked one. A
    step commits no token past the first unsure one, and a causal column's logits do
    not depend on the columns to its right, so the tokens are the ones the whole tail
    gives, from fewer columns run (more, smaller calls). A call in which some row takes
    its last allowed step runs the whole tail (that row commits every token left).

    ``heads`` [B, H] float64 (``SamplerConfig.stratify``): the uniforms of the first H
    generated columns, fixed for the whole decode (a noise-conditioned model is shown
    them), in place of the row's own draws; the rest are the row's.

    ``kv_cache`` ("prefix" | "dual"; bidirectional denoisers with ``supports_replace_cache``):
    Fast-dLLM's approximate caches. A block's first call runs the whole sequence and
    keeps every column's keys and values; its later calls run only the block ("dual")
    or the block and the columns after it ("prefix") against the kept keys and values
    of the others (``sdtt_search.model.replace_cache``). Not the same tokens as without
    it: the columns not run keep the keys and values of the block's first step.
    ``kv_refresh`` = r runs the whole sequence again every r-th call of a block (r = 1:
    every call, the uncached tokens).
    """
    replace = None
    if kv_cache is not None:
        if kv_cache not in KV_CACHES:
            raise ValueError(f"sampler.kv_cache={kv_cache!r} is unknown; use one of {', '.join(KV_CACHES)} or null")
        if not supports_replace_cache(model):
            raise ValueError(f"sampler.kv_cache={kv_cache} needs a bidirectional denoiser without time conditioning "
                             "(our DiT or Llama denoisers, MDLM/SDTT weights); a causal one has the exact prefix cache "
                             "(sampler.cache=true): set sampler.kv_cache=null")
        replace = model.new_replace_cache()
    if kv_refresh is not None and (kv_cache is None or kv_refresh < 1):
        raise ValueError(f"sampler.kv_refresh={kv_refresh} needs sampler.kv_cache and a positive count of calls")
    if window is not None and not (prefix_cache and remasking == "prefix" and threshold is not None):
        raise ValueError(f"sampler.window={window} needs remasking=prefix, a threshold and the prefix cache "
                         "(cache=true on a causal denoiser); or set sampler.window=null")
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
    if steps < len(blocks):
        raise ValueError(f"steps={steps} is fewer than the {len(blocks)} blocks; use steps >= gen_length / block_length")
    nfe = row_forwards = 0
    token_logprobs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)
    noise_u = noise = None
    if takes_noise(model):  # one uniform per column for the whole decode, shown to the model
        noise_u = _at_heads(rng.uniform(positions, key=(_NOISE_KEY,)), columns, heads)
        noise = torch.where(gen_mask, noise_u, torch.full_like(noise_u, float("nan")))
    cached = _PrefixCachedLogits(model, attention_mask, columns, mask_id, noise=noise) if prefix_cache else None
    # remasking="left_to_right" ranks by position: a larger score for a smaller column
    column_score = (length - torch.arange(length, device=x.device, dtype=torch.float64)).expand(batch, -1)

    # [B] sampler steps each row has taken part in (a step of a row with a masked column in the
    # block): a row's budget is its own, so it decodes as it would alone, whatever its batch-mates
    steps_used = torch.zeros(batch, dtype=torch.long, device=x.device)
    if replace is not None and columns.numel() and int(columns[-1]) - int(columns[0]) + 1 != columns.numel():
        raise ValueError("sampler.kv_cache needs one contiguous generated span (use build_batch)")
    for b, cols in enumerate(blocks):
        block_calls = 0  # a replace cache is refilled by the block's first call (and every kv_refresh-th)
        in_block = torch.zeros(length, dtype=torch.bool, device=x.device)
        in_block[cols] = True
        block_steps = steps // len(blocks) + (1 if b < steps % len(blocks) else 0)
        if threshold is None:  # LLaDA: each block its share of the steps
            counts = transfer_counts(((x[:, cols] == mask_id)).sum(-1), block_steps)
        step = 0
        while True:
            candidates = (x == mask_id) & in_block & gen_mask
            if not candidates.any() or (threshold is None and step >= block_steps):
                break
            if threshold is None and not bool((counts[:, step] > 0).any()):
                step += 1
                continue
            # a noise-conditioned model's columns are drawn at the uniforms it was shown
            u_token = noise_u if noise_u is not None else _at_heads(rng.uniform(positions, key=(b, step, 0)), columns,
                                                                      heads)
            # each row's budget of steps is shared by its blocks, each later block keeping one
            active = candidates.any(-1)
            last_step = (steps_used + 1 >= steps - (len(blocks) - b - 1)) & active if threshold is not None \
                else torch.zeros_like(active)
            call_window = None if bool(last_step.any()) else window  # a row's last step needs its whole tail
            if cached is not None:
                block_logits, ran = cached(x, cols, window=call_window)
            elif replace is not None:
                ran = True
                block = (int(cols[0]), int(cols[-1]) + 1)  # only the block's logits are read
                if block_calls % (kv_refresh or steps + 1) == 0:
                    replace.reset()
                    block_logits = model.forward_replace(x, attention_mask, 0, length, replace, keep=block)
                else:
                    stop = block[1] if kv_cache == "dual" else length
                    block_logits = model.forward_replace(x, attention_mask, block[0], stop, replace, keep=block)
                block_calls += 1
            else:
                ran = True
                t_rows = _masked_fraction(x, gen_mask, mask_id)
                block_logits = denoise(model, x, attention_mask=attention_mask, sigma=_sigma_for(model, schedule, t_rows),
                                       gen_start=int(columns[0]), noise=noise)[:, cols]
            nfe += int(ran)
            steps_used += active.long()
            row_forwards += cached.rows_run if cached is not None else batch
            drawn_tokens = torch.full_like(x, mask_id)
            drawn_probs = torch.zeros(batch, length, dtype=torch.float64, device=x.device)
            drawn_order = drawn_probs.clone() if remasking in ("margin", "entropy") else None

            def draw(cells: torch.Tensor) -> None:
                """Draw the tokens of ``cells`` [B, L] (candidates whose logits are in hand)."""
                cell_logits = block_logits[cells[:, cols]]  # row-major, as cells (all in cols)
                probs = _token_probs(cell_logits, mask_id, 1.0)
                head = _head_of(cells, int(columns[0]), head_tokens, head_temperature)
                draw_probs = None
                if temperature == 0 and head is None:
                    tokens = probs.argmax(-1)
                else:  # at temperature 1 the draw's distribution is the confidence's (softmax(l / 1) = softmax(l))
                    draw_probs = _draw_probs(cell_logits, mask_id, temperature, probs, head)
                    tokens = categorical(draw_probs, u_token[cells])
                drawn_tokens[cells] = tokens
                if drawn_order is not None:  # Dream's orders, from the distribution drawn from (untempered if greedy)
                    drawn_order[cells] = _order_score(probs if temperature == 0 else draw_probs, remasking)
                drawn_probs[cells] = probs.gather(-1, tokens[:, None]).squeeze(-1)

            if call_window is None:
                draw(candidates)
            else:  # run more columns for the rows whose run of sure tokens reaches the last one run
                covered = torch.zeros_like(candidates)
                covered[:, : cached.covered + 1] = True
                leftmost = candidates & (candidates.long().cumsum(-1) == 1)  # committed whatever its confidence
                new = candidates & covered
                while True:
                    draw(new)
                    unsure = candidates & covered & (drawn_probs < threshold) & ~leftmost
                    need = ~unsure.any(-1) & (candidates & ~covered).any(-1)
                    if not bool(need.any()):
                        break
                    new = cached.extend(x, cols, need, block_logits, call_window) & candidates
                    covered |= new
                    nfe += 1
                    row_forwards += cached.rows_run
            tokens, drawn_prob = drawn_tokens[candidates], drawn_probs[candidates]
            if remasking == "low_confidence":
                score = drawn_prob
            elif drawn_order is not None:
                score = drawn_order[candidates]
            elif remasking in ("left_to_right", "prefix"):
                score = column_score[candidates]
            else:
                score = rng.uniform(positions, key=(b, step, 1))[candidates]  # remasking="random"
            conf = torch.full((batch, length), float("-inf"), dtype=torch.float64, device=x.device)  # scores may be < 0
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
                if remasking == "prefix":  # no unsure candidate to the left (the leftmost counts as sure)
                    sure = (candidates & ~(sure | (rank == 0))).long().cumsum(-1) == 0
                commit = candidates & (sure | (rank == 0) | last_step[:, None])
            x = torch.where(commit, proposal, x)
            token_logprobs = torch.where(commit, proposal_logprob, token_logprobs)
            step += 1
    return SampleOutput(tokens=x, nfe=nfe, row_forwards=row_forwards, token_logprobs=token_logprobs)


def supports_replace_cache(model) -> bool:
    """Whether ``model`` takes Fast-dLLM's approximate caches (``forward_replace``;
    bidirectional DiT and Llama denoisers without time conditioning)."""
    return bool(getattr(model, "supports_replace_cache", False))


def supports_prefix_cache(model) -> bool:
    """Whether ``model`` decodes block-wise with an exact prefix KV cache (causal Llama denoisers)."""
    return bool(getattr(model, "supports_prefix_cache", False))


class _PrefixCachedLogits:
    """Logits of the masked columns of a block, from a causal denoiser with a KV cache.

    The cache holds columns [0, c), clean and computed clean, and ``pending`` holds the
    logits at column c (from hidden c - 1, which only sees the cache: exact). A call
    with f and m the first and last column of the block masked in any row runs the
    columns [c, stop) whose hidden states predict a masked column (hidden i predicts
    column i + 1): stop = m for a causal model; a block-causal one (attention block A
    from ``gen_start``) runs to the end of the attention block holding m - 1, whose
    columns see each other. Afterwards [c, c') joins the cache, c' the last
    attention-block boundary (any column for a causal model) at or before f: those
    columns were clean when the call ran them. So each committed column is run clean
    once, and a left-to-right chain (blocks of 1) costs one column per token, as an AR
    model with a KV cache does. Same tokens as the full forward (tested).

    Two savings that change no number: rows sharing a prompt (the N samples of a
    problem in best-of-N) run it once, its keys and values copied to each; and rows
    with no masked column left leave the cache and the later calls (``_DROP_SHARE``).
    ``rows_run`` counts the rows the network processed in the last call.

    A ``window`` (causal models) runs a call only to the column ``window`` - 1 past f;
    ``extend`` then runs the next ``window`` columns for the rows that need them (a
    causal column's logits never depend on the columns to its right, so the logits it
    gives are the full span's).
    """

    def __init__(self, model, attention_mask: torch.Tensor, columns: torch.Tensor, mask_id: int,
                 noise: torch.Tensor | None = None):
        if is_time_conditioned(model) or not supports_prefix_cache(model):
            raise ValueError("prefix_cache needs a causal denoiser without time conditioning (model.causal=true)")
        first, last = int(columns[0]), int(columns[-1])
        if first < 1 or last - first + 1 != columns.numel():
            raise ValueError("prefix_cache needs one contiguous generated span after a prompt (use build_batch)")
        self.model, self.attention_mask, self.mask_id = model, attention_mask, mask_id
        self.noise = noise  # [B, L] fixed for the whole decode, so cached columns stay exact
        self.gen_start, self.gen_stop, self.block = first, last + 1, attention_block(model)
        self.cache = model.new_cache()
        self.pending: torch.Tensor | None = None  # [R, V] logits at column cache.length
        self.rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)  # [R] rows in the cache
        self.rows_run = 0
        self.covered = 0  # the last call's logits cover the block's columns <= covered (every cache row)
        self._stop = 0  # the span a call without a window would run ends here
        self._extension: tuple[KVCache, torch.Tensor] | None = None  # (cache of the rows extended, their cache rows)

    def _boundary_at_or_before(self, column: int) -> int:
        if not self.block or column <= self.gen_start:
            return column
        return self.gen_start + (column - self.gen_start) // self.block * self.block

    def _end_of_block_holding(self, column: int) -> int:
        if not self.block or column < self.gen_start:
            return column + 1
        return self.gen_start + ((column - self.gen_start) // self.block + 1) * self.block

    def _span(self, x: torch.Tensor, rows: torch.Tensor, start: int, stop: int,
              cache: KVCache | None = None) -> torch.Tensor:
        """Logits [len(rows), stop - start, V] of the span [start, stop) of ``rows``, after
        ``cache`` (default: the prefix cache)."""
        kwargs = {"gen_start": self.gen_start} if self.block else {}
        if self.noise is not None:
            kwargs["noise"] = self.noise[rows]
        self.rows_run += rows.numel()
        return self.model.forward_span(x[rows], self.attention_mask[rows], start, stop, self.cache if cache is None else cache, **kwargs)

    @staticmethod
    def _place(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, start: int, span: torch.Tensor) -> None:
        """Write ``span`` (hidden columns [start, start + width) of ``rows``) into ``logits``
        [B, len(cols), V] at the block columns they predict (hidden i predicts column i + 1)."""
        at = cols - 1 - start
        inside = (at >= 0) & (at < span.shape[1])
        logits[rows[:, None], inside.nonzero().squeeze(-1)[None, :]] = span[:, at[inside]]

    def _prefill_shared_prompts(self, x: torch.Tensor) -> None:
        """Run each distinct prompt (tokens and padding of columns [0, gen_start)) once and
        copy its keys, values and next-column logits to the rows that share it."""
        g = self.gen_start
        key = torch.cat([x[self.rows, :g], self.attention_mask[self.rows, :g].long()], dim=1)
        _, inverse = torch.unique(key, dim=0, return_inverse=True)
        count = int(inverse.max()) + 1
        if 2 * count > self.rows.numel():  # few repeats: one span over everything costs less than the copies
            return
        first = torch.full((count,), self.rows.numel(), dtype=torch.long, device=x.device)
        first.scatter_reduce_(0, inverse, torch.arange(self.rows.numel(), device=x.device), reduce="amin")
        span = self._span(x, self.rows[first], 0, g)
        self.cache.extend(g)
        self.cache.take_rows(inverse)
        self.pending = span[:, -1][inverse]

    def _drop_finished_rows(self, x: torch.Tensor) -> None:
        """Rows with no masked generated column need no more calls: drop them from the
        cache once they are at least ``_DROP_SHARE`` of it (copying the cache costs too)."""
        alive = (x[self.rows, self.gen_start : self.gen_stop] == self.mask_id).any(-1)
        if float((~alive).sum()) >= _DROP_SHARE * self.rows.numel():
            keep = alive.nonzero().squeeze(-1)
            self.cache.take_rows(keep)
            self.rows = self.rows[keep]
            if self.pending is not None:
                self.pending = self.pending[keep]

    def __call__(self, x: torch.Tensor, cols: torch.Tensor, window: int | None = None) -> tuple[torch.Tensor, bool]:
        """([B, len(cols), V] logits of the block's columns, filled on its masked ones up
        to ``self.covered`` (all of them without ``window``; with it, the first ``window``
        from the leftmost masked one), and whether the network ran: a lone masked column
        right after the cache needs no call)."""
        self.rows_run = 0
        self._extension = None
        if self.cache.length == 0 and self.rows.numel() > 1:
            self._prefill_shared_prompts(x)
        else:
            self._drop_finished_rows(x)
        masked = cols[(x[:, cols] == self.mask_id).any(0)]
        f, m = int(masked[0]), int(masked[-1])
        start = self.cache.length
        stop = self._stop = min(self._end_of_block_holding(m - 1), x.shape[1])
        if window is not None:
            if self.block:
                raise ValueError("sampler.window needs a causal denoiser without attention blocks")
            stop = min(stop, f + window - 1)
        self.covered = max(stop, start)
        span = self._span(x, self.rows, start, stop) if stop > start else None
        source = span if span is not None else self.pending
        logits = source.new_zeros(x.shape[0], cols.numel(), source.shape[-1])
        if span is not None:
            self._place(logits, self.rows, cols, start, span)
        if self.pending is not None:
            at = (cols == start).nonzero().squeeze(-1)
            if at.numel():
                logits[self.rows, int(at[0])] = self.pending
        end = self._boundary_at_or_before(f)
        if end > start:  # [start, end) were clean when run, so their keys and values are exact
            self.cache.extend(end - start)
            self.pending = span[:, end - 1 - start].clone()
        return logits, self.rows_run > 0

    def extend(self, x: torch.Tensor, cols: torch.Tensor, need: torch.Tensor, logits: torch.Tensor,
               window: int) -> torch.Tensor:
        """Run the next ``window`` columns after ``self.covered`` for the batch rows
        ``need`` [B] bool (rows in the cache that were in every extension of this call so
        far) and write their logits into ``logits`` [B, len(cols), V]. Returns [B, L] bool:
        the cells newly covered."""
        index = need[self.rows].nonzero().squeeze(-1)  # cache rows
        if self._extension is None:
            cache = self.cache.select(index, self.covered)
        else:
            previous, before = self._extension
            cache = previous.select(torch.searchsorted(before, index), self.covered)
        start, stop = self.covered, min(self.covered + window, self._stop)
        rows = self.rows[index]
        self.rows_run = 0
        span = self._span(x, rows, start, stop, cache)
        cache.extend(stop - start)
        self._extension = (cache, index)
        self.covered = stop
        self._place(logits, rows, cols, start, span)
        new = torch.zeros_like(x, dtype=torch.bool)
        new[rows, start + 1 : stop + 1] = True  # hidden i predicts column i + 1
        return new


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
) -> SampleOutput:
    """Run the sampler named by ``config.method`` with one seed per row; ``heads``
    [B, config.stratify] the rows' stratified uniforms (``Search`` makes them), None
    for independent draws."""
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
        )
    return confidence_sample(
        model, x, gen_mask, attention_mask, mask_id=mask_id, rng=rng, steps=config.steps,
        temperature=config.temperature, block_length=config.block_length,
        threshold=config.threshold, remasking=config.remasking,
        prefix_cache=config.cache and supports_prefix_cache(model),
        head_tokens=config.head_tokens, head_temperature=config.head_temperature, window=config.window,
        heads=heads, kv_cache=config.kv_cache, kv_refresh=config.kv_refresh,
    )
