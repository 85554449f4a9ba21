"""The autoregressive twin: a small Llama-architecture causal LM.

RMSNorm pre-norm blocks, rotary q/k (rotate-half, as Llama), SwiGLU MLP, no biases,
an untied head. Parameter names are exactly Hugging Face ``LlamaForCausalLM``'s
(``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.q_proj.weight``, ...,
``lm_head.weight``), so a checkpoint saved from this module loads unchanged in
``transformers`` and vLLM (``sdtt_search.ar.checkpoint``). Training uses this module
(SDPA, or xformers on CUDA, like the denoiser); generation with a KV cache is left to
those engines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..dataclass_dict import dataclass_from_dict
from .attention import attention, block_causal_mask, padding_layout, select_backend
from .invariant import InvariantLinear, cached_attention
from .replace_cache import ReplaceKVCache, span_attention_mask
from .rotary import apply_rotary, rotary_tables


@dataclass
class CausalLMConfig:
    """Shape of a ``CausalLM`` (a subset of HF ``LlamaConfig``, same meaning).

    Attributes:
        vocab_size: V; hidden_size / n_layers / n_heads: width, depth, heads (head dim
        >= 32 keeps vLLM's CPU attention happy); intermediate_size: SwiGLU width;
        max_length: max_position_embeddings; rope_theta: rotary base;
        rms_norm_eps: RMSNorm epsilon; dropout: on the residual branches (training only);
        attention_backend: "auto" | "sdpa" | "xformers".
    """

    vocab_size: int
    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 4
    intermediate_size: int = 512
    max_length: int = 128
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    dropout: float = 0.0
    attention_backend: str = "auto"

    # Read by code shared with the diffusion denoiser.
    causal = True
    time_conditioning = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "n_layers", "n_heads", "intermediate_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name}={value!r} must be a positive integer")
        if self.hidden_size % self.n_heads or (self.hidden_size // self.n_heads) % 2:
            raise ValueError(f"model.hidden_size={self.hidden_size} must split into {self.n_heads} heads of even size")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"model.dropout={self.dropout!r} must be a number in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CausalLMConfig":
        """Inverse of ``to_dict``; an unknown key is a one-line ValueError naming the known ones."""
        return dataclass_from_dict(cls, values, label="causal LM config key")

    def to_hf(self, *, bos_id: int | None, eos_id: int, pad_id: int) -> dict[str, Any]:
        """The equivalent Hugging Face ``LlamaConfig`` as a config.json dict."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_length,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "torch_dtype": "float32",
            "use_cache": True,
        }

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "CausalLMConfig":
        """Inverse of ``to_hf`` for the Llama configs this module can represent."""
        if hf.get("model_type") != "llama":
            raise ValueError(f"config.json has model_type {hf.get('model_type')!r}, expected 'llama'")
        kv = hf.get("num_key_value_heads", hf["num_attention_heads"])
        if kv != hf["num_attention_heads"] or hf.get("tie_word_embeddings") or hf.get("attention_bias") or hf.get("mlp_bias"):
            raise ValueError("config.json is a Llama variant this module does not build (grouped KV heads, tied "
                             "embeddings or biases); load it with transformers instead")
        theta = (hf.get("rope_parameters") or {}).get("rope_theta", hf.get("rope_theta", 10000.0))
        return cls(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                   n_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
                   max_length=hf["max_position_embeddings"], rope_theta=float(theta),
                   rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)))


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 (Llama's LlamaRMSNorm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, config: CausalLMConfig):
        super().__init__()
        h = config.hidden_size
        self.n_heads = config.n_heads
        self.q_proj = InvariantLinear(h, h, bias=False)
        self.k_proj = InvariantLinear(h, h, bias=False)
        self.v_proj = InvariantLinear(h, h, bias=False)
        self.o_proj = InvariantLinear(h, h, bias=False)

    def _qkv(self, x: torch.Tensor, rotary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [B, L, H, D] of x [B, L, h], q and k rotated."""
        batch, length, h = x.shape
        shape = (batch, length, self.n_heads, h // self.n_heads)
        q, k, v = self.q_proj(x).view(shape), self.k_proj(x).view(shape), self.v_proj(x).view(shape)
        cos, sin = rotary
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x: torch.Tensor, rotary, key_padding_mask: torch.Tensor | None, backend: str,
                causal: bool = True, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, h] -> [B, L, h]; causal attention unless ``causal=False`` (the
        bidirectional denoiser built from these weights) or an ``allowed`` [L, L] pattern."""
        q, k, v = self._qkv(x, rotary)
        a = attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, backend=backend, allowed=allowed)
        return self.o_proj(a.reshape(x.shape))

    def forward_cached(self, x: torch.Tensor, rotary, store, attend) -> torch.Tensor:
        """x [B, Q, h] of Q new columns -> output [B, Q, h]. ``store(k, v)`` keeps the
        new columns' (k, v) [B, Q, H, D] and returns every key and value [B, K, H, D]
        (the cached ones with them); ``attend(q, k, v)``: the attention of the new
        queries [B, H, Q, D] over them ([B, H, K, D]; ``cached_attention``)."""
        q, k, v = self._qkv(x, rotary)
        keys, values = store(k, v)
        a = attend(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2))
        return self.o_proj(a.transpose(1, 2).reshape(x.shape))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.gate_proj = InvariantLinear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = InvariantLinear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = InvariantLinear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = SelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, rotary, key_padding_mask, backend, causal: bool = True, allowed=None):
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rotary, key_padding_mask, backend, causal, allowed))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))

    def forward_cached(self, x, rotary, store, attend):
        x = x + self.dropout(self.self_attn.forward_cached(self.input_layernorm(x), rotary, store, attend))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class KVCache:
    """Keys and values of a batch's first ``length`` columns (rotated keys): the clean
    prefix a causal model never revises. Per layer one preallocated pair of buffers
    [B, capacity, H, D]: a forward writes its span's keys and values after the cached
    ones (``store``), and ``extend(count)`` keeps the first ``count`` of them; nothing
    is copied as the cache grows."""

    def __init__(self, n_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
        self.length = 0
        self._written = 0  # columns [0, _written) of the buffers hold keys and values

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write a span's k, v [B, Q, H, D] at columns [length, length + Q) of ``layer``'s
        buffers (made ``width`` columns long, the sequence's, on first use; zeros where
        nothing is written, so a masked key is never NaN); returns the buffers' first
        ``width`` columns, [B, width, H, D] each: a query always sees the row's whole width
        of keys, those not yet written masked (``LlamaBody.forward_cached``)."""
        start, stop = self.length, self.length + k.shape[1]
        buffers = self.layers[layer]
        if buffers is None or buffers[0].shape[1] < max(stop, width):
            grown = tuple(t.new_zeros(t.shape[0], max(width, stop), *t.shape[2:]) for t in (k, v))
            if buffers is not None:
                for new, old in zip(grown, buffers):
                    new[:, :start] = old[:, :start]
            self.layers[layer] = buffers = grown
        buffers[0][:, start:stop] = k
        buffers[1][:, start:stop] = v
        self._written = stop
        return buffers[0][:, :width], buffers[1][:, :width]

    def extend(self, count: int) -> None:
        """Keep the first ``count`` columns of the span the last forward wrote."""
        if self.length + count > self._written:
            raise ValueError(f"cannot keep {count} columns: the last forward wrote {self._written - self.length}")
        self.length += count

    def take_rows(self, index: torch.Tensor) -> None:
        """Keep the cached columns of rows ``index`` [R] (a LongTensor into the batch, in
        that order, repeats allowed): drops rows that need no more calls, or copies a
        prompt computed once to the rows that share it. A span written but not kept is
        discarded."""
        for i, buffers in enumerate(self.layers):
            if buffers is not None:
                self.layers[i] = tuple(t.new_zeros(index.numel(), *t.shape[1:]) for t in buffers)
                for new, old in zip(self.layers[i], buffers):
                    new[:, : self.length] = old[index, : self.length]
        self._written = self.length

    def select(self, index: torch.Tensor, length: int) -> "KVCache":
        """A new cache of rows ``index`` [R] holding their first ``length`` written
        columns (cached or written by the last forward): a span can then run for those
        rows only, after columns the last forward wrote but this cache does not keep."""
        if length > self._written:
            raise ValueError(f"cannot select {length} columns: {self._written} are written")
        out = KVCache(len(self.layers))
        out.layers = [None if b is None else tuple(t[index] for t in b) for b in self.layers]
        out.length = out._written = length
        return out


class LlamaBody(nn.Module):
    """Holds the ``model.*`` parameters (embeddings, layers, final norm)."""

    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                causal: bool = True, checkpointing: bool = False,
                block: tuple[int, int] | None = None,
                input_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final-norm hidden states [B, L, h] and the row positions [B, L] (counted from
        each row's first real token). ``checkpointing`` recomputes each layer in backward.
        ``block=(gen_start, size)``: block-causal attention (``block_causal_mask``).
        ``input_offset`` [B, L, h]: added to the token embeddings (the noise input)."""
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        allowed = None if block is None else block_causal_mask(input_ids.shape[1], *block, device=input_ids.device)
        rotary = rotary_tables(positions, self.config.head_dim, base=self.config.rope_theta)
        backend = select_backend(self.config.attention_backend, input_ids.device)
        x = self.embed_tokens(input_ids)
        if input_offset is not None:
            x = x + input_offset
        for layer in self.layers:
            if checkpointing:
                x = checkpoint(layer, x, rotary, key_padding_mask, backend, causal, allowed, use_reentrant=False)
            else:
                x = layer(x, rotary, key_padding_mask, backend, causal, allowed)
        return self.norm(x), positions

    def forward_cached(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int,
                       cache: KVCache, block: tuple[int, int] | None = None,
                       input_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Causal (or, with ``block``, block-causal) forward of columns [start, stop) of a
        batch whose columns [0, start) are in ``cache`` (``cache.length == start``).

        Args:
            input_ids, attention_mask: [B, L] the whole batch (positions and key padding
                are read from it, so results equal ``forward``'s on the same columns).
            input_offset: [B, stop - start, h] added to the span's embeddings.
        Returns:
            final-norm hidden states [B, stop - start, h]. The new columns' keys and
            values are written after the cached ones but not kept: the caller keeps the
            clean ones with ``cache.extend``.

        Batch invariance (``sdtt_search.model.invariant``): a sampler chooses the span
        from the whole batch, so the same column is run in spans of different sizes. Its
        queries always attend to the row's whole width of keys (the columns from ``stop``
        on masked), in whole tiles of queries (``invariant_sdpa``), so a column's bits
        are the same whatever span the other rows made the sampler run.
        """
        if cache.length != start:
            raise ValueError(f"the cache holds {cache.length} columns, the span starts at {start}")
        length = input_ids.shape[1]
        real = attention_mask.bool()
        positions = padding_layout(input_ids, real)[0][:, start:stop]
        rotary = rotary_tables(positions, self.config.head_dim, base=self.config.rope_theta)
        cols = torch.arange(length, device=input_ids.device)
        if block is None:
            pattern = cols[None, :] <= cols[start:stop, None]  # [Q, L]
        else:
            pattern = block_causal_mask(length, *block, device=input_ids.device)[start:stop]
        pattern = pattern & (cols[None, :] < stop)
        # Padding keys are hidden; a query always sees itself (a padding row stays finite).
        allowed = (pattern[None] & real[:, None, :]) | (cols[None, :] == cols[start:stop, None])[None]
        attend = cached_attention(allowed[:, None], real, cols[start:stop])
        x = self.embed_tokens(input_ids[:, start:stop])
        if input_offset is not None:
            x = x + input_offset
        for i, layer in enumerate(self.layers):
            x = layer.forward_cached(x, rotary, lambda k, v, i=i: cache.store(i, k, v, length), attend)
        return self.norm(x)

    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache: ReplaceKVCache) -> torch.Tensor:
        """Bidirectional forward of columns [start, stop) against the keys and values
        of every other column held in ``cache`` (Fast-dLLM's approximate cache); an
        empty cache needs the whole sequence (start 0, stop L) and is filled by it.

        Args:
            input_ids, attention_mask: [B, L] the whole batch (positions and key padding
                are read from it).
        Returns:
            final-norm hidden states [B, stop - start, h]; the span's keys and values
            replace theirs in ``cache``.
        """
        if cache.empty and (start, stop) != (0, input_ids.shape[1]):
            raise ValueError("an empty replace cache is filled by a forward of the whole sequence first")
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        rotary = rotary_tables(positions[:, start:stop], self.config.head_dim, base=self.config.rope_theta)
        attend = cached_attention(span_attention_mask(key_padding_mask), key_padding_mask,
                                  torch.arange(start, stop, device=input_ids.device))
        x = self.embed_tokens(input_ids[:, start:stop])
        for i, layer in enumerate(self.layers):
            x = layer.forward_cached(x, rotary, lambda k, v, i=i: cache.put(i, k, v, start), attend)
        return self.norm(x)


class CausalLM(nn.Module):
    """input_ids [B, L] (+ attention_mask [B, L]) -> next-token logits [B, L, V] (fp32).

    Positions count from each row's first real token, so left padding leaves a row's
    logits unchanged (the convention of ``transformers`` generate and of vLLM, which
    never pads). ``sigma`` is accepted and ignored, so losses written for the
    denoiser's signature work unchanged.
    """

    def __init__(self, config: CausalLMConfig):
        super().__init__()
        self.config = config
        self.model = LlamaBody(config)
        self.lm_head = InvariantLinear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # Llama's initializer_range 0.02 for every matrix.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None) -> torch.Tensor:
        hidden, _ = self.model(input_ids, attention_mask)
        return self.lm_head(hidden).float()
