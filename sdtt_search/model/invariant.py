"""Batch-invariant numerics: a row's numbers do not depend on the rows computed with it.

A candidate of best-of-N search must be a function of (seed, problem, index) alone,
whatever batch it is drawn in. Seeding each row (``diffusion.rng``) fixes its random
numbers, but not the network's: floating-point addition is not associative, and a
kernel that chooses its reduction strategy from the shape of the call (how many rows,
how many queries, how many keys) gives a row different bits in different batches
(He and Thinking Machines Lab, "Defeating Nondeterminism in LLM Inference", 2025;
vLLM's batch-invariant mode answers it with kernels whose reduction order is fixed).
A last-bit difference in a logit can flip an inverse-CDF draw or a confidence
threshold, and the decode then diverges.

What varies with the batch, measured on CPU (MKL and oneDNN, 1 to 16 threads):

* a GEMM with few rows runs the rows past the last multiple of 4 through another
  micro-kernel: ``F.linear`` on M rows gives rows M - M % 4 .. M - 1 other bits than
  a larger call does (M < 12 on two threads, M < 28 on sixteen);
* SDPA gives a query other bits in batches of other sizes when a call has one to
  three queries (a decoding step), and other bits when the call has another number
  of queries or keys (the prefix cache runs a span [start, stop) chosen by the whole
  batch, and the flash kernel's query and key blocks and its vectorised sums move);
* left padding to the batch's longest prompt shifts a row's keys against the
  kernels' vector lanes;
* an elementwise op (SiLU, tanh-GELU, exp, log, sin, ...) runs its last elements
  through the scalar function, which can round otherwise than the vector one, and
  which elements are last depends on the tensor's size.

The cures, each the cheapest that removes its cause: every linear layer runs whole
tiles of ``ROW_TILE`` rows (``InvariantLinear``: up to ROW_TILE - 1 zero rows, their
outputs dropped); every attention call runs whole tiles of ``QUERY_TILE`` queries
(``invariant_sdpa``); attention over a cached prefix always reads the row's whole
width of keys, the columns from the span's end on masked
(``LlamaBody.forward_cached``); and attention over a left-padded batch runs the rows
of each padding apart with their padding cut off (``unpadded_sdpa``: one network call
still serves the whole batch, only its attention is split; used when sampling, i.e.
without gradients); and inside a model's ``generate`` (``sampling``) every
transcendental elementwise op is padded to whole vectors (``pointwise``). Every kernel then gives a row the same bits whatever the other
rows of its call, and whatever span of columns a cache runs it in. The
guarantee is measured, not derived from the kernels' documentation: it is tested bit
for bit (tests/test_batch_invariance.py) on the machine and software stack that runs
the tests. On a GPU a GEMM may pick another kernel for another row count whole tiles
or not (what vLLM's batch-invariant mode replaces with fixed-strategy kernels), so
there the promise is untested.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

#: the rows of a GEMM run in whole tiles of this many: a multiple of the 4-row
#: micro-kernel measured, with margin (padding a large GEMM costs nothing)
ROW_TILE = 16
#: the queries of an attention call run in whole tiles of this many: the smallest count
#: measured to give every query the same bits (1 to 3 queries do not); a decoding step
#: or a prefix-cache span of one or two columns pads its attention to this
QUERY_TILE = 4


_enabled = True


def active() -> bool:
    """Whether the kernels below run batch-invariant now: when sampling (no gradients) and
    not switched off by ``batch_invariance(False)``. Training (gradients on) runs the plain
    kernels: it samples nothing, and its numerics stay those of ``nn.Linear`` and SDPA."""
    return _enabled and not torch.is_grad_enabled()


@contextlib.contextmanager
def batch_invariance(enabled: bool) -> Iterator[None]:
    """Switch the batch-invariant kernels on or off inside the block (process-wide):
    off, every call is the plain ``F.linear`` / SDPA one (the FLOPs a model needs, and
    ``benchmarks`` measure what invariance costs side by side)."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


#: elements of a pointwise op run in whole chunks of this many per thread: a multiple of
#: ATen's vector loop step (2 vectors: 32 floats with AVX-512), so no element takes the
#: scalar remainder path, whose exp/log/sin/tanh can round differently from the vector one
POINTWISE_TILE = 64


def pointwise(fn: Callable[..., torch.Tensor], x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``fn(x, *args, **kwargs)`` of an elementwise ``fn`` (exp, log, sin, silu, ...) with
    every element of x on ATen's vector path.

    ATen's CPU elementwise loop runs its range two vectors at a time and the remainder
    element by element with the scalar function (a thread's share of a large tensor is
    its own range). Vector and scalar transcendental functions may differ in the last
    bit, and which elements are the remainder depends on the tensor's size, i.e. on the
    batch. Padded with zeros to a whole number of ``POINTWISE_TILE`` elements per thread,
    every range is whole vectors."""
    numel = x.numel()
    tile = POINTWISE_TILE * max(torch.get_num_threads(), 1)
    pad = -numel % tile
    if numel == 0 or (pad == 0 and x.is_contiguous()):
        return fn(x, *args, **kwargs)
    flat = torch.cat([x.reshape(-1), x.new_zeros(pad)])
    return fn(flat, *args, **kwargs)[:numel].view(x.shape)


#: the elementwise functions whose vector and scalar kernels may round differently
#: (arithmetic, sqrt and comparisons are exact in both and need no padding)
_TRANSCENDENTAL = {
    torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log, torch.log1p, torch.Tensor.log1p,
    torch.expm1, torch.Tensor.expm1, torch.sin, torch.Tensor.sin, torch.cos, torch.Tensor.cos,
    torch.tanh, torch.Tensor.tanh, torch.sigmoid, torch.Tensor.sigmoid, F.silu, F.gelu, F.softplus,
    torch.erf, torch.Tensor.erf, torch.pow, torch.Tensor.pow,
}


class PointwiseMode(TorchFunctionMode):
    """Runs every transcendental elementwise function of ``_TRANSCENDENTAL`` through
    ``pointwise`` (a tensor input first, no ``out=``), in the models' code and in
    third-party code alike (a ``transformers`` twin's activations and rotary tables)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _TRANSCENDENTAL and args and isinstance(args[0], torch.Tensor) and "out" not in kwargs \
                and not kwargs.get("inplace", False) and args[0].device.type == "cpu" and active():
            return pointwise(func, *args, **kwargs)
        return func(*args, **kwargs)


def sampling(fn: Callable) -> Callable:
    """Decorator of a ``generate``: inside it transcendental elementwise ops run on whole
    vectors (``PointwiseMode``) whenever the kernels are ``active()``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not _enabled:
            return fn(*args, **kwargs)
        with PointwiseMode():
            return fn(*args, **kwargs)

    return wrapper


def whole_tiles(count: int, tile: int = ROW_TILE) -> int:
    """``count`` rounded up to a multiple of ``tile``."""
    return -(-count // tile) * tile


def invariant_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
                   causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` of q [..., Q, D] over k, v [..., K, D] with its
    queries run in whole tiles of ``QUERY_TILE`` (copies of the last query and of its mask
    row, dropped): with one to three queries (a decoding step) the CPU kernel gives a
    query other bits in batches of other sizes. ``mask``: boolean, broadcastable to
    [..., Q, K] (True = may attend); ``causal``: query i sees keys j <= i (no mask)."""
    queries, keys = q.shape[-2], k.shape[-2]
    pad = whole_tiles(queries, QUERY_TILE) - queries
    if pad == 0 or not active():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale)
    if causal and mask is None:
        mask = torch.ones(queries, keys, dtype=torch.bool, device=q.device).tril()
    q = torch.cat([q, q[..., -1:, :].expand(*q.shape[:-2], pad, q.shape[-1])], dim=-2)
    if mask is not None and mask.shape[-2] != 1:  # a mask shared by the queries needs no rows
        mask = torch.cat([mask, mask[..., -1:, :].expand(*mask.shape[:-2], pad, mask.shape[-1])], dim=-2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)[..., :queries, :]


def left_padding_starts(real: torch.Tensor) -> torch.Tensor | None:
    """[B] the first real column of each row of ``real`` [B, K] (True = a real key), or
    None when no row is padded or a row's padding is not one run on the left."""
    if bool(real[:, 0].all()):
        return None
    first = real.long().argmax(-1)
    cols = torch.arange(real.shape[-1], device=real.device)
    return first if bool((real == (cols[None, :] >= first[:, None])).all()) else None


def unpadded_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  first: torch.Tensor, query_columns: torch.Tensor, *, causal: bool = False,
                  scale: float | None = None) -> torch.Tensor:
    """``invariant_sdpa`` of a left-padded batch, one call per left padding: the rows
    whose keys start at column f (``first`` [B]) run on keys [f, K) and on their
    queries at columns >= f (``query_columns`` [Q], increasing: the key column of each
    query), as the rows alone would; a padding query's output is zero.

    Left padding to the batch's longest prompt would shift a row's keys against the
    kernel's vector lanes and blocks; cut off, a row's attention has the shape of the
    row alone. q [B, H, Q, D]; k, v [B, H, K, D]; ``mask``: boolean [B or 1, 1 or H,
    Q or 1, K] (True = may attend) or None; ``causal``: SDPA's pattern (query i sees key
    j <= i) on the cut rows, for queries that are the keys' columns.
    """
    out = q.new_zeros(*q.shape[:-1], v.shape[-1])
    for rows, f in _padding_groups(first):
        skip = int((query_columns < f).sum())  # padding queries
        sub = None
        if mask is not None:
            sub = mask[rows] if mask.shape[0] > 1 else mask
            sub = sub[..., f:] if sub.shape[-2] == 1 else sub[..., skip:, f:]
        out[rows, :, skip:] = invariant_sdpa(q[rows, :, skip:], k[rows, :, f:], v[rows, :, f:], sub,
                                             causal=causal, scale=scale)
    return out


def _padding_groups(first: torch.Tensor) -> list[tuple[slice | torch.Tensor, int]]:
    """(rows, f) for each left padding f of ``first`` [B]: a slice for each run of adjacent
    rows of one padding (a problem's candidates sit side by side; a slice reads the keys
    and values as views, an index would copy them), else the rows' indices."""
    values = first.tolist()
    runs: list[tuple[int, int]] = []  # [start, stop) of adjacent rows with one padding
    for i, f in enumerate(values):
        if runs and values[runs[-1][0]] == f:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    if len(runs) <= len(set(values)):  # every padding is one run of rows
        return [(slice(a, b), values[a]) for a, b in runs]
    return [((first == f).nonzero().squeeze(-1), f) for f in sorted(set(values))]


def cached_attention(allowed: torch.Tensor | None, real: torch.Tensor | None, query_columns: torch.Tensor):
    """``attend(q, k, v)`` for the queries at ``query_columns`` [Q] of a span over a cache's
    keys: SDPA with boolean ``allowed`` [B, 1, Q or 1, K] (None: every key), its queries in
    whole tiles, and each left padding of ``real`` [B, K] (True = a real key; None: no
    padding) run apart with its padding cut off (``sdtt_search.model.invariant``)."""
    first = None if real is None or not active() else left_padding_starts(real)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if first is None:
            return invariant_sdpa(q, k, v, allowed)
        return unpadded_sdpa(q, k, v, allowed, first, query_columns)

    return attend


def invariant_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` over x [..., K] with every GEMM on whole tiles of
    ``ROW_TILE`` rows: the rows up to the last whole tile in one call, the others in a
    call of one tile (zero rows appended, their outputs dropped). Every row of x then
    goes through the same micro-kernel whatever the number of rows."""
    features, out_features = x.shape[-1], weight.shape[0]
    rows = x.numel() // features if features else 0
    tail = rows % ROW_TILE
    if tail == 0 or not active():
        return F.linear(x, weight, bias)
    flat = x.reshape(rows, features)
    padded = torch.cat([flat[rows - tail:], flat.new_zeros(ROW_TILE - tail, features)])
    out = flat.new_empty(rows, out_features)  # the whole tiles written in place, no copy of x or the output
    if rows > tail:
        main = flat[:rows - tail]
        if bias is None:
            torch.mm(main, weight.t(), out=out[:rows - tail])
        else:
            torch.addmm(bias, main, weight.t(), out=out[:rows - tail])
    out[rows - tail:] = F.linear(padded, weight, bias)[:tail]
    return out.reshape(*x.shape[:-1], out_features)


class InvariantLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) whose rows run in whole
    tiles (``invariant_linear``): a row's output has the same bits in any batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return invariant_linear(x, self.weight, self.bias)


#: modules (by class name) whose forward is elementwise transcendental work: activations
#: (``nn.SiLU``, transformers' ``SiLUActivation``, ...) and rotary tables (cos, sin)
_POINTWISE_MODULES = ("SiLU", "GELU", "Tanh", "Sigmoid", "Activation", "RotaryEmbedding")


def _pointwise_forward(module: nn.Module, *args, **kwargs):
    with PointwiseMode():
        return type(module).__mro__[1].forward(module, *args, **kwargs)


def make_batch_invariant(module: nn.Module) -> nn.Module:
    """Make a third-party network (e.g. a ``transformers`` model) batch-invariant in place:
    every plain ``nn.Linear`` becomes an ``InvariantLinear`` (no parameter is copied or
    renamed), and every activation and rotary-table module runs its elementwise ops on
    whole vectors (``PointwiseMode`` around those few modules only: a mode around the
    whole model costs a Python call per op, which dominates a small model's decode step).
    Returns ``module``."""
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = InvariantLinear
        elif any(key in type(sub).__name__ for key in _POINTWISE_MODULES) and not type(sub).__name__.startswith("Pointwise"):
            cls = type(sub)
            sub.__class__ = type(f"Pointwise{cls.__name__}", (cls,), {"forward": _pointwise_forward})
    return module
