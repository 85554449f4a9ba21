"""Dream's network written here, so a Dream checkpoint loads without its repository's code.

Dream (Ye et al. 2025) is Qwen2 with bidirectional attention: RMSNorm pre-norm blocks,
q/k/v projections with biases (o without), grouped key/value heads, rotary embeddings
(rotate-half, base ``rope_theta``), a SiLU-gated MLP, a final RMSNorm and a head
(``lm_head``, or the embedding with ``tie_word_embeddings``). It keeps the next-token head
of the AR model it started from, so the prediction of token i is read at position i - 1
(the shift; a row's first real token reads itself).

Parameter names are the hub checkpoint's (``model.embed_tokens.weight``,
``model.layers.{i}.self_attn.q_proj.weight`` / ``.bias``, ``model.layers.{i}.mlp.gate_proj``,
``model.norm.weight``, ``lm_head.weight``). ``native_reason`` names what a config asks
for that this module does not build (rotary scaling, sliding windows, another activation).
Rows may be left-padded, and ``forward_replace`` gives Fast-dLLM's approximate caches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.attention import grouped_attention, padding_layout
from ..model.llama import RMSNorm
from ..model.replace_cache import ReplaceKVCache, kept_columns, shifted_rows, span_attention_mask
from ..model.rotary import apply_rotary, rotary_tables
from .adapters import AdapterConfig


def native_reason(config: dict) -> str | None:
    """Why the Dream ``config`` (config.json) cannot be built here, or None if it can."""
    keys = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")
    if not all(isinstance(config.get(k), int) for k in keys):
        return "config.json has no Qwen2 shape (hidden_size, num_attention_heads, num_hidden_layers, ...)"
    if config.get("rope_scaling"):
        return "rope_scaling is set (this module builds plain rotary embeddings)"
    if config.get("use_sliding_window"):
        return "use_sliding_window=true"
    if str(config.get("hidden_act", "silu")).lower() != "silu":
        return f"hidden_act={config.get('hidden_act')!r} (this module builds silu)"
    heads, kv = config["num_attention_heads"], _kv_heads(config)
    if config["hidden_size"] % heads or heads % kv:
        return "hidden_size, num_attention_heads and num_key_value_heads do not divide"
    return None


def _kv_heads(config: dict) -> int:
    return int(config.get("num_key_value_heads") or config["num_attention_heads"])


class _Attention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        h, self.heads, self.kv_heads = config["hidden_size"], config["num_attention_heads"], _kv_heads(config)
        self.head_dim = int(config.get("head_dim") or h // self.heads)
        self.q_proj = nn.Linear(h, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, h, bias=False)

    def forward(self, x, rotary, mask, store=None):
        b, n, _ = x.shape
        cos, sin = rotary
        q = apply_rotary(self.q_proj(x).view(b, n, self.heads, self.head_dim), cos, sin)
        k = apply_rotary(self.k_proj(x).view(b, n, self.kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim)
        if store is not None:
            k, v = store(k, v)
        return self.o_proj(grouped_attention(q, k, v, mask).reshape(b, n, self.heads * self.head_dim))


class _MLP(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        h, m = config["hidden_size"], config["intermediate_size"]
        self.gate_proj, self.up_proj = nn.Linear(h, m, bias=False), nn.Linear(h, m, bias=False)
        self.down_proj = nn.Linear(m, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _Layer(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        eps = float(config.get("rms_norm_eps", 1e-6))
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(config["hidden_size"], eps), RMSNorm(config["hidden_size"], eps)
        self.self_attn, self.mlp = _Attention(config), _MLP(config)

    def forward(self, x, rotary, mask, store=None):
        x = x + self.self_attn(self.input_layernorm(x), rotary, mask, store)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamNetwork(nn.Module):
    """input_ids [B, L] (+ attention_mask [B, L] bool, left padding) -> logits [B, L, V]
    (fp32), already shifted: column i holds the prediction of token i. ``config`` is the
    ``AdapterConfig`` the samplers read; ``dream_config`` the config.json dict."""

    def __init__(self, dream_config: dict, mask_id: int):
        super().__init__()
        reason = native_reason(dream_config)
        if reason:
            raise ValueError(f"this Dream config cannot be built natively: {reason}")
        self.dream_config = dict(dream_config)
        h, vocab = dream_config["hidden_size"], dream_config["vocab_size"]
        self.rope_theta = float(dream_config.get("rope_theta", 10000.0))
        self.tied = bool(dream_config.get("tie_word_embeddings", False))
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, h)
        self.model.layers = nn.ModuleList(_Layer(dream_config) for _ in range(dream_config["num_hidden_layers"]))
        self.model.norm = RMSNorm(h, float(dream_config.get("rms_norm_eps", 1e-6)))
        if not self.tied:
            self.lm_head = nn.Linear(h, vocab, bias=False)
        self.head_dim = self.model.layers[0].self_attn.head_dim
        self.config = AdapterConfig(family="dream", mask_id=int(mask_id), vocab_size=vocab, shift_logits=True)

    def _hidden(self, input_ids, attention_mask, start: int, stop: int, cache: ReplaceKVCache | None):
        """Final-norm hidden states [B, stop - start, h] of columns [start, stop), and the positions [B, L]."""
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        rotary = rotary_tables(positions[:, start:stop], self.head_dim, base=self.rope_theta)
        mask = span_attention_mask(key_padding_mask)
        x = self.model.embed_tokens(input_ids[:, start:stop])
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rotary, mask, None if cache is None else (lambda k, v, i=i: cache.put(i, k, v, start)))
        return self.model.norm(x), positions

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return (F.linear(x, self.model.embed_tokens.weight) if self.tied else self.lm_head(x)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None) -> torch.Tensor:
        hidden, positions = self._hidden(input_ids, attention_mask, 0, input_ids.shape[1], None)
        logits = self._head(hidden)
        shifted = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return torch.where((positions == 0)[..., None], logits, shifted)

    supports_replace_cache = True

    def new_replace_cache(self) -> ReplaceKVCache:
        return ReplaceKVCache(len(self.model.layers))

    @torch.no_grad()
    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache: ReplaceKVCache, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """Shifted logits [B, stop - start, V] of columns [start, stop) (or of ``keep`` =
        (lo, hi) inside them): runs positions [start - 1, stop) against the other columns'
        keys and values in ``cache`` (an empty one is filled by a whole-sequence call,
        which equals ``forward``)."""
        if cache.empty and (start, stop) != (0, input_ids.shape[1]):
            raise ValueError("an empty replace cache is filled by a forward of the whole sequence first")
        lo, hi = kept_columns(start, stop, keep)
        first = max(start - 1, 0)
        hidden, positions = self._hidden(input_ids, attention_mask, first, stop, cache)
        rows = shifted_rows(positions, lo, hi, first)
        return self._head(hidden.gather(1, rows[..., None].expand(-1, -1, hidden.shape[-1])))
