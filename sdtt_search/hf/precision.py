"""dtype policy and parameter counts.

* CUDA: bfloat16 unless told otherwise (the LLaDA / Dream authors' setting; for
  MDLM / SDTT the fp32 weights run under bf16 autocast, as MDLM trains and samples).
* CPU: float32, but models with more than ``CPU_FP32_MAX_PARAMS`` parameters are
  refused in float32 (4 bytes per parameter: an 8B model needs 32 GiB and hours per
  problem). 1e9 keeps every MDLM / SDTT DiT (169M-863M) runnable on CPU and rules
  out LLaDA-8B / Dream-7B unless ``dtype=bfloat16`` is asked for explicitly.
"""
from __future__ import annotations

import torch

from .source import HFSource

CPU_FP32_MAX_PARAMS = 1_000_000_000

_DTYPES = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from a name ("bfloat16", "bf16", "float32", ...), a dtype, or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is unknown; use bfloat16, float16 or float32")
    return _DTYPES[key]


def choose_dtype(dtype: str | torch.dtype | None, device: torch.device, n_params: int | None, name: str) -> torch.dtype:
    """The dtype to run ``name`` with on ``device``.

    Default: bfloat16 on CUDA, float32 elsewhere. float32 on CPU for a model with
    more than ``CPU_FP32_MAX_PARAMS`` parameters is a one-line ``ValueError``.
    """
    chosen = parse_dtype(dtype)
    if chosen is None:
        chosen = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and chosen == torch.float32 and n_params is not None and n_params > CPU_FP32_MAX_PARAMS:
        raise ValueError(
            f"{name} has {n_params / 1e9:.1f}B parameters: float32 on CPU needs {4 * n_params / 2**30:.0f} GiB and is far "
            f"too slow (limit {CPU_FP32_MAX_PARAMS / 1e9:.0f}B); run it on a GPU with device=cuda, "
            "or pass dtype=bfloat16 to run it on CPU anyway")
    return chosen


def count_parameters(source: HFSource, config: dict) -> int | None:
    """Parameters of the model without loading it.

    Local directories: the shapes in the safetensors headers. Hub ids: the hub's
    safetensors metadata. Otherwise an estimate from config.json; None if unknown.
    """
    try:
        if source.local:
            files = sorted(source.path.glob("*.safetensors"))
            if files:
                return _count_local(files)
        else:
            from huggingface_hub import get_safetensors_metadata

            meta = get_safetensors_metadata(source.location, revision=source.revision)
            return int(sum(meta.parameter_count.values()))
    except Exception:  # noqa: BLE001, S110 - counting is best effort; fall back to the config
        pass
    return estimate_from_config(config)


def _count_local(files) -> int:
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:  # reads the header only
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                numel = 1
                for dim in f.get_slice(key).get_shape():
                    numel *= int(dim)
                total += numel
    return total


def _first(config: dict, *names: str) -> int | None:
    sections = [config] + [v for v in config.values() if isinstance(v, dict)]
    for section in sections:
        for name in names:
            value = section.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def estimate_from_config(config: dict) -> int | None:
    """About 4·d² + 3·d·ff per layer plus two V×d matrices (a Llama-style block); None if the shape is unknown."""
    d = _first(config, "hidden_size", "d_model", "hidden_dim")
    layers = _first(config, "num_hidden_layers", "n_layers", "n_blocks")
    vocab = _first(config, "vocab_size", "embedding_size")
    if not (d and layers and vocab):
        return None
    ff = _first(config, "intermediate_size", "mlp_hidden_size") or 4 * d
    return layers * (4 * d * d + 3 * d * ff) + 2 * vocab * d
