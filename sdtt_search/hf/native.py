"""Networks of Hugging Face diffusion families built here instead of by their repositories' code.

``NATIVE`` maps a family to (why its config.json cannot be built here or None, the
network class). ``load_native`` reads the checkpoint's safetensors (the shards of
``model.safetensors.index.json``, or ``model.safetensors``) under the hub's own key
names into that network; a missing, unexpected or mis-shaped key is one ``ValueError`` line.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import dream, llada
from .source import HFSource

NATIVE = {
    "llada": (llada.native_reason, llada.LLaDANetwork),
    "dream": (dream.native_reason, dream.DreamNetwork),
}


def native_reason(family: str, config: dict) -> str | None:
    """None when ``family``'s network can be built here from ``config``, else why not."""
    if family not in NATIVE:
        return f"family {family} has no native build (only {', '.join(NATIVE)})"
    return NATIVE[family][0](config)


def weight_files(source: HFSource) -> list[Path]:
    """The checkpoint's safetensors files; pickled-only weights are a one-line error."""
    index = source.file("model.safetensors.index.json", required=False)
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"{source.spec}: model.safetensors.index.json has no readable weight_map "
                             f"({type(err).__name__})") from None
        return [source.file(name) for name in shards]
    single = source.file("model.safetensors", required=False)
    if single is None:
        raise ValueError(f"{source.spec} has no model.safetensors(.index.json); weights are read from safetensors only")
    return [single]


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "") if keys else "none"


def load_native(family: str, source: HFSource, config: dict, *, mask_id: int, dtype: torch.dtype) -> torch.nn.Module:
    """``family``'s network built here, with the checkpoint's weights in ``dtype`` on CPU (eval mode)."""
    from safetensors.torch import load_file

    with torch.device("meta"):  # no init cost: every tensor comes from the files
        network = NATIVE[family][1](config, mask_id)
    expected = network.state_dict()
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(source):
        try:
            state.update(load_file(str(path)))
        except Exception as err:  # noqa: BLE001 - any unreadable file
            raise ValueError(f"{source.spec}: {path.name} is not a readable safetensors file "
                             f"({type(err).__name__})") from None
    if getattr(network, "tied", False):  # a tied head may still be saved: it is the embedding
        for key in ("lm_head.weight", "model.transformer.ff_out.weight"):
            if key not in expected:
                state.pop(key, None)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    shapes = [f"{k} {tuple(state[k].shape)} (wants {tuple(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"{source.spec}: the weights do not fit its config.json ({family}): missing {_some(missing)}; "
                         f"unexpected {_some(unexpected)}; mis-shaped {_some(shapes)}")
    network.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return network.eval()
