"""Checkpoint directories: config.json + model.safetensors + tokenizer.json (+ MODEL.md).

config.json::

    {"format": "sdtt-search", "format_version": 1,
     "model": ModelConfig.to_dict(),
     "tokenizer": {"pad": "[PAD]", "mask": "[MASK]", "eos": "[EOS]", "unk": "[UNK]"},
     "meta": {...free info: "kind": "diffusion" | "ar", "sampling_steps", "task", ...}}

("tokenizer" names the special tokens inside tokenizer.json, which is a plain Hugging
Face file; it is optional and defaults to the names above.) Weights are fp32 and are
read with safetensors only, never unpickled. Every problem with a directory is a
one-line ``CheckpointError`` that says what was expected.

Checkpoint I/O lives here only: the networks (``sdtt_search.model``) know nothing of
files, so this module depends on them and not the other way round.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from .model import Denoiser, ModelConfig, build_denoiser
from .tokenizer import DEFAULT_NAMES, Tokenizer

FORMAT = "sdtt-search"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER, CARD = "config.json", "model.safetensors", "tokenizer.json", "MODEL.md"

__all__ = ["CheckpointError", "Pretrained", "save_pretrained", "load_pretrained", "FORMAT", "FORMAT_VERSION"]


class CheckpointError(ValueError):
    """A checkpoint directory is missing, of another format, or inconsistent (one-line message)."""


@dataclass
class Pretrained:
    """A loaded checkpoint: the model (eval mode), its tokenizer, the free-form meta, its directory."""

    model: Denoiser
    tokenizer: Tokenizer
    meta: dict
    path: Path


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary name, then rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_pretrained(
    directory: str | Path,
    model: Denoiser,
    tokenizer: Tokenizer,
    meta: dict | None = None,
    card: str | None = None,
) -> Path:
    """Write ``model`` (fp32 weights), ``tokenizer``, ``meta`` (and a MODEL.md ``card``) to ``directory``.

    Returns the directory. The weights are written first and config.json last, so a
    directory with a config.json is complete.
    """
    directory = Path(directory)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {model.config.vocab_size}")
    if model.config.mask_id is not None and model.config.mask_id != tokenizer.mask_id:
        raise CheckpointError(f"tokenizer has mask id {tokenizer.mask_id} but the model's config says mask_id {model.config.mask_id}")
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "tokenizer": dict(tokenizer.special_tokens),
        "meta": dict(meta or {}),
    }
    _atomic_write(directory / WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    _atomic_write(directory / TOKENIZER, tokenizer.save)
    if card is not None:
        _atomic_write(directory / CARD, lambda p: p.write_text(card, encoding="utf-8"))
    _atomic_write(directory / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2, default=str) + "\n"))
    return directory


def _read_config(directory: Path) -> dict:
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} does not exist; expected a directory written by save_pretrained")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is a file; expected a checkpoint directory with {CONFIG}, {WEIGHTS} and {TOKENIZER}")
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG}; expected a directory written by save_pretrained")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err.__class__.__name__} at position {getattr(err, 'pos', '?')})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        if isinstance(config, dict) and ("architectures" in config or "model_type" in config or "auto_map" in config):
            raise CheckpointError(
                f"{path} is not an sdtt-search config: it looks like a Hugging Face checkpoint; use load_model('hf:...')"
            )
        raise CheckpointError(f"{path} is not an sdtt-search checkpoint config (expected \"format\": \"{FORMAT}\")")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {version!r}; this sdtt-search reads versions up to {FORMAT_VERSION}")
    return config


def owned_fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fresh fp32 copies of a loaded state dict's floating tensors, to become parameters
    with ``load_state_dict(assign=True)``: newer safetensors hands out views into one file
    buffer at unaligned offsets (slower kernels, and logits that differ in the last bits
    from the saved model's)."""
    return {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v for k, v in state.items()}


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> Pretrained:
    """Load a checkpoint directory written by ``save_pretrained``; the model is in eval mode on ``device``."""
    directory = Path(directory)
    config = _read_config(directory)
    try:
        model_config = ModelConfig.from_dict(config.get("model"))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG} has a bad \"model\" entry: {err}") from None

    tokenizer_path = directory / TOKENIZER
    if not tokenizer_path.is_file():
        raise CheckpointError(f"{directory} has no {TOKENIZER}; expected the tokenizer saved next to the weights")
    names = {**DEFAULT_NAMES, **(config.get("tokenizer") or {})}
    try:
        tokenizer = Tokenizer.from_file(tokenizer_path, pad_token=names["pad"], mask_token=names["mask"],
                                        eos_token=names["eos"], unk_token=names["unk"])
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{TOKENIZER} has {tokenizer.vocab_size} tokens but {CONFIG} says vocab_size {model_config.vocab_size}"
        )
    if model_config.mask_id is not None and tokenizer.mask_id != model_config.mask_id:
        raise CheckpointError(f"{TOKENIZER} has mask id {tokenizer.mask_id} but {CONFIG} says mask_id {model_config.mask_id}")

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS}; expected the weights saved by save_pretrained")
    try:
        state = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - any unreadable file is "corrupt"
        raise CheckpointError(f"{weights} is not a readable safetensors file ({type(err).__name__})") from None

    with torch.device("meta"):  # no init cost: every tensor comes from the file
        model = build_denoiser(model_config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "") if keys else "none"

        raise CheckpointError(f"{weights} does not match {CONFIG}: missing keys {some(missing)}; unexpected keys {some(unexpected)}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{weights}: {name} has shape {tuple(state[name].shape)} but {CONFIG} implies {tuple(tensor.shape)}"
            )
    state = owned_fp32(state)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device).eval()
    return Pretrained(model=model, tokenizer=tokenizer, meta=_meta(config, directory), path=directory)


def _meta(config: dict, directory: Path) -> dict:
    """The checkpoint's ``meta``, checked where the search reads it (one-line errors naming the file)."""
    meta = config.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{directory / CONFIG}: \"meta\" must be a mapping, got {type(meta).__name__}")
    steps = meta.get("sampling_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise CheckpointError(f"{directory / CONFIG}: \"meta.sampling_steps\" must be a positive integer, "
                              f"got {steps!r}")
    return dict(meta)
