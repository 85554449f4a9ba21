"""User-facing sampler settings (kept as plain as vLLM's ``SamplingParams``).

``SamplerConfig`` says how any model of the library decodes: the masked diffusion
samplers (``sdtt_search.diffusion``), the AR twins (``sdtt_search.ar``) and the search
engine read it, so it lives beside them rather than in the diffusion package (which
re-exports it: ``from sdtt_search.diffusion import SamplerConfig`` still works).
It is plain data: no torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .dataclass_dict import dataclass_from_dict

METHODS = ("ancestral", "confidence", "autoregressive")
DIFFUSION_METHODS = ("ancestral", "confidence")
REMASKING = ("low_confidence", "random", "left_to_right", "prefix", "margin", "entropy")
KV_CACHES = ("prefix", "dual")


@dataclass
class SamplerConfig:
    """How to turn masks into tokens.

    Attributes:
        method: "ancestral" (MDLM ancestral sampler; what SDTT students are
            distilled for) or "confidence" (LLaDA low-confidence remasking / Fast-dLLM
            threshold decoding) for diffusion models; "autoregressive" (left to right
            with a KV cache) for AR models, the only method they accept.
        steps: number of denoising steps (network calls, at most steps + 1); with
            ``threshold`` a budget of steps shared by the blocks (a block's last
            allowed step commits every token left).
        temperature: softmax temperature of the token draws; 0 means greedy tokens.
        gen_length: completion length in tokens (None: the caller's default).
        block_length: semi-autoregressive block size for "confidence" (None: one block).
        threshold: Fast-dLLM tau: commit every token whose confidence is >= tau (at
            least one per step, at most ``steps`` steps); None commits a fixed number
            of tokens per step.
        remasking: which tokens a step commits first: "low_confidence" (the most
            confident), "random", or "left_to_right" (the leftmost: the order a
            block-wise SDTT student was distilled in; with ``threshold``, the leftmost
            masked token plus every other token whose confidence is >= tau), or "prefix"
            (left to right; with ``threshold`` only the unbroken run of tokens >= tau
            that follows the leftmost masked one: a causal model's column cannot see a
            token committed to its right, so nothing is committed past an unsure one), or
            Dream's orders: "margin" (top-1 minus top-2 probability, ``topk_margin``) and
            "entropy" (the lowest entropy first), of the distribution each token is drawn
            from; the threshold still compares the confidence.
        cache: ancestral: reuse the network output for rows that did not change
            (ignored for time-conditioned models); confidence: keep the keys and values
            of the decoded prefix of a causal denoiser (exact: same tokens, fewer FLOPs).
        eps: smallest diffusion time of the ancestral grid linspace(1, eps, steps + 1).
        top_p: nucleus sampling mass for "autoregressive" (1.0 = off).
        head_tokens: how many of the first generated tokens (positions, counted from
            the start of the completion) are drawn at ``head_temperature`` instead of
            ``temperature``; 0 = off. Search draws many candidates of one problem and
            they branch at their first step: a hotter head spreads the candidates over
            more first steps while the rest of each keeps the model's own temperature.
            Every method applies it (diffusion by position, whatever the order the
            columns are committed in; AR by step).
        head_temperature: the temperature of those tokens (0 = greedy); required when
            ``head_tokens`` > 0.
        window: "confidence" with ``remasking="prefix"``, a threshold and the prefix cache
            of a causal denoiser: each call runs the columns up to ``window`` past the
            leftmost masked one, and ``window`` more only for the rows whose run of sure
            tokens reaches that far. The same tokens as running every masked column, from
            fewer columns run, in more (smaller) calls: fewer FLOPs where compute binds
            (a CPU, large batches), more latency where calls do. None = every column.
        stratify: how many of the first generated tokens are drawn at stratified
            uniforms shared out among a problem's candidates (candidate i takes point i
            of a randomised Halton sequence, ``rng.stratified_uniforms``) instead of
            independent ones; 0 = off. Each candidate alone keeps the model's
            distribution (same pass@1 in expectation); together a problem's candidates
            spread over the model's first choices in proportion to their probability,
            with fewer repeats than independent draws (arithmetic sampling, Vilnis et
            al. 2023, on the first tokens). ``Search`` passes the points; every
            diffusion method and both AR backends draw at them (vLLM: one engine pass
            per stratified token, the whole next-token distribution returned).
        kv_cache: "confidence" on a bidirectional denoiser: Fast-dLLM's approximate
            key/value cache. "dual": a block's first step runs the whole sequence, its
            later steps only the block, reusing the keys and values of the columns
            before and after it; "prefix": the later steps run the block and every
            column after it, reusing the prefix's. Fewer FLOPs per step, not the same
            tokens (use it with ``block_length``: the cache is refreshed per block).
            None = off. Causal denoisers have the exact prefix cache (``cache``).
        kv_refresh: with ``kv_cache``, run the whole sequence again (refilling the cache)
            every ``kv_refresh`` steps of a block, not only at its first (None: Fast-dLLM's
            once per block; 1: every step, i.e. no saving and the uncached tokens).
            Between the two, fewer steps read stale keys for more calls of full length.
    """

    method: str = "ancestral"
    steps: int = 32
    temperature: float = 1.0
    gen_length: int | None = None
    block_length: int | None = None
    threshold: float | None = None
    remasking: str = "low_confidence"
    cache: bool = True
    eps: float = 1e-5
    top_p: float = 1.0
    head_tokens: int = 0
    head_temperature: float | None = None
    window: int | None = None
    stratify: int = 0
    kv_cache: str | None = None
    kv_refresh: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the bad field and what is allowed."""
        if self.method not in METHODS:
            raise ValueError(f"sampler.method={self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"sampler.steps={self.steps!r} must be a positive integer")
        if (isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float))
                or not math.isfinite(self.temperature) or self.temperature < 0):
            raise ValueError(f"sampler.temperature={self.temperature!r} must be a finite number >= 0 (0 = greedy)")
        if self.gen_length is not None and self.gen_length < 1:
            raise ValueError(f"sampler.gen_length={self.gen_length!r} must be a positive integer or null")
        if self.block_length is not None and self.block_length < 1:
            raise ValueError(f"sampler.block_length={self.block_length!r} must be a positive integer or null")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"sampler.threshold={self.threshold!r} must be in (0, 1] or null")
        if self.remasking not in REMASKING:
            raise ValueError(f"sampler.remasking={self.remasking!r} is unknown; use one of {', '.join(REMASKING)}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"sampler.eps={self.eps!r} must be in (0, 1)")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampler.top_p={self.top_p!r} must be in (0, 1]")
        if isinstance(self.head_tokens, bool) or not isinstance(self.head_tokens, int) or self.head_tokens < 0:
            raise ValueError(f"sampler.head_tokens={self.head_tokens!r} must be a non-negative integer (0 = off)")
        if self.head_temperature is not None and (isinstance(self.head_temperature, bool)
                                                  or not isinstance(self.head_temperature, (int, float))
                                                  or not math.isfinite(self.head_temperature)
                                                  or self.head_temperature < 0):
            raise ValueError(f"sampler.head_temperature={self.head_temperature!r} must be a finite number >= 0 "
                             "(0 = greedy) or null")
        if self.head_tokens and self.head_temperature is None:
            raise ValueError(f"sampler.head_tokens={self.head_tokens} needs sampler.head_temperature (the temperature "
                             "of those tokens)")
        if self.window is not None:
            if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
                raise ValueError(f"sampler.window={self.window!r} must be a positive integer or null")
            if self.method != "confidence" or self.remasking != "prefix" or self.threshold is None:
                raise ValueError(f"sampler.window={self.window} applies to method=confidence with remasking=prefix "
                                 "and a threshold; set those or sampler.window=null")
        if isinstance(self.stratify, bool) or not isinstance(self.stratify, int) or not 0 <= self.stratify <= 12:
            raise ValueError(f"sampler.stratify={self.stratify!r} must be an integer from 0 (off) to 12 (stratified "
                             "first tokens)")
        if self.kv_cache is not None:
            if self.kv_cache not in KV_CACHES:
                raise ValueError(f"sampler.kv_cache={self.kv_cache!r} is unknown; use one of {', '.join(KV_CACHES)} "
                                 "or null")
            if self.method != "confidence":
                raise ValueError(f"sampler.kv_cache={self.kv_cache} applies to method=confidence (block-wise "
                                 "decoding); set sampler.method=confidence or sampler.kv_cache=null")
        if self.kv_refresh is not None:
            if isinstance(self.kv_refresh, bool) or not isinstance(self.kv_refresh, int) or self.kv_refresh < 1:
                raise ValueError(f"sampler.kv_refresh={self.kv_refresh!r} must be a positive integer or null")
            if self.kv_cache is None:
                raise ValueError(f"sampler.kv_refresh={self.kv_refresh} refreshes the approximate cache; set "
                                 "sampler.kv_cache=dual|prefix or sampler.kv_refresh=null")
        if self.head_temperature is not None and not self.head_tokens:
            raise ValueError(f"sampler.head_temperature={self.head_temperature} does nothing with head_tokens=0; set "
                             "sampler.head_tokens (how many first tokens it applies to)")

    def temperature_at(self, position: int) -> float:
        """The draw temperature of the generated token at ``position`` (0 = the first)."""
        if self.head_tokens and position < self.head_tokens:
            return float(self.head_temperature)
        return float(self.temperature)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; ``stratify``, ``kv_cache`` and ``kv_refresh`` only
        when set, so the saved configs of runs made before they existed still match (and resume)."""
        values = asdict(self)
        if not values["stratify"]:
            del values["stratify"]
        for key in ("kv_cache", "kv_refresh"):
            if values[key] is None:
                del values[key]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SamplerConfig":
        """Inverse of ``to_dict``; an unknown key or a bad value is a one-line ``ValueError``."""
        return dataclass_from_dict(cls, values, label="sampler option")

    def replace(self, **changes: Any) -> "SamplerConfig":
        """A copy with ``changes`` applied and checked (``dataclasses.replace`` with this
        class's one-line errors, an unknown field name included)::

            sampler = model.default_sampler().replace(temperature=1.0, stratify=3)
        """
        return self.from_dict({**asdict(self), **changes})


def with_overrides(base: SamplerConfig | Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *,
                   gen_length: int | None = None) -> SamplerConfig:
    """The decoding a model runs: ``base`` (its recorded or default decoding, a sampler or
    its fields) with every non-null value of ``overrides``; then, unless ``overrides`` set
    ``block_length``, blocks widened so that the steps cover them (``fit_blocks``) over the
    sampler's ``gen_length``, else ``gen_length`` (the model's).

    The one rule of a checkpoint's default sampler, the command line's ``sampler.*`` and
    lm-eval's ``model_args``: a block-wise model asked for fewer steps than it has blocks
    decodes wider blocks, one step each, as its distilled students do; an explicit block
    length is kept as given. A bad key or value is a one-line ``ValueError``.
    """
    values = base.to_dict() if isinstance(base, SamplerConfig) else dict(base)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    sampler = SamplerConfig.from_dict({**values, **given})
    length = sampler.gen_length or gen_length
    if "block_length" not in given and length:
        sampler = fit_blocks(sampler, int(length))
    return sampler


def fit_blocks(sampler: SamplerConfig, gen_length: int) -> SamplerConfig:
    """``sampler`` with its semi-autoregressive blocks widened so that ``steps`` covers
    them: a block needs at least one step, so with fewer steps than blocks the block
    length becomes ceil(gen_length / steps) (one step per block). A few-step student
    of a block-wise teacher decodes this way. Unchanged without blocks."""
    if sampler.method != "confidence" or not sampler.block_length:
        return sampler
    if sampler.steps * sampler.block_length >= gen_length:
        return sampler
    return sampler.replace(block_length=-(-gen_length // sampler.steps))
