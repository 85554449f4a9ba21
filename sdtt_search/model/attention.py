"""Attention backends: xformers' memory-efficient kernel on CUDA, PyTorch SDPA elsewhere."""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from .invariant import active, invariant_sdpa, left_padding_starts, unpadded_sdpa

log = logging.getLogger("sdtt_search.model")


@functools.lru_cache(maxsize=None)
def xformers_available() -> bool:
    """Whether xformers' attention kernel is usable here (checked once).

    ``xformers.ops`` must import and, where a CUDA device is present, run one tiny call:
    a wheel built for another torch or CUDA version imports fine but has no kernels
    (seen on an H200 with torch 2.11 and xformers 0.0.35, built for torch 2.10).
    """
    try:
        import xformers.ops as xops
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return _kernel_runs(xops, "cuda") if torch.cuda.is_available() else True


def _kernel_runs(xops, device: str) -> bool:
    """One memory-efficient attention call on ``device``; False (and a warning) if it fails."""
    try:
        q = torch.randn(1, 8, 1, 32, device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
        xops.memory_efficient_attention(q, q, q)
    except Exception as exc:  # noqa: BLE001 - NotImplementedError, RuntimeError, missing symbols...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("xformers is installed but its attention kernel does not run here (%s): using SDPA; install "
                    "an xformers wheel built for torch %s", first_line, torch.__version__)
        return False
    return True


@functools.lru_cache(maxsize=None)
def _log_choice(backend: str, device: str) -> None:
    log.info("attention backend: %s (device %s)", backend, device)


def select_backend(requested: str, device: torch.device | str) -> str:
    """The attention implementation to use: "xformers" or "sdpa".

    "auto" gives xformers on a CUDA device when its kernel runs there, else PyTorch
    SDPA. An explicit "xformers" that cannot work is a one-line RuntimeError. The
    choice is logged once (logger "sdtt_search.model").
    """
    device = torch.device(device)
    if requested == "auto":
        backend = "xformers" if device.type == "cuda" and xformers_available() else "sdpa"
    elif requested == "xformers":
        if device.type != "cuda" or not xformers_available():
            why = (f"the device is {device.type}, not cuda" if device.type != "cuda"
                   else "xformers is not installed, or its kernels do not run with this torch")
            raise RuntimeError(
                f"attention_backend=xformers needs a CUDA device and `pip install 'sdtt-search[gpu]'` ({why}); "
                "use attention_backend=sdpa or auto"
            )
        backend = "xformers"
    elif requested == "sdpa":
        backend = "sdpa"
    else:
        raise ValueError(f"attention_backend={requested!r} is unknown; use auto, sdpa or xformers")
    _log_choice(backend, str(device))
    return backend


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA of q [B, Q, H, D] over keys and values [B, K, Hkv, D] (grouped heads: each
    serves H // Hkv queries) with a boolean ``mask`` broadcastable to [B, H, Q, K] (True =
    may attend; None: all) -> [B, Q, H, D]."""
    if k.shape[2] != q.shape[2]:
        k, v = (t.repeat_interleave(q.shape[2] // k.shape[2], dim=2) for t in (k, v))
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask).transpose(1, 2)


def padding_layout(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Positions [B, L] counted from each row's first real token, and the key padding
    mask ([B, L] bool, True = real) or None when nothing is padded.

    Counting from the first real token makes a left-padded row's output equal to the
    row alone (what ``transformers`` generate and vLLM do too).
    """
    batch, length = input_ids.shape
    if attention_mask is None:
        return torch.arange(length, device=input_ids.device).expand(batch, length), None
    attention_mask = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return positions, None if bool(attention_mask.all()) else attention_mask


def block_causal_mask(length: int, gen_start: int, block: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[L, L] bool, True = query i may attend to key j: causal attention, plus every
    column of the generated region [gen_start, L) seeing its whole block of ``block``
    columns (counted from gen_start). Block diffusion's attention (BD3-LM, Arriola et
    al. 2025): a block's keys and values depend on earlier columns and itself only, so
    a finished block can be cached exactly, while the columns decoded together in one
    step see each other.
    """
    if block < 1:
        raise ValueError(f"attention block must be >= 1, got {block}")
    cols = torch.arange(length, device=device)
    group = torch.where(cols >= gen_start, (cols - gen_start) // block, -1 - cols)  # prompt: one group per column
    return (cols[None, :] <= cols[:, None]) | ((group[None, :] == group[:, None]) & (cols[:, None] >= gen_start))


def _boolean_mask(key_padding_mask: torch.Tensor | None, causal: bool, length: int, device: torch.device,
                  allowed: torch.Tensor | None = None) -> torch.Tensor:
    """[B or 1, 1, L, L] bool, True = query i may attend to key j (``allowed`` [L, L],
    when given, replaces the causal / full pattern).

    Keys that are padding are excluded. A padded query could then have no key at all
    (causal + left padding), and softmax over an empty row is NaN; so every query
    may always attend to itself. Pad queries' outputs are garbage but finite, and
    real queries never see them.
    """
    if allowed is not None:
        allowed = allowed[None, None]
    else:
        allowed = torch.ones(1, 1, length, length, dtype=torch.bool, device=device)
        if causal:
            allowed = allowed.tril()
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :].bool()
    return allowed | torch.eye(length, dtype=torch.bool, device=device)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None,
    causal: bool,
    backend: str,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head scaled dot-product attention (scale 1/sqrt(D), no dropout).

    Args:
        q, k, v: [B, L, H, D].
        key_padding_mask: [B, L] bool, True = real token; None = no padding. Padding
            is never attended to (a padded query attends to itself only, to stay finite).
        causal: query i sees keys j <= i only.
        allowed: [L, L] bool pattern (e.g. ``block_causal_mask``) replacing ``causal``.
        backend: "sdpa" or "xformers" (see ``select_backend``).
    Returns:
        [B, L, H, D] in q's dtype.
    """
    if backend == "xformers":
        return _xformers_attention(q, k, v, key_padding_mask, causal, allowed)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants [B, H, L, D]
    # a row's bits do not depend on its batch (sdtt_search.model.invariant): queries in whole
    # tiles and each left padding run apart with its padding cut off, when sampling (training,
    # with gradients, keeps the plain kernels: it samples nothing; invariant.active)
    first = None if key_padding_mask is None or not active() else left_padding_starts(key_padding_mask)
    if first is not None:
        columns = torch.arange(q.shape[2], device=q.device)
        out = unpadded_sdpa(q, k, v, None if allowed is None else allowed[None, None], first, columns,
                            causal=causal and allowed is None)
    elif key_padding_mask is None and allowed is None:
        out = invariant_sdpa(q, k, v, causal=causal)
    else:
        out = invariant_sdpa(q, k, v, _boolean_mask(key_padding_mask, causal, q.shape[2], q.device, allowed))
    return out.transpose(1, 2)


def _xformers_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None, causal: bool,
    pattern: torch.Tensor | None = None,
) -> torch.Tensor:
    """xformers' memory-efficient kernel; takes [B, L, H, D] natively."""
    import xformers.ops as xops

    if key_padding_mask is None and pattern is None:
        bias = xops.LowerTriangularMask() if causal else None
        return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
    batch, length, heads, _ = q.shape
    allowed = _boolean_mask(key_padding_mask, causal, length, q.device, pattern)  # [B or 1, 1, L, L]
    # An additive bias [B, H, L, L] in q's dtype. xformers needs the last dim's storage
    # aligned to 8 elements: allocate [.., L, ceil8(L)] and slice a view of width L.
    padded = (length + 7) // 8 * 8
    bias = torch.zeros(batch, heads, length, padded, dtype=q.dtype, device=q.device)[..., :length]
    bias.masked_fill_(~allowed.expand(batch, heads, length, length), float("-inf"))
    return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
