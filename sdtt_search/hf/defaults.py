"""Each family's sampler as its authors run it.

* LLaDA-Instruct: low-confidence remasking, semi-autoregressive blocks of 32,
  gen_length 256, steps = gen_length (one token per step), greedy tokens
  (ML-GSAI/LLaDA ``generate.py``; Fast-dLLM's GSM8K baseline). ``fast_dllm``
  switches on Fast-dLLM's threshold decoding (tau = 0.9).
* Dream: confidence decoding over the whole answer (one block), steps =
  max_new_tokens, temperature 0 (Dream's GSM8K eval script). Dream's
  ``maskgit_plus`` is top-1 confidence, i.e. ``remasking="low_confidence"``;
  its ``entropy`` / ``topk_margin`` orders are ``remasking="entropy"`` / ``"margin"``.
* MDLM: ancestral sampling with 1000 steps (MDLM README); SDTT students: the
  ancestral sampler at their distilled step count, 1024 / 2^round (revision
  ``..._step_{round * 10000}``), 16 if the round is unknown.
"""
from __future__ import annotations

import dataclasses
import re

from ..sampling_config import SamplerConfig

GEN_LENGTH = 256
LLADA_BLOCK = 32
FAST_DLLM_THRESHOLD = 0.9
MDLM_STEPS = 1000
SDTT_STEPS = 16


def sdtt_steps(revision: str | None) -> int:
    """Step count an SDTT revision was distilled for: 1024 / 2^round, from ``..._step_{round*10000}``."""
    match = re.search(r"step_(\d+)$", revision or "")
    if match and int(match.group(1)) % 10000 == 0 and 1 <= int(match.group(1)) // 10000 <= 10:
        return 1024 >> (int(match.group(1)) // 10000)
    return SDTT_STEPS


def default_sampler(family: str, *, revision: str | None = None, gen_length: int = GEN_LENGTH) -> SamplerConfig:
    """The authors' sampler for ``family`` (see the module docstring)."""
    if family == "llada":
        return SamplerConfig(method="confidence", steps=gen_length, gen_length=gen_length, block_length=LLADA_BLOCK,
                             temperature=0.0, remasking="low_confidence")
    if family == "dream":
        return SamplerConfig(method="confidence", steps=gen_length, gen_length=gen_length, block_length=None,
                             temperature=0.0, remasking="low_confidence")
    if family == "mdlm":
        return SamplerConfig(method="ancestral", steps=MDLM_STEPS, gen_length=gen_length, temperature=1.0)
    if family == "sdtt":
        return SamplerConfig(method="ancestral", steps=sdtt_steps(revision), gen_length=gen_length, temperature=1.0)
    raise ValueError(f"family={family!r} is unknown; use llada, dream, mdlm or sdtt")


def fast_dllm(sampler: SamplerConfig, threshold: float | None = FAST_DLLM_THRESHOLD,
              kv_cache: str | None = None) -> SamplerConfig:
    """``sampler`` with Fast-dLLM's confidence-threshold parallel decoding (every token with
    confidence >= ``threshold`` is committed, at least one per step; None keeps the fixed
    number per step) and, with ``kv_cache`` ("dual" | "prefix"), its block-wise cache, in
    blocks of 32 (Fast-dLLM's cache block) where the sampler had one block."""
    changes: dict = {"method": "confidence", "threshold": threshold}
    if kv_cache is not None:
        changes["kv_cache"] = kv_cache
        if not sampler.block_length:
            changes["block_length"] = LLADA_BLOCK
    return dataclasses.replace(sampler, **changes)
