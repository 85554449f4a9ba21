"""Where the samplers get their logits.

A ``LogitsSource`` gives ``confidence_sample`` the logits [B, len(cols), V] of the
current block's columns and counts what it spent: ``nfe`` (network calls, each possibly
over a subset of the rows) and ``row_forwards`` (rows the calls ran; identical rows of a
call run once, ``blocks.denoise_distinct``, where no cache is kept). ``propose`` draws
the step's candidates from them (``draws.Proposal``):

* ``FullForward``: the whole sequence, every step (LLaDA's ``generate``;
  time-conditioned and noise-conditioned models are shown sigma(t) and their noise);
* ``PrefixCachedLogits``: the exact prefix KV cache of causal and block-causal
  denoisers (Fast-dLLM's prefix cache, Wu et al. 2025, exact here: causal attention
  never revises a prefix); ``WindowedPrefixLogits`` runs it a window at a time;
* ``ReplaceCachedLogits``: Fast-dLLM's approximate prefix / dual caches of
  bidirectional denoisers (``sdtt_search.model.replace_cache``).

``ancestral_sample`` reads ``RowReusedLogits``: the whole sequence [B, L, V], a row's
logits reused until the row changes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..sampling_config import KV_CACHES
from .blocks import attention_block, denoise, denoise_distinct, first_generated_column, is_time_conditioned
from .draws import Proposal
from .schedule import LogLinearSchedule

if TYPE_CHECKING:
    from ..model.llama import KVCache

#: a prefix cache drops the rows that are done once they are this share of its rows
_DROP_SHARE = 0.125


def supports_replace_cache(model) -> bool:
    """Whether ``model`` takes Fast-dLLM's approximate caches (``forward_replace``;
    bidirectional DiT and Llama denoisers without time conditioning)."""
    return bool(getattr(model, "supports_replace_cache", False))


def supports_prefix_cache(model) -> bool:
    """Whether ``model`` decodes block-wise with an exact prefix KV cache (causal Llama denoisers)."""
    return bool(getattr(model, "supports_prefix_cache", False))


def sigma_for(model, schedule: LogLinearSchedule, t: torch.Tensor) -> torch.Tensor | None:
    """sigma(t) [B] for a time-conditioned ``model``, None for any other."""
    return schedule.sigma(t) if is_time_conditioned(model) else None


def masked_fraction(x: torch.Tensor, gen_mask: torch.Tensor, mask_id: int) -> torch.Tensor:
    """[B] share of the generated region still masked (the diffusion time of a row)."""
    still = ((x == mask_id) & gen_mask).sum(-1).to(torch.float32)
    return (still / gen_mask.sum(-1).clamp(min=1)).clamp(min=1e-5)


def check_kv_cache(model, kv_cache: str | None, kv_refresh: int | None) -> None:
    """One-line errors for ``SamplerConfig.kv_cache`` / ``kv_refresh`` this ``model`` cannot run."""
    if kv_cache is not None:
        if kv_cache not in KV_CACHES:
            raise ValueError(f"sampler.kv_cache={kv_cache!r} is unknown; use one of {', '.join(KV_CACHES)} or null")
        if not supports_replace_cache(model):
            raise ValueError(f"sampler.kv_cache={kv_cache} needs a bidirectional denoiser without time conditioning "
                             "(our DiT or Llama denoisers, MDLM/SDTT weights); a causal one has the exact prefix cache "
                             "(sampler.cache=true): set sampler.kv_cache=null")
    if kv_refresh is not None and (kv_cache is None or kv_refresh < 1):
        raise ValueError(f"sampler.kv_refresh={kv_refresh} needs sampler.kv_cache and a positive count of calls")


class RowReusedLogits:
    """``ancestral_sample``'s logits [B, L, V]: the whole sequence through the network,
    a row's logits reused until the row changes when ``reuse`` (MDLM's no-change cache,
    per row; a time-conditioned model sees t, so it reuses nothing). ``nfe`` and
    ``row_forwards`` count the calls and the rows they ran."""

    def __init__(self, model, attention_mask: torch.Tensor, schedule: LogLinearSchedule, gen_start: int,
                 reuse: bool):
        self.model, self.attention_mask, self.schedule, self.gen_start, self.reuse = (
            model, attention_mask, schedule, gen_start, reuse)
        self.fresh = torch.zeros(attention_mask.shape[0], dtype=torch.bool, device=attention_mask.device)
        self.cached: torch.Tensor | None = None
        self.nfe = self.row_forwards = 0

    def logits(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Logits of ``x`` [B, L] at time ``t``, run for the rows that changed since their last call."""
        batch, length = x.shape
        rows = torch.arange(batch, device=x.device) if not self.reuse else (~self.fresh).nonzero().squeeze(-1)
        if rows.numel() == 0:
            return self.cached
        t_rows = torch.full((rows.numel(),), float(t), device=x.device)
        out, run = denoise_distinct(self.model, x[rows], attention_mask=self.attention_mask[rows],
                                    sigma=sigma_for(self.model, self.schedule, t_rows), gen_start=self.gen_start)
        if self.cached is None:
            self.cached = torch.empty(batch, length, out.shape[-1], dtype=out.dtype, device=x.device)
        self.cached[rows] = out
        self.fresh[rows] = True
        self.nfe += 1
        self.row_forwards += run
        return self.cached

    def changed(self, rows: torch.Tensor) -> None:
        """The rows [B] bool whose tokens changed: their logits are stale."""
        self.fresh &= ~rows


class LogitsSource:
    """The logits of a block's columns; ``nfe`` and ``row_forwards`` count the calls."""

    def __init__(self):
        self.nfe = self.row_forwards = 0

    def start_block(self) -> None:
        """Called when the sampler enters a new block."""

    def logits(self, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """[B, len(cols), V] logits of the block ``cols`` of ``x`` [B, L], at least on its masked cells."""
        raise NotImplementedError

    def propose(self, x: torch.Tensor, cols: torch.Tensor, candidates: torch.Tensor, proposal: Proposal,
                whole_tail: bool) -> None:
        """Draw every cell of ``candidates`` [B, L] bool into ``proposal``. ``whole_tail``:
        some row commits all it has left this step (read by a window)."""
        proposal.draw(candidates, self.logits(x, cols))


class FullForward(LogitsSource):
    """The whole sequence through the network at every step (LLaDA's ``generate``); a
    time-conditioned model is shown sigma(t) with t each row's masked share, a
    noise-conditioned one its ``noise`` [B, L]."""

    def __init__(self, model, attention_mask: torch.Tensor, gen_mask: torch.Tensor, mask_id: int,
                 schedule: LogLinearSchedule, gen_start: int, noise: torch.Tensor | None = None):
        super().__init__()
        self.model, self.attention_mask, self.gen_mask, self.mask_id = model, attention_mask, gen_mask, mask_id
        self.schedule, self.gen_start, self.noise = schedule, gen_start, noise

    def logits(self, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        t_rows = masked_fraction(x, self.gen_mask, self.mask_id)
        out, run = denoise_distinct(self.model, x, attention_mask=self.attention_mask,
                                    sigma=sigma_for(self.model, self.schedule, t_rows), gen_start=self.gen_start,
                                    noise=self.noise)
        self.nfe += 1
        self.row_forwards += run
        return out[:, cols]


class ReplaceCachedLogits(LogitsSource):
    """Fast-dLLM's approximate caches (``kind`` "prefix" | "dual"; bidirectional denoisers
    with ``supports_replace_cache``).

    A block's first call runs the whole sequence and keeps every column's keys and
    values; its later calls run only the block ("dual") or the block and the columns
    after it ("prefix") against the kept keys and values of the others
    (``sdtt_search.model.replace_cache``). Not the same tokens as without it: the columns
    not run keep the keys and values of the block's first step. ``refresh`` = r runs the
    whole sequence again every r-th call of a block (r = 1: every call, the uncached
    tokens); None: only the block's first call (a block never makes ``steps`` + 1 calls).
    """

    def __init__(self, model, attention_mask: torch.Tensor, kind: str, refresh: int | None, steps: int):
        super().__init__()
        self.model, self.attention_mask, self.kind = model, attention_mask, kind
        self.every = refresh or steps + 1
        self.cache = model.new_replace_cache()
        self.block_calls = 0  # the cache is refilled by the block's first call (and every ``every``-th)

    def start_block(self) -> None:
        self.block_calls = 0

    def logits(self, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        block = (int(cols[0]), int(cols[-1]) + 1)  # only the block's logits are read
        if self.block_calls % self.every == 0:
            self.cache.reset()
            out = self.model.forward_replace(x, self.attention_mask, 0, length, self.cache, keep=block)
        else:
            stop = block[1] if self.kind == "dual" else length
            out = self.model.forward_replace(x, self.attention_mask, block[0], stop, self.cache, keep=block)
        self.block_calls += 1
        self.nfe += 1
        self.row_forwards += x.shape[0]
        return out


class PrefixCachedLogits(LogitsSource):
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
        super().__init__()
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

    def logits(self, x: torch.Tensor, cols: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """``__call__``'s logits, counted (a call is skipped when the pending logits cover it)."""
        logits, ran = self(x, cols, window=window)
        self.nfe += int(ran)
        self.row_forwards += self.rows_run
        return logits


class WindowedPrefixLogits(PrefixCachedLogits):
    """The prefix cache run a ``window`` at a time (``SamplerConfig.window``;
    ``remasking="prefix"`` with a ``threshold`` on a causal denoiser).

    A call runs the columns up to ``window`` past the leftmost masked one, then
    ``window`` more for the rows whose run of sure tokens reaches its end, until each row
    meets an unsure token or its last masked one. A step commits no token past the first
    unsure one, and a causal column's logits do not depend on the columns to its right,
    so the tokens are the ones the whole tail gives, from fewer columns run (more,
    smaller calls). A call in which some row takes its last allowed step runs the whole
    tail (that row commits every token left).
    """

    def __init__(self, model, attention_mask: torch.Tensor, columns: torch.Tensor, mask_id: int,
                 window: int, threshold: float, noise: torch.Tensor | None = None):
        super().__init__(model, attention_mask, columns, mask_id, noise=noise)
        self.window, self.threshold = window, threshold

    def propose(self, x: torch.Tensor, cols: torch.Tensor, candidates: torch.Tensor, proposal: Proposal,
                whole_tail: bool) -> None:
        if whole_tail:  # a row's last step needs its whole tail
            return super().propose(x, cols, candidates, proposal, whole_tail)
        block_logits = self.logits(x, cols, window=self.window)
        # run more columns for the rows whose run of sure tokens reaches the last one run
        covered = torch.zeros_like(candidates)
        covered[:, : self.covered + 1] = True
        leftmost = candidates & (candidates.long().cumsum(-1) == 1)  # committed whatever its confidence
        new = candidates & covered
        while True:
            proposal.draw(new, block_logits)
            unsure = candidates & covered & (proposal.probs < self.threshold) & ~leftmost
            need = ~unsure.any(-1) & (candidates & ~covered).any(-1)
            if not bool(need.any()):
                break
            new = self.extend(x, cols, need, block_logits, self.window) & candidates
            covered |= new
            self.nfe += 1
            self.row_forwards += self.rows_run


def make_logits_source(model, *, attention_mask: torch.Tensor, gen_mask: torch.Tensor, columns: torch.Tensor,
                       mask_id: int, schedule: LogLinearSchedule, steps: int, noise: torch.Tensor | None = None,
                       prefix_cache: bool = False, window: int | None = None, threshold: float | None = None,
                       kv_cache: str | None = None, kv_refresh: int | None = None) -> LogitsSource:
    """The source ``confidence_sample``'s options name (``check_kv_cache`` and the window's
    own check come first): the prefix cache (windowed with ``window``), else the replace
    cache with ``kv_cache``, else the full forward. Raises for a batch a cache cannot lay out."""
    source: LogitsSource | None = None
    if prefix_cache and window is not None:
        source = WindowedPrefixLogits(model, attention_mask, columns, mask_id, window, threshold, noise=noise)
    elif prefix_cache:
        source = PrefixCachedLogits(model, attention_mask, columns, mask_id, noise=noise)
    if kv_cache is not None and columns.numel() and int(columns[-1]) - int(columns[0]) + 1 != columns.numel():
        raise ValueError("sampler.kv_cache needs one contiguous generated span (use build_batch)")
    if source is None and kv_cache is not None:
        source = ReplaceCachedLogits(model, attention_mask, kv_cache, kv_refresh, steps)
    return source or FullForward(model, attention_mask, gen_mask, mask_id, schedule, first_generated_column(gen_mask),
                                 noise=noise)
