"""``DiffusionModel``: a masked diffusion checkpoint (our DiT or Llama denoiser) behind the
model interface (``sdtt_search.interface.Model``)."""
from __future__ import annotations

from typing import Sequence

import torch

from .diffusion import generate
from .interface import Completions
from .model.invariant import sampling
from .sampling_config import SamplerConfig, with_overrides


class DiffusionModel:
    """A masked diffusion checkpoint ready to sample.

    Attributes:
        model: the ``Denoiser`` (eval mode); tokenizer; meta: the checkpoint's
        ``meta`` (task, gen_length, sampling_steps, ...); name: how it was loaded.
    """

    kind = "diffusion"

    def __init__(self, model, tokenizer, meta: dict, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = dict(meta)
        self.name = name

    @property
    def gen_length(self) -> int:
        return int(self.meta.get("gen_length", 0) or 0)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """Longest prompt + completion the network was built for (tokens)."""
        return int(self.model.config.max_length)

    def default_sampler(self) -> SamplerConfig:
        """The checkpoint's decoding (meta "sampler": method, block length, ...; ancestral
        when absent) at the step count it was trained or distilled for (meta "sampling_steps")."""
        recorded = dict(self.meta.get("sampler") or {})
        recorded.pop("steps", None)
        recorded["gen_length"] = self.gen_length or recorded.get("gen_length") or None
        recorded.setdefault("method", "ancestral")
        return with_overrides(recorded, {"steps": int(self.meta.get("sampling_steps", 32))}, gen_length=self.gen_length)

    @sampling
    def generate(self, prompts: Sequence[str], sampler: SamplerConfig, *, seeds: Sequence[int],
                 heads=None) -> Completions:
        gen_length = sampler.gen_length or self.gen_length
        if not gen_length:
            raise ValueError(f"model {self.name} has no gen_length in its meta; set sampler.gen_length")
        out = generate(self.model, self.tokenizer, list(prompts), sampler, seeds=list(seeds), gen_length=gen_length,
                       heads=heads)
        eos = self.tokenizer.eos_id
        logprobs = []
        for ids, lps in zip(out.tokens.tolist(), out.token_logprobs.tolist()):
            row = []
            for token, lp in zip(ids, lps):
                row.append(lp)
                if token == eos:
                    break
            logprobs.append(row)
        return Completions(texts=out.texts, logprobs=logprobs, nfe=out.nfe, positions=gen_length)
