"""Model specs: a zoo name or checkpoint with sampler overrides -> a loaded model, and what
the report records about it (role, steps, the step count its speed bar divides by)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.loading import load_ar_as_denoiser, load_model


def network_of(model) -> torch.nn.Module | None:
    """The torch module whose forward does the model's arithmetic (None when out of reach, e.g. vLLM)."""
    if model.kind == "ar":
        return getattr(model.backend, "model", None)
    return model.model


def bar_steps(meta: dict, steps: int) -> int:
    """The step count the speed bar divides by: the run's steps, or the SDTT round's
    own count when that is fewer (a threshold student records a larger step budget than
    the round it was distilled in: countdown-cd3-num-sdtt-8 decodes within 10)."""
    sdtt = meta.get("sdtt") or {}
    if sdtt.get("teacher_steps") and sdtt.get("round") and sdtt.get("layout", "blocks") != "tail":
        return min(steps, int(sdtt["teacher_steps"]) // 2 ** int(sdtt["round"]))
    return steps


def describe_model(model) -> dict:
    meta = model.meta
    if model.kind == "ar":
        role = "ar"
    elif meta.get("sdtt"):
        role = "student"
    else:
        role = "teacher"
    sampler = model.default_sampler()
    params = getattr(model, "num_parameters", None) or sum(p.numel() for p in model.model.parameters())
    return {"kind": model.kind, "role": role, "steps": sampler.steps, "bar_steps": bar_steps(meta, sampler.steps),
            "sampler": sampler.method,
            "gen_length": int(sampler.gen_length or model.gen_length), "parameters": int(params),
            "backend": getattr(model, "backend_name", "sdtt-search")}


def prompts_for(task, problems, batch: int) -> list[str]:
    texts = [task.format_prompt(p) for p in problems]
    return (texts * (batch // len(texts) + 1))[:batch]


def generated_tokens(out) -> int:
    return sum(len(lps) for lps in out.logprobs)


def _value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_spec(spec: str, device: str, ar_backend: str, *, force_backend: bool = False):
    """``name`` or ``name:key=value,key=value`` (sampler overrides after the last colon, e.g.
    ``countdown-cd3-num-teacher:threshold=0.9,steps=12``; ``ar_backend=`` picks an AR
    model's engine unless ``force_backend``; ``as_denoiser=true`` reads an AR twin as a
    causal denoiser decoded one token per call with the prefix cache): the model with
    that default sampler."""
    name, _, overrides = spec.rpartition(":") if not Path(spec).exists() else (spec, "", "")
    if not name or "=" not in overrides:  # no overrides: "hf:<id or dir>" keeps its colon
        name, overrides = spec, ""
    values = {}
    for item in filter(None, overrides.split(",")):
        key, _, raw = item.partition("=")
        values[key] = _value(raw)
    spec_backend = values.pop("ar_backend", ar_backend)  # e.g. countdown-cd3-ar:ar_backend=transformers
    ar_backend = ar_backend if force_backend else spec_backend
    if values.pop("as_denoiser", False):  # an AR twin through our block sampler with the prefix cache
        model = load_ar_as_denoiser(name, device=device)
    else:
        model = load_model(name, device=device, ar_backend=ar_backend)
    if values:
        sampler = SamplerConfig.from_dict({**model.default_sampler().to_dict(), **values})
        model.default_sampler = lambda: SamplerConfig.from_dict(sampler.to_dict())
    return model


def same_task(a: dict, b: dict) -> bool:
    return (a or {}).get("name") == (b or {}).get("name") and (a or {}).get("options") == (b or {}).get("options")
