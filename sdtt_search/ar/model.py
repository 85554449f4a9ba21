"""``ARModel``: an autoregressive checkpoint behind the model interface (``sdtt_search.interface.Model``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from ..interface import Completions
from ..sampling_config import SamplerConfig
from .backends import TransformersBackend, VLLMBackend, resolve_backend
from .checkpoint import load_ar_tokenizer, read_sidecar


class ARModel:
    """An AR twin ready to sample with a KV cache.

    Attributes:
        backend: the engine (``.name`` is "vllm" or "transformers"); tokenizer; meta
        (task, gen_length, training record); name: how it was loaded;
        num_parameters: parameter count (from the checkpoint's shapes).
    """

    kind = "ar"

    def __init__(self, backend, tokenizer, meta: dict, name: str, num_parameters: int | None = None,
                 context_length: int | None = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.meta = dict(meta)
        self.name = name
        self.num_parameters = num_parameters
        #: longest prompt + completion the network was built for (tokens); None: unknown
        self.context_length = context_length

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def gen_length(self) -> int:
        return int(self.meta.get("gen_length", 0) or 0)

    @property
    def nfe(self) -> int:
        """Decoding steps run so far (one forward of the batch per generated token)."""
        return self.backend.nfe

    def default_sampler(self) -> SamplerConfig:
        """Left-to-right sampling at temperature 1 (steps = one per generated token)."""
        return SamplerConfig(method="autoregressive", steps=max(self.gen_length, 1), temperature=1.0,
                             gen_length=self.gen_length or None)

    def generate(self, prompts: Sequence[str], sampler: SamplerConfig, *, seeds: Sequence[int],
                 heads=None) -> Completions:
        if sampler.method != "autoregressive":
            raise ValueError(f"model {self.name} is autoregressive: use sampler.method=autoregressive "
                             f"(got {sampler.method!r}, a diffusion sampler)")
        max_tokens = sampler.gen_length or self.gen_length
        if not max_tokens:
            raise ValueError(f"model {self.name} has no gen_length in its meta; set sampler.gen_length")
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; pass one seed per prompt")
        ids = [self.tokenizer.encode(p) for p in prompts]
        before = self.backend.nfe
        samples = self.backend.generate(ids, seeds=list(seeds), max_tokens=max_tokens,
                                        temperature=float(sampler.temperature), top_p=float(sampler.top_p),
                                        head_tokens=sampler.head_tokens, head_temperature=sampler.head_temperature,
                                        heads=heads)
        texts = [self.tokenizer.decode(s.token_ids) for s in samples]
        generated = sum(len(s.token_ids) for s in samples) / max(len(samples), 1)
        return Completions(texts=texts, logprobs=[s.logprobs for s in samples], nfe=self.backend.nfe - before,
                           positions=int(round(generated)))


    def extend(self, prompts: Sequence[str], prefixes: Sequence[Sequence[int]], sampler: SamplerConfig, *,
               seeds: Sequence[int], max_tokens: int) -> Completions:
        """Continue each row's completion by at most ``max_tokens`` tokens: row i is
        ``prompts[i]`` followed by the ids ``prefixes[i]`` it has generated so far (the
        whole of it runs through the network again). Returns the new ids (``tokens``, EOS
        included if drawn), their log-probs (``token_logprobs``), the texts of prefix + new
        ids and the decoding steps (particle search over prefixes,
        ``sdtt_search.search.particles.draw_prefixes``)."""
        if len(seeds) != len(prompts) or len(prefixes) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts, {len(prefixes)} prefixes and {len(seeds)} seeds; "
                             "pass one of each per row")
        ids = [self.tokenizer.encode(p) + list(prefix) for p, prefix in zip(prompts, prefixes)]
        before = self.backend.nfe
        samples = self.backend.generate(ids, seeds=list(seeds), max_tokens=max_tokens,
                                        temperature=float(sampler.temperature), top_p=float(sampler.top_p))
        return Completions(texts=[self.tokenizer.decode(list(prefix) + s.token_ids) for prefix, s in zip(prefixes, samples)],
                           logprobs=[s.logprobs for s in samples], nfe=self.backend.nfe - before,
                           positions=max((len(s.token_ids) for s in samples), default=0),
                           tokens=[s.token_ids for s in samples], token_logprobs=[s.logprobs for s in samples])


def _count_parameters(directory: Path) -> int | None:
    try:
        from safetensors import safe_open

        with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # noqa: BLE001 - a count is informative only
        return None


def load_ar_model(directory: str | Path, *, name: str, device: torch.device, backend: str = "auto",
                  **engine_kwargs) -> ARModel:
    """An ``ARModel`` over an AR checkpoint directory with the chosen engine."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    tokenizer = load_ar_tokenizer(directory)
    chosen = resolve_backend(backend)
    max_len = int((sidecar.get("model") or {}).get("max_length", 2048))
    if chosen == "vllm":
        engine = VLLMBackend(directory, eos_id=tokenizer.eos_id, device=device, max_model_len=max_len, **engine_kwargs)
    else:
        engine = TransformersBackend.from_directory(directory, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id,
                                                    device=device)
    return ARModel(engine, tokenizer, dict(sidecar.get("meta") or {}), name=name,
                   num_parameters=_count_parameters(directory), context_length=max_len)
