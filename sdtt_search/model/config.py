"""Denoiser hyper-parameters and the named sizes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..dataclass_dict import dataclass_from_dict

# Named sizes; configs/model/<name>.yaml hold the same values (a test checks it).
# "small" is MDLM/SDTT's DiT: 169.6M parameters with the GPT-2 vocabulary (V = 50258).
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=128, n_layers=4, n_heads=4, cond_dim=64, mlp_ratio=4, max_length=128, dropout=0.0),
    "mini": dict(hidden_size=256, n_layers=6, n_heads=4, cond_dim=128, mlp_ratio=4, max_length=128, dropout=0.0),
    "small": dict(hidden_size=768, n_layers=12, n_heads=12, cond_dim=128, mlp_ratio=4, max_length=1024, dropout=0.1),
    "medium": dict(hidden_size=1024, n_layers=24, n_heads=16, cond_dim=128, mlp_ratio=4, max_length=1024, dropout=0.1),
}

BACKENDS = ("auto", "sdpa", "xformers")
BACKBONES = ("dit", "llama")


@dataclass
class ModelConfig:
    """Shape of a ``Denoiser``.

    Attributes:
        vocab_size: V, including the special tokens (MASK among them).
        hidden_size / n_layers / n_heads: transformer width, depth, heads.
        cond_dim: width of the (time) conditioning vector fed to adaLN.
        mlp_ratio: MLP width / hidden_size.
        max_length: longest sequence the model is meant for (rotary has no hard cap).
        dropout: on the residual branches.
        time_conditioning: feed sigma(t) to adaLN (MDLM's default is off).
        causal: causal attention: the same network as an autoregressive model.
        attention_block: with ``causal``, block-causal attention (block diffusion, BD3-LM):
            generated columns also see the rest of their block of this many columns,
            counted from the first generated column; 0 = plain causal. The model then
            needs ``gen_start`` in its forward, and a block-wise sampler whose blocks are
            multiples of it keeps the exact prefix KV cache.
        attention_backend: "auto" (xformers on CUDA when installed, else SDPA), "sdpa", "xformers".
        mask_id: the MASK token id (for diffusion models).
        backbone: "dit" (MDLM's DiT, ``Denoiser``) or "llama" (``LlamaDenoiser``: the
            AR twin's Llama blocks with bidirectional attention and shifted logits, so a
            diffusion model can start from an AR checkpoint; SwiGLU width mlp_ratio x
            hidden_size; no time conditioning, cond_dim unused).
        noise_input: (causal llama only) the sampler's uniform u_j of each generated
            column j is an input at column j (``NoiseEmbedding``), so the columns after
            j, decoded in the same call, know how j is drawn (``noise-conditioned``
            students, ``distill.sdtt noise_input=true``).
    """

    vocab_size: int
    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 4
    cond_dim: int = 64
    mlp_ratio: int = 4
    max_length: int = 128
    dropout: float = 0.0
    time_conditioning: bool = False
    causal: bool = False
    attention_block: int = 0
    attention_backend: str = "auto"
    mask_id: int | None = None
    backbone: str = "dit"
    noise_input: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "n_layers", "n_heads", "cond_dim", "mlp_ratio", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name}={value!r} must be a positive integer")
        if self.hidden_size % self.n_heads:
            raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.n_heads={self.n_heads}")
        if (self.hidden_size // self.n_heads) % 2:
            raise ValueError(f"head dim {self.hidden_size // self.n_heads} must be even for rotary embeddings")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout!r} must be a number in [0, 1)")
        for name in ("time_conditioning", "causal", "noise_input"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name}={getattr(self, name)!r} must be true or false")
        if not isinstance(self.attention_block, int) or isinstance(self.attention_block, bool) or self.attention_block < 0:
            raise ValueError(f"model.attention_block={self.attention_block!r} must be an integer >= 0 (0 = off)")
        if self.attention_block and not (self.causal and self.backbone == "llama"):
            raise ValueError("model.attention_block > 0 is block-causal attention: it needs model.backbone=llama "
                             "and model.causal=true")
        if self.noise_input and not (self.causal and self.backbone == "llama" and not self.attention_block):
            raise ValueError("model.noise_input=true feeds each column's sampling noise to the columns after it: it "
                             "needs model.backbone=llama, model.causal=true and model.attention_block=0")
        if self.attention_backend not in BACKENDS:
            raise ValueError(f"model.attention_backend={self.attention_backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone={self.backbone!r} is unknown; use one of {', '.join(BACKBONES)}")
        if self.backbone == "llama" and self.time_conditioning:
            raise ValueError("model.backbone=llama has no time conditioning; set model.time_conditioning=false")
        if self.mask_id is not None and (not isinstance(self.mask_id, int) or not 0 <= self.mask_id < self.vocab_size):
            raise ValueError(f"model.mask_id={self.mask_id} is outside the vocabulary of {self.vocab_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-able values (the "model" entry of config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown or missing keys are one-line ValueErrors."""
        if not isinstance(values, dict):
            raise ValueError(f"model config must be a mapping, got {type(values).__name__}")
        if "vocab_size" not in values and set(values) <= {f.name for f in fields(cls)}:  # unknown keys are named first
            raise ValueError("model config has no vocab_size")
        return dataclass_from_dict(cls, values, label="model config key")

    @classmethod
    def from_size(cls, name: str, vocab_size: int, **overrides: Any) -> "ModelConfig":
        """A named preset of ``MODEL_SIZES`` with ``overrides`` applied (e.g. causal=True)."""
        if name not in MODEL_SIZES:
            raise ValueError(f"unknown model size {name!r}; available: {', '.join(MODEL_SIZES)}")
        return cls.from_dict({**MODEL_SIZES[name], "vocab_size": vocab_size, **overrides})
