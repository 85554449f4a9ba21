"""``DiffusionModel``: a masked diffusion checkpoint (our DiT or Llama denoiser) behind the
model interface (``sdtt_search.interface.Model``)."""
from __future__ import annotations

from typing import Sequence

import torch

from .diffusion import build_batch, generate, sample
from .diffusion.blocks import denoise_distinct, first_generated_column
from .diffusion.draws import token_probs
from .diffusion.logits_sources import masked_fraction, sigma_for
from .diffusion.schedule import LogLinearSchedule
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
                 heads=None, trace: bool = False) -> Completions:
        gen_length = sampler.gen_length or self.gen_length
        if not gen_length:
            raise ValueError(f"model {self.name} has no gen_length in its meta; set sampler.gen_length")
        out = generate(self.model, self.tokenizer, list(prompts), sampler, seeds=list(seeds), gen_length=gen_length,
                       heads=heads, trace=trace)
        tokens, token_logprobs = out.tokens.tolist(), out.token_logprobs.tolist()
        return Completions(texts=out.texts, logprobs=[self._up_to_eos(t, lp) for t, lp in zip(tokens, token_logprobs)],
                           nfe=out.nfe, positions=gen_length, tokens=tokens, token_logprobs=token_logprobs,
                           trails=out.trails)

    def _up_to_eos(self, ids: Sequence[int], logprobs: Sequence[float]) -> list[float]:
        """A row's log-probs up to and including its first EOS or other stop id (all of them without one)."""
        stops = getattr(self.tokenizer, "stop_ids", None) or {self.tokenizer.eos_id}
        row = []
        for token, lp in zip(ids, logprobs):
            row.append(lp)
            if token in stops:
                break
        return row

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """The token ids the network is conditioned on for each task prompt (``infill``, ``predict``)."""
        return [self.tokenizer.encode(p) for p in prompts]

    def _given_rows(self, prompts: Sequence[str], tokens: Sequence[Sequence[int | None]], gen_length: int):
        """(the batch of the formatted prompts, its x [B, L] with each row's ``tokens`` in the
        generated region, MASK where None): what ``infill`` and ``predict`` start from."""
        mask_id = self.tokenizer.mask_id
        batch = build_batch(self._encode_prompts(prompts), gen_length, pad_id=self.tokenizer.pad_id,
                            mask_id=mask_id, device=self.device)
        x = batch.x.clone()
        x[:, -gen_length:] = torch.tensor([[mask_id if t is None else int(t) for t in row] for row in tokens],
                                          dtype=torch.long, device=x.device)
        return batch, x

    @sampling
    def infill(self, prompts: Sequence[str], tokens: Sequence[Sequence[int | None]], sampler: SamplerConfig, *,
               seeds: Sequence[int], stop_after: int | None = None) -> Completions:
        """Re-denoise part of each row's completion: ``tokens[i]`` holds row i's generated
        token ids (``gen_length`` of them) with None at the positions to draw again; the
        sampler fills only those, conditioned on the prompt and every other token (which
        stay as given). Row i's draws come from ``seeds[i]`` alone. Returns the new rows:
        ``tokens``, ``token_logprobs`` (0.0 at the given positions), texts and log-probs up
        to EOS as ``generate`` does, and the network calls. ``stop_after``: return after that
        many sampler steps, positions not drawn yet still the mask id in ``tokens`` (a
        stage of particle search, ``sdtt_search.search.particles``)."""
        gen_length = sampler.gen_length or self.gen_length
        if any(len(row) != gen_length for row in tokens):
            raise ValueError(f"infill needs {gen_length} token positions per row (the model's gen_length)")
        mask_id = self.tokenizer.mask_id
        batch, x = self._given_rows(prompts, tokens, gen_length)
        out = sample(self.model, x, batch.gen_mask, batch.attention_mask, sampler, mask_id=mask_id, seeds=list(seeds),
                     stop_after=stop_after)
        ids = batch.completions(out.tokens).cpu().tolist()
        logprobs = batch.completions(out.token_logprobs).cpu().tolist()
        return Completions(texts=[self.tokenizer.decode(row) for row in ids],
                           logprobs=[self._up_to_eos(t, lp) for t, lp in zip(ids, logprobs)], nfe=out.nfe,
                           positions=gen_length, tokens=ids, token_logprobs=logprobs)

    @sampling
    @torch.no_grad()
    def predict(self, prompts: Sequence[str], tokens: Sequence[Sequence[int | None]]) -> torch.Tensor:
        """One network call: [B, G, V] float64 log-probabilities of every token at each of
        row i's ``G = len(tokens[i])`` generated positions given the prompt and the tokens
        ``tokens[i]`` holds (None: masked), the MASK token excluded (order search,
        ``sdtt_search.search.order_search``). A time-conditioned model is shown the row's
        masked share as its time."""
        gen_length = len(tokens[0]) if tokens else self.gen_length
        mask_id = self.tokenizer.mask_id
        batch, x = self._given_rows(prompts, tokens, gen_length)
        t = masked_fraction(x, batch.gen_mask, mask_id)
        logits, _ = denoise_distinct(self.model, x, attention_mask=batch.attention_mask,
                                     sigma=sigma_for(self.model, LogLinearSchedule(), t),
                                     gen_start=first_generated_column(batch.gen_mask))
        return token_probs(logits[:, -gen_length:], mask_id, 1.0).log()
