"""``load_model``: a zoo name, a checkpoint directory, a LoRA student or ``hf:<hub id>`` -> a
model the search engine can ask for completions (``sdtt_search.interface.Model``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .ar import is_ar_checkpoint, load_ar_model
from .checkpoint import load_pretrained
from .diffusion_model import DiffusionModel
from .interface import Model
from .lora import apply_lora_checkpoint, is_lora_checkpoint, read_lora_config
from .machine import resolve_device
from .zoo import resolve_model_path


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu", ar_backend: str = "auto",
               trust_remote_code: bool = False, family: str | None = None, dtype: str | torch.dtype | None = None,
               hf_options: dict | None = None) -> Model:
    """Load a zoo model (e.g. ``"countdown-cd3-num-sdtt-4"``) or a checkpoint directory.

    Masked diffusion checkpoints give a ``DiffusionModel``; AR twins (Llama format,
    e.g. ``"countdown-cd3-ar"``) give an ``ARModel`` sampled by ``ar_backend``:
    "vllm", "transformers" or "auto" (vLLM when installed).

    Raises one-line errors for unknown names and broken checkpoints.
    """
    if str(name_or_path).startswith("hf:"):
        # Hugging Face models (sdtt_search.hf): "hf:<hub id[@revision] or dir>". Diffusion families, or a
        # causal LM (a ...ForCausalLM none of them claims) as an ARModel sampled by transformers.
        # trust_remote_code allows the repository's modelling code; family forces llada|dream|mdlm|sdtt; dtype
        # defaults to bf16 on CUDA, fp32 on CPU; hf_options: chat, answer_format, system_prompt, mask_id,
        # tokenizer (load_hf_model).
        from .hf import load_hf_model

        return load_hf_model(str(name_or_path), device=device, trust_remote_code=trust_remote_code, family=family,
                             dtype=dtype, ar_backend=ar_backend, **(hf_options or {}))
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
