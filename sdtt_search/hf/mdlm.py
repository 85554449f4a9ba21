"""MDLM / SDTT hub checkpoints into our ``Denoiser``.

* ``kuleshov-group/mdlm-owt``: an HF config (``hidden_dim``, ``cond_dim``,
  ``n_blocks``, ``n_heads``, ``vocab_size``, ``model_length``,
  ``time_conditioning``) and ``model.safetensors`` with the DiT under ``backbone.``.
* ``jdeschena/sdtt`` revisions: the OmegaConf run config (a ``model`` section with
  ``hidden_size``, ``cond_dim``, ``n_blocks``, ``n_heads``, ``length``) and
  ``model.safetensors`` with keys ``backbone.<DiT key>`` (``backbone.backbone.`` for
  ``teacher_1M_sm``).

The prefix in front of ``vocab_embed.embedding`` is stripped; MDLM's
``rotary_emb.inv_freq`` buffer is checked against our rotary tables and dropped.
Any other difference — a missing, unexpected or mis-shaped key — is one
``ValueError`` line naming the keys. Weights are read with safetensors only.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import owned_fp32
from ..model import Denoiser, ModelConfig
from .source import HFSource

WEIGHTS = "model.safetensors"
ANCHOR = "vocab_embed.embedding"
INV_FREQ = "rotary_emb.inv_freq"
PICKLED = ("pytorch_model.bin", "model.ckpt", "last.ckpt")


def _sections(config: dict) -> list[dict]:
    """The config and its sub-sections where DiT settings may sit (SDTT nests them under "model")."""
    return [config] + [config[k] for k in ("model", "backbone", "algo") if isinstance(config.get(k), dict)]


def _setting(config: dict, *names: str):
    for section in _sections(config):
        for name in names:
            if section.get(name) is not None:
                return section[name]
    return None


def weights_file(source: HFSource) -> Path:
    """``model.safetensors`` of the checkpoint; pickled weights are refused in one line."""
    path = source.file(WEIGHTS, required=False)
    if path is not None:
        return path
    if source.local and any((source.path / name).is_file() for name in PICKLED):
        raise ValueError(f"{source.spec} has pickled weights but no {WEIGHTS}; sdtt-search never unpickles model files: "
                         "convert them to safetensors (safetensors.torch.save_file) and retry")
    raise ValueError(f"{source.spec} has no {WEIGHTS}; MDLM / SDTT checkpoints are read from safetensors only")


def strip_prefix(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Keys relative to the DiT: the prefix before ``vocab_embed.embedding`` (e.g. ``backbone.``) removed.

    Keys outside that prefix are kept whole (and reported as unexpected by ``load_state``).
    """
    anchors = [k for k in state if k == ANCHOR or k.endswith("." + ANCHOR)]
    if len(anchors) != 1:
        found = "no" if not anchors else f"{len(anchors)}"
        raise ValueError(f"{name}: {found} '*{ANCHOR}' key in the weights; expected one MDLM DiT "
                         f"(keys like backbone.{ANCHOR}, backbone.blocks.0.attn_qkv.weight)")
    prefix = anchors[0][: -len(ANCHOR)]
    return {(k.removeprefix(prefix)): v for k, v in state.items()}


def model_config(config: dict, state: dict[str, torch.Tensor], *, mask_id: int, name: str) -> ModelConfig:
    """The ``ModelConfig`` of a checkpoint: sizes from config.json, or from the weights' shapes where the config is silent."""
    embed = state.get(ANCHOR)
    hidden = _setting(config, "hidden_size", "hidden_dim") or (embed.shape[1] if embed is not None else None)
    vocab = _setting(config, "vocab_size") or (embed.shape[0] if embed is not None else None)
    n_heads = _setting(config, "n_heads", "num_heads", "num_attention_heads")
    if n_heads is None:
        raise ValueError(f"{name}: config.json gives no n_heads (it cannot be read off the weights); "
                         "pass a checkpoint whose config has it")
    layers = _setting(config, "n_blocks", "n_layers") or len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    cond = _setting(config, "cond_dim") or (state["sigma_map.mlp.0.weight"].shape[0] if "sigma_map.mlp.0.weight" in state else None)
    mlp = state.get("blocks.0.mlp.0.weight")
    mlp_ratio = _setting(config, "mlp_ratio") or (mlp.shape[0] // int(hidden) if mlp is not None and hidden else 4)
    length = _setting(config, "model_length", "length", "max_length") or 1024
    try:
        return ModelConfig(
            vocab_size=int(vocab), hidden_size=int(hidden), n_layers=int(layers), n_heads=int(n_heads),
            cond_dim=int(cond), mlp_ratio=int(mlp_ratio), max_length=int(length), dropout=0.0,
            time_conditioning=bool(_setting(config, "time_conditioning") or False), mask_id=int(mask_id),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: config.json does not describe an MDLM DiT ({err})") from None


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "") if keys else "none"


def _check_inv_freq(inv_freq: torch.Tensor, head_dim: int, name: str) -> None:
    expected = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if tuple(inv_freq.shape) != tuple(expected.shape) or not torch.allclose(inv_freq.float(), expected, rtol=1e-4):
        raise ValueError(f"{name}: {INV_FREQ} has shape {tuple(inv_freq.shape)} and is not base-10000 rotary over "
                         f"head dim {head_dim}; the n_heads in config.json does not fit these weights")


def load_state(denoiser: Denoiser, state: dict[str, torch.Tensor], name: str) -> None:
    """Copy ``state`` (DiT-relative keys) into ``denoiser`` after checking keys and shapes.

    Raises one ``ValueError`` line listing missing, unexpected and mis-shaped keys.
    """
    state = dict(state)
    inv_freq = state.pop(INV_FREQ, None)
    expected = denoiser.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    shapes = [f"{k} {tuple(state[k].shape)} (model wants {tuple(v.shape)})"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"{name}: the weights do not fit an MDLM DiT of this config: missing keys {_some(missing)}; "
                         f"unexpected keys {_some(unexpected)}; mis-shaped keys {_some(shapes)}")
    if inv_freq is not None:
        _check_inv_freq(inv_freq, denoiser.config.head_dim, name)
    state = owned_fp32(state)
    denoiser.load_state_dict(state, strict=True, assign=True)


def load_denoiser(source: HFSource, config: dict, *, mask_id: int) -> Denoiser:
    """The ``Denoiser`` (fp32, CPU, eval mode) of an MDLM / SDTT checkpoint."""
    from safetensors.torch import load_file

    path = weights_file(source)
    try:
        raw = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any unreadable file
        raise ValueError(f"{source.spec}: {path.name} is not a readable safetensors file ({type(err).__name__})") from None
    state = strip_prefix(raw, source.spec)
    cfg = model_config(config, state, mask_id=mask_id, name=source.spec)
    with torch.device("meta"):  # no init cost: every tensor comes from the file
        denoiser = Denoiser(cfg)
    load_state(denoiser, state, source.spec)
    return denoiser.eval()
