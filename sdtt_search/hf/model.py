"""``HFDiffusionModel``: a Hugging Face diffusion LM as the search engine sees it."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..diffusion import generate
from ..diffusion_model import DiffusionModel
from ..interface import Completions
from ..sampling_config import SamplerConfig
from .defaults import default_sampler, fast_dllm
from .prompting import PromptFormat
from ..model.invariant import sampling


class HFDiffusionModel(DiffusionModel):
    """An adapter (``input_ids -> logits``), its tokenizer and prompt format.

    Attributes:
        model: the adapter (``sdtt_search.hf.adapters``), or None for a model only
            described (``device="meta"``: what a Ray driver needs, weights stay on the workers).
        tokenizer: ``HFTokenizer``; family: llada | dream | mdlm | sdtt;
        prompt_format: chat template / answer instruction applied in ``generate``;
        meta: family, source, revision, dtype, parameters, gen_length, sampling_steps, ...
    """

    kind = "diffusion"

    def __init__(self, model, tokenizer, meta: dict, name: str, *, family: str, prompt_format: PromptFormat):
        self.model = model.eval() if model is not None else None
        self.tokenizer = tokenizer
        self.meta = dict(meta)
        self.name = name
        self.family = family
        self.prompt_format = prompt_format

    @property
    def device(self) -> torch.device:
        if self.model is None:
            return torch.device("meta")
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int | None:
        """Longest prompt + completion in tokens where the adapter's config says (None: unknown,
        and for a model only described)."""
        length = getattr(getattr(self.model, "config", None), "max_length", None)
        return None if length is None else int(length)

    def default_sampler(self, *, threshold: float | None = None, kv_cache: str | None = None) -> SamplerConfig:
        """The authors' sampler for this family; ``threshold`` (e.g. 0.9) adds Fast-dLLM threshold
        decoding, ``kv_cache`` ("dual" | "prefix") its block-wise cache (``fast_dllm``)."""
        sampler = default_sampler(self.family, revision=self.meta.get("revision"), gen_length=self.gen_length or 256)
        if self.meta.get("distilled_steps"):  # a LoRA SDTT student samples at the steps it was distilled for
            sampler = dataclasses.replace(sampler, steps=int(self.meta["distilled_steps"]))
        if threshold is None and kv_cache is None:
            return sampler
        return fast_dllm(sampler, threshold, kv_cache)

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """The formatted prompts' ids (chat template, answer instruction), as ``generate`` conditions on:
        ``infill`` and ``predict`` (repair, particle and order search) then see what ``generate`` sees."""
        tokenizer = self.tokenizer.for_chat() if self.prompt_format.chat else self.tokenizer
        return [tokenizer.encode(self.format_prompt(p)) for p in prompts]

    def format_prompt(self, prompt: str) -> str:
        """The text the model is conditioned on for a task prompt (chat template, answer instruction)."""
        return self.prompt_format.render(prompt, self.tokenizer)

    @sampling
    def generate(self, prompts: Sequence[str], sampler: SamplerConfig, *, seeds: Sequence[int],
                 heads=None, trace: bool = False) -> Completions:
        """One completion per prompt; texts and log-probs stop at the first end-of-answer token.

        Prompts are formatted (``format_prompt``), left-padded and sampled together;
        a row's completion is the one it gets alone (per-row seeds; no padding reaches the network).
        Token ids and per-position log-probs come back too (repair); ``trace``: each step's
        prediction of the clean completion (temporal voting).
        """
        if self.model is None:
            raise RuntimeError(f"{self.name} was only described (device=meta), not loaded; load it with device=cuda or cpu")
        gen_length = sampler.gen_length or self.gen_length
        tokenizer = self.tokenizer.for_chat() if self.prompt_format.chat else self.tokenizer
        texts = [self.format_prompt(p) for p in prompts]
        out = generate(self.model, tokenizer, texts, sampler, seeds=list(seeds), gen_length=gen_length,
                       heads=heads, trace=trace)
        tokens, token_logprobs = out.tokens.tolist(), out.token_logprobs.tolist()
        return Completions(texts=out.texts, logprobs=[self._up_to_eos(t, lp) for t, lp in zip(tokens, token_logprobs)],
                           nfe=out.nfe, positions=gen_length, tokens=tokens, token_logprobs=token_logprobs,
                           trails=out.trails)
