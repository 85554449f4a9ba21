"""LoRA students: low-rank adapters (peft) on a frozen base denoiser, and their checkpoints.

A LoRA checkpoint directory holds ``lora.json`` (the base model to load, the adapter
shape, the sampling meta) and ``lora.safetensors`` (the adapter weights only, a few
MB even for an 8B base). ``load_model(<dir>)`` loads the base, injects the adapter
and returns the same kind of model object as the base.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

LORA_CONFIG, LORA_WEIGHTS = "lora.json", "lora.safetensors"
FORMAT = "sdtt-search-lora"


@dataclass
class LoRASpec:
    """Adapter shape. ``target_modules``: names (suffixes) of the Linear layers to adapt;
    empty = a default per architecture (our DiT: attention and MLP; Llama-like HF
    models: q/k/v/o and the MLP projections)."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"lora.r={self.r!r} must be a positive integer")
        if not float(self.alpha) > 0:
            raise ValueError(f"lora.alpha={self.alpha!r} must be > 0")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora.dropout={self.dropout!r} must be in [0, 1)")


DIT_TARGETS = ["attn_qkv", "attn_out", "mlp.0", "mlp.2"]
LLAMA_LIKE_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "att_proj", "attn_out", "ff_proj", "ff_out",
                      "up_proj", "down_proj", "gate_proj"]


def default_targets(module: nn.Module) -> list[str]:
    """The Linear layers to adapt when the spec names none (those that exist in ``module``)."""
    names = {name for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    for candidates in (DIT_TARGETS, LLAMA_LIKE_TARGETS):
        found = [c for c in candidates if any(n == c or n.endswith("." + c) for n in names)]
        if found:
            return found
    raise ValueError("no known Linear layers to adapt in this model; set lora.target_modules=[...]")


def attach_lora(module: nn.Module, spec: LoRASpec) -> nn.Module:
    """Inject LoRA layers into ``module`` in place (peft); base weights frozen, adapters fp32 and trainable.

    lora_B starts at zero, so the adapted model starts exactly as the base model.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise RuntimeError("LoRA needs peft: pip install 'sdtt-search[hf]' (or pip install peft)") from None
    targets = list(spec.target_modules) or default_targets(module)
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets)
    inject_adapter_in_model(config, module)
    for name, p in module.named_parameters():
        is_lora = "lora_" in name
        p.requires_grad_(is_lora)
        if is_lora:
            p.data = p.data.float()  # adapters train in fp32 even on a bf16 base
    if not any(p.requires_grad for p in module.parameters()):
        raise ValueError(f"lora.target_modules={targets} matched no Linear layer of the model")
    return module


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} of the adapter weights (detached clones on CPU)."""
    return {n: p.detach().to("cpu").clone() for n, p in adapter_parameters(module).items()}


def adapter_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """{name: parameter} of the LoRA adapters injected in ``module``."""
    return {n: p for n, p in module.named_parameters() if "lora_" in n}


def check_lora_state(params: dict[str, nn.Parameter], state: dict[str, torch.Tensor]) -> None:
    """One-line error unless ``state`` has exactly the adapters' names and shapes."""
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    shapes = [n for n in params if n in state and tuple(state[n].shape) != tuple(params[n].shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"LoRA weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"mis-shaped {shapes[:3]}; was the adapter trained on this base with this lora.r?")


def _aligned(params: dict[str, nn.Parameter], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under ``params``' names: an adapter trained on a family's remote-code network
    (names under ``network.``, ``RemoteAdapter``) fits the same weights built natively
    (``sdtt_search.hf.native``: the hub's names at the top) and back."""
    if set(state) == set(params):
        return state
    for moved in ({k.removeprefix("network."): v for k, v in state.items()}, {"network." + k: v for k, v in state.items()}):
        if set(moved) == set(params):
            return moved
    return state


@torch.no_grad()
def load_lora_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter weights into ``module``; any missing/unexpected/mis-shaped name is a one-line error."""
    params = adapter_parameters(module)
    state = _aligned(params, state)
    check_lora_state(params, state)
    for n, p in params.items():
        p.copy_(state[n].to(p.device, p.dtype))


def save_lora_checkpoint(directory: str | Path, module: nn.Module, *, base: str, spec: LoRASpec,
                         meta: dict, load_options: dict | None = None) -> Path:
    """Write ``lora.json`` + ``lora.safetensors`` for the adapters of ``module`` over ``base``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in lora_state(module).items()}, str(directory / LORA_WEIGHTS))
    config = {"format": FORMAT, "base": base, "lora": asdict(spec), "load_options": dict(load_options or {}),
              "meta": meta}
    (directory / LORA_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return directory


def is_lora_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / LORA_CONFIG).is_file()


def read_lora_config(directory: str | Path) -> dict:
    path = Path(directory) / LORA_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable LoRA config ({err.__class__.__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or "base" not in config:
        raise ValueError(f"{path} is not an sdtt-search LoRA checkpoint (expected \"format\": \"{FORMAT}\" and a base)")
    return config


def apply_lora_checkpoint(module: nn.Module, directory: str | Path) -> dict:
    """Inject the adapter of a LoRA checkpoint into ``module`` and load its weights; returns lora.json."""
    config = read_lora_config(directory)
    attach_lora(module, LoRASpec(**config["lora"]))
    load_lora_state(module, load_file(str(Path(directory) / LORA_WEIGHTS)))
    module.eval()
    return config
