"""The denoiser: a DiT-style bidirectional transformer (MDLM's "DIT", Sahoo et al. 2024).

Pre-LN blocks with adaLN-zero modulation from a conditioning vector, rotary
position embeddings on q and k, an untied output head. ``causal=True`` turns the
same network into an autoregressive model of the same size.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import attention, padding_layout, select_backend
from .config import ModelConfig
from .invariant import InvariantLinear, cached_attention
from .replace_cache import ReplaceKVCache, kept_columns, span_attention_mask
from .rotary import apply_rotary, rotary_tables


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, computed in fp32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., h] -> same shape and dtype; normalised in fp32 with autocast off."""
        device = x.device.type
        no_autocast = torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext()
        with no_autocast:
            return F.layer_norm(x.float(), (x.shape[-1],), self.weight.float()).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with [B, h] modulation broadcast over L."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """sigma -> 256 sinusoidal features (cos then sin) -> MLP -> cond_dim."""

    def __init__(self, cond_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(InvariantLinear(frequency_dim, cond_dim), nn.SiLU(),
                                 InvariantLinear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        """sigma [B] -> [B, cond_dim]."""
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DDiTBlock(nn.Module):
    """One adaLN-zero transformer block (Peebles & Xie 2023, DiT).

    x = x + gate1 * Dropout(Attn(modulate(LN1(x), shift1, scale1)))
    x = x + gate2 * Dropout(MLP(modulate(LN2(x), shift2, scale2)))
    with (shift1, scale1, gate1, shift2, scale2, gate2) = Linear(c), zero-initialised,
    so a fresh block is the identity.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        h = config.hidden_size
        self.n_heads = config.n_heads
        self.norm1 = LayerNorm(h)
        self.attn_qkv = InvariantLinear(h, 3 * h, bias=False)
        self.attn_out = InvariantLinear(h, h, bias=False)
        self.norm2 = LayerNorm(h)
        self.mlp = nn.Sequential(InvariantLinear(h, config.mlp_ratio * h), nn.GELU(approximate="tanh"),
                                 InvariantLinear(config.mlp_ratio * h, h))
        self.adaLN_modulation = InvariantLinear(config.cond_dim, 6 * h)
        nn.init.zeros_(self.adaLN_modulation.weight)  # adaLN-zero: the block starts as the identity
        nn.init.zeros_(self.adaLN_modulation.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        key_padding_mask: torch.Tensor | None,
        causal: bool,
        backend: str,
    ) -> torch.Tensor:
        """x [B, L, h], c [B, cond_dim], rotary (cos, sin) [B, L, 1, D],
        key_padding_mask [B, L] bool (True = real) or None -> [B, L, h]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        batch, length, h = x.shape
        qkv = self.attn_qkv(modulate(self.norm1(x), shift1, scale1)).view(batch, length, 3, self.n_heads, h // self.n_heads)
        q, k, v = qkv.unbind(dim=2)
        cos, sin = rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        a = attention(q, k, v, key_padding_mask=key_padding_mask, causal=causal, backend=backend)
        x = x + gate1[:, None] * self.dropout(self.attn_out(a.reshape(batch, length, h)))
        x = x + gate2[:, None] * self.dropout(self.mlp(modulate(self.norm2(x), shift2, scale2)))
        return x

    def forward_replace(self, x: torch.Tensor, c: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], store,
                        attend) -> torch.Tensor:
        """The block on a span x [B, Q, h] whose keys and values ``store(k, v)`` writes
        into a cache of the whole sequence, returning every column's [B, L, H, D];
        ``attend(q, k, v)``: the span's attention over them (``cached_attention``) -> [B, Q, h]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        batch, length, h = x.shape
        qkv = self.attn_qkv(modulate(self.norm1(x), shift1, scale1)).view(batch, length, 3, self.n_heads, h // self.n_heads)
        q, k, v = qkv.unbind(dim=2)
        cos, sin = rotary
        keys, values = store(apply_rotary(k, cos, sin), v)
        a = attend(apply_rotary(q, cos, sin).transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2))
        a = a.transpose(1, 2)
        x = x + gate1[:, None] * self.attn_out(a.reshape(batch, length, h))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN-modulated LN and the (zero-initialised) output projection to V logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h = config.hidden_size
        self.norm_final = LayerNorm(h)
        self.linear = InvariantLinear(h, config.vocab_size)
        self.adaLN_modulation = InvariantLinear(config.cond_dim, 2 * h)
        for layer in (self.linear, self.adaLN_modulation):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x [B, L, h], c [B, cond_dim] -> logits [B, L, V]."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class EmbeddingTable(nn.Module):
    """A [V, h] parameter looked up by index (MDLM's ``vocab_embed.embedding`` key)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class Denoiser(nn.Module):
    """MDLM's DiT: input_ids [B, L] (+ attention_mask [B, L], sigma [B]) -> logits [B, L, V] (fp32).

    State-dict keys follow MDLM's ``DIT`` so released weights can be
    mapped in: vocab_embed.embedding, sigma_map.mlp.{0,2}.*, blocks.{i}.{norm1,
    attn_qkv, attn_out, norm2, mlp.{0,2}, adaLN_modulation}.*, output_layer.{norm_final,
    linear, adaLN_modulation}.*. (MDLM's ``rotary_emb.inv_freq`` buffer is not stored:
    the rotary tables are computed from positions on the fly.)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False  # training memory for compute: see forward
        self.vocab_embed = EmbeddingTable(config.vocab_size, config.hidden_size)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.blocks = nn.ModuleList(DDiTBlock(config) for _ in range(config.n_layers))
        self.output_layer = FinalLayer(config)

    @property
    def num_parameters(self) -> int:
        """Total number of parameters (the V x h embedding and head included)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the clean token at every position.

        Args:
            input_ids: [B, L] token ids (MASK where masked).
            attention_mask: [B, L] bool, False on padding; positions count from the
                first real token, so left padding leaves a row's output unchanged.
            sigma: [B] total noise sigma(t); required with ``time_conditioning``,
                otherwise ignored (replaced by zeros, as MDLM does).
        Returns:
            [B, L, V] float32 logits.
        """
        batch = input_ids.shape[0]
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        if not self.config.time_conditioning:
            sigma = torch.zeros(batch, device=input_ids.device)  # MDLM zeroes sigma
        elif sigma is None:
            raise ValueError("this model is time-conditioned (time_conditioning=True): pass sigma [B]")
        else:
            sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma.reshape(batch)
        c = F.silu(self.sigma_map(sigma))
        x = self.vocab_embed(input_ids)
        rotary = rotary_tables(positions, self.config.head_dim)
        backend = select_backend(self.config.attention_backend, input_ids.device)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # Recompute the block in the backward pass instead of storing its activations.
                x = checkpoint(block, x, c, rotary, key_padding_mask, self.config.causal, backend, use_reentrant=False)
            else:
                x = block(x, c, rotary, key_padding_mask, self.config.causal, backend)
        return self.output_layer(x, c).float()

    @property
    def supports_replace_cache(self) -> bool:
        """Fast-dLLM's approximate caches (``forward_replace``) apply to a bidirectional
        DiT whose conditioning does not change between steps (no time conditioning)."""
        return not self.config.causal and not self.config.time_conditioning

    def new_replace_cache(self) -> ReplaceKVCache:
        return ReplaceKVCache(len(self.blocks))

    @torch.no_grad()
    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache: ReplaceKVCache, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits [B, stop - start, V] of columns [start, stop), attending to the keys and
        values of the other columns held in ``cache`` (``sdtt_search.model.replace_cache``);
        an empty cache is filled by a whole-sequence call (start 0, stop L), which equals
        ``forward``. The span's keys and values replace theirs in the cache. ``keep`` =
        (lo, hi): return only those columns' logits (the output layer runs on them alone)."""
        if not self.supports_replace_cache:
            raise ValueError("forward_replace needs a bidirectional DiT without time conditioning")
        if cache.empty and (start, stop) != (0, input_ids.shape[1]):
            raise ValueError("an empty replace cache is filled by a forward of the whole sequence first")
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        c = F.silu(self.sigma_map(torch.zeros(input_ids.shape[0], device=input_ids.device)))
        rotary = rotary_tables(positions[:, start:stop], self.config.head_dim)
        attend = cached_attention(span_attention_mask(key_padding_mask), key_padding_mask,
                                  torch.arange(start, stop, device=input_ids.device))
        x = self.vocab_embed(input_ids[:, start:stop])
        for i, block in enumerate(self.blocks):
            x = block.forward_replace(x, c, rotary, lambda k, v, i=i: cache.put(i, k, v, start), attend)
        lo, hi = kept_columns(start, stop, keep)
        return self.output_layer(x[:, lo - start : hi - start], c).float()
