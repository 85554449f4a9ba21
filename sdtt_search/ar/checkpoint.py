"""AR twin checkpoints in Hugging Face Llama format.

A directory holds what ``transformers.AutoModelForCausalLM`` and vLLM read:
config.json (``LlamaConfig``), model.safetensors (fp32, HF parameter names),
generation_config.json, tokenizer.json + tokenizer_config.json +
special_tokens_map.json (a ``PreTrainedTokenizerFast``), and ``sdtt_search.json``
with what the search engine needs (task, gen_length, training record, the
special-token names). Weights are read with safetensors only, never unpickled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import CheckpointError, _atomic_write
from ..model.llama import CausalLM, CausalLMConfig
from ..tokenizer import DEFAULT_NAMES, Tokenizer

SIDECAR = "sdtt_search.json"
FORMAT = "sdtt-search-ar"
FORMAT_VERSION = 1


@dataclass
class ARPretrained:
    """A loaded AR checkpoint: our ``CausalLM`` (eval mode), tokenizer, meta, directory."""

    model: CausalLM
    tokenizer: Tokenizer
    meta: dict
    path: Path


def is_ar_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds an sdtt-search AR twin (a Llama dir with our sidecar)."""
    return (Path(directory) / SIDECAR).is_file()


def save_ar_pretrained(directory: str | Path, model: CausalLM, tokenizer: Tokenizer, meta: dict | None = None,
                       card: str | None = None) -> Path:
    """Write ``model`` and ``tokenizer`` as a Hugging Face Llama checkpoint directory.

    config.json is written last, so a directory with one is complete.
    """
    directory = Path(directory)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {model.config.vocab_size}")
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    names = dict(tokenizer.special_tokens)
    hf_config = model.config.to_hf(bos_id=None, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.config.max_length,
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
        "pad_token": names["pad"], "eos_token": names["eos"],
        **({"unk_token": names["unk"]} if names.get("unk") else {}),
    }
    specials = {k: v for k, v in {"pad_token": names["pad"], "eos_token": names["eos"], "unk_token": names.get("unk")}.items() if v}
    generation = {"eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id, "bos_token_id": None}
    sidecar = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.config.to_dict(),
               "tokenizer": names, "meta": {**(meta or {}), "kind": "ar"}}

    def write_json(obj):
        return lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")

    _atomic_write(directory / "model.safetensors", lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    _atomic_write(directory / "tokenizer.json", tokenizer.save)
    _atomic_write(directory / "tokenizer_config.json", write_json(tok_config))
    _atomic_write(directory / "special_tokens_map.json", write_json(specials))
    _atomic_write(directory / "generation_config.json", write_json(generation))
    _atomic_write(directory / SIDECAR, write_json(sidecar))
    if card is not None:
        _atomic_write(directory / "MODEL.md", lambda p: p.write_text(card, encoding="utf-8"))
    _atomic_write(directory / "config.json", write_json(hf_config))
    return directory


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}; expected an AR checkpoint written by save_ar_pretrained")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return value


def read_sidecar(directory: str | Path) -> dict:
    """The ``sdtt_search.json`` of an AR checkpoint (format checked)."""
    sidecar = _read_json(Path(directory) / SIDECAR)
    if sidecar.get("format") != FORMAT:
        raise CheckpointError(f"{Path(directory) / SIDECAR} is not an sdtt-search AR sidecar (expected \"format\": \"{FORMAT}\")")
    version = sidecar.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{Path(directory) / SIDECAR} has format_version {version!r}; this sdtt-search reads up to {FORMAT_VERSION}")
    return sidecar


def load_ar_tokenizer(directory: str | Path) -> Tokenizer:
    """The checkpoint's tokenizer with its special-token names."""
    directory = Path(directory)
    names = {**DEFAULT_NAMES, **(read_sidecar(directory).get("tokenizer") or {})}
    try:
        return Tokenizer.from_file(directory / "tokenizer.json", pad_token=names["pad"], mask_token=names["mask"],
                                   eos_token=names["eos"], unk_token=names["unk"])
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def load_ar_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> ARPretrained:
    """Load an AR twin into our ``CausalLM`` (eval mode) on ``device``; one-line errors on any mismatch."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"AR checkpoint directory {directory} does not exist")
    sidecar = read_sidecar(directory)
    try:
        config = CausalLMConfig.from_hf(_read_json(directory / "config.json"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / 'config.json'} is not a Llama config this library builds: {err}") from None
    tokenizer = load_ar_tokenizer(directory)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"tokenizer.json has {tokenizer.vocab_size} tokens but config.json says vocab_size {config.vocab_size}")
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no model.safetensors")
    try:
        state = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CheckpointError(f"{weights} is not a readable safetensors file ({err.__class__.__name__}); re-export the checkpoint") from None
    model = CausalLM(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"mis-shaped {shapes[:3]}" if shapes else ""]
        raise CheckpointError(f"{weights} does not match config.json: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)
    return ARPretrained(model=model.to(device).eval(), tokenizer=tokenizer, meta=dict(sidecar.get("meta") or {}), path=directory)
