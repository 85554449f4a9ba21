"""``load_model``: a zoo name, a checkpoint directory (or, later, a hub id) -> a
model object that the search engine can ask for completions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .ar import is_ar_checkpoint, load_ar_model
from .checkpoint import load_pretrained
from .lora import apply_lora_checkpoint, is_lora_checkpoint, read_lora_config
from .diffusion import SamplerConfig, fit_blocks, generate
from .machine import resolve_device
from .zoo import resolve_model_path
from .model.invariant import sampling


@dataclass
class Completions:
    """What ``generate`` returns to the search engine.

    Attributes:
        texts: decoded completions (cut at the first EOS).
        logprobs: per row, the model log-prob of each generated token up to and
            including EOS (its mean is the "confidence" score).
        nfe: network calls of the batch.
        positions: generated positions per row (the compute per sample).
    """

    texts: list[str]
    logprobs: list[list[float]]
    nfe: int
    positions: int


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
        sampler = SamplerConfig.from_dict({**recorded, "steps": int(self.meta.get("sampling_steps", 32))})
        return fit_blocks(sampler, self.gen_length) if self.gen_length else sampler

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


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu", ar_backend: str = "auto",
               trust_remote_code: bool = False, family: str | None = None, dtype: str | torch.dtype | None = None,
               hf_options: dict | None = None):
    """Load a zoo model (e.g. ``"countdown-cd3-num-sdtt-4"``) or a checkpoint directory.

    Masked diffusion checkpoints give a ``DiffusionModel``; AR twins (Llama format,
    e.g. ``"countdown-cd3-ar"``) give an ``ARModel`` sampled by ``ar_backend``:
    "vllm", "transformers" or "auto" (vLLM when installed).

    Raises one-line errors for unknown names and broken checkpoints.
    """
    if str(name_or_path).startswith("hf:"):
        # Hugging Face diffusion models (sdtt_search.hf): "hf:<hub id[@revision] or dir>". trust_remote_code
        # allows LLaDA / Dream modelling code; family forces llada|dream|mdlm|sdtt; dtype defaults to bf16 on
        # CUDA, fp32 on CPU; hf_options: chat, answer_format, system_prompt, mask_id, tokenizer (load_hf_model).
        from .hf import load_hf_model

        return load_hf_model(str(name_or_path), device=device, trust_remote_code=trust_remote_code, family=family,
                             dtype=dtype, **(hf_options or {}))
    device = resolve_device(device)
    path = resolve_model_path(name_or_path)
    if is_lora_checkpoint(path):
        return _load_lora_student(path, str(name_or_path), device=device, trust_remote_code=trust_remote_code,
                                  family=family, dtype=dtype, hf_options=hf_options)
    if is_ar_checkpoint(path):
        return load_ar_model(path, name=str(name_or_path), device=device, backend=ar_backend)
    loaded = load_pretrained(path, device=device)
    # A causal Llama denoiser is a diffusion model (block-wise decoding, prefix never
    # revised); a causal DiT is the old AR format.
    if loaded.meta.get("kind", "diffusion") != "diffusion" or (loaded.model.config.causal
                                                              and loaded.model.config.backbone != "llama"):
        raise ValueError(f"{name_or_path} is a causal checkpoint in the diffusion format; export AR models with "
                         "sdtt_search.ar.save_ar_pretrained (Llama format) to sample them")
    return DiffusionModel(loaded.model, loaded.tokenizer, loaded.meta, name=str(name_or_path))


def load_ar_as_denoiser(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> DiffusionModel:
    """An AR twin (zoo name or directory) as a causal diffusion model with the same
    weights (``causal_denoiser_from``), decoded in blocks of one token: the AR model's
    sampler, so it can be the teacher of block-wise SDTT (``distill.sdtt teacher=<AR>``)."""
    from .ar import load_ar_pretrained
    from .model.llama_denoiser import causal_denoiser_from

    path = resolve_model_path(name_or_path)
    if not is_ar_checkpoint(path):
        raise ValueError(f"{name_or_path} is not an AR checkpoint (no sdtt_search.json sidecar)")
    loaded = load_ar_pretrained(path, device=resolve_device(device))
    if loaded.tokenizer.mask_id is None:
        raise ValueError(f"{name_or_path}'s tokenizer has no mask token: train the AR twin with its diffusion twin's "
                         "tokenizer (distill.pretrain objective=ar tokenizer_from=...)")
    gen_length = int(loaded.meta["gen_length"])
    meta = {**loaded.meta, "kind": "diffusion", "sampling_steps": gen_length, "init_from": str(name_or_path),
            "sampler": {"method": "confidence", "block_length": 1, "temperature": 1.0}}
    model = causal_denoiser_from(loaded.model, loaded.tokenizer.mask_id).eval()
    return DiffusionModel(model, loaded.tokenizer, meta, name=str(name_or_path))


def _load_lora_student(path: Path, name: str, *, device, trust_remote_code: bool, family, dtype, hf_options):
    """A LoRA student (``sdtt_search.lora``): its base model with the adapter injected.

    The base's remote code still needs the caller's own ``trust_remote_code``: a
    checkpoint file cannot opt in for the user.
    """
    config = read_lora_config(path)
    saved = dict(config.get("load_options") or {})
    model = load_model(config["base"], device=device, trust_remote_code=trust_remote_code,
                       family=family or saved.get("family"), dtype=dtype or saved.get("dtype"),
                       hf_options={**(saved.get("hf_options") or {}), **(hf_options or {})})
    apply_lora_checkpoint(model.model, path)
    meta = dict(config.get("meta") or {})
    model.meta.update({k: v for k, v in meta.items() if k in ("sampling_steps", "sdtt", "gen_length")})
    if "sampling_steps" in meta:
        model.meta["distilled_steps"] = int(meta["sampling_steps"])
    model.name = name
    return model
