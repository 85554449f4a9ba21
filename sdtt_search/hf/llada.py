"""LLaDA's network written here, so a LLaDA checkpoint loads without its repository's code.

LLaDA (Nie et al. 2025) is a bidirectional Llama: each block is
x += attn_out(Attn(RoPE q_proj(n), RoPE k_proj(n), v_proj(n))) with n = RMSNorm(x), then
x += ff_out(silu(ff_proj(m)) * up_proj(m)) with m = RMSNorm(x); a final RMSNorm and an
untied head (``ff_out``, or the embedding when ``weight_tying``). Attention is full (no
causal mask), rotary embeddings are rotate-half with base ``rope_theta``, and the
logits of position i are the prediction of token i (no shift).

Parameter names are the hub checkpoint's (``model.transformer.wte.weight``,
``model.transformer.blocks.{i}.q_proj.weight``, ..., ``model.transformer.ln_f.weight``,
``model.transformer.ff_out.weight``), so its safetensors shards load as they are.
Written from the published configuration fields (``d_model``, ``n_heads``, ``n_kv_heads``,
``n_layers``, ``mlp_hidden_size``, ``rope_theta``, ``rms_norm_eps``, ``block_type``,
...); ``native_reason`` names what a config asks for that this module does not build.

Unlike the released code, rows may be left-padded (positions count from each row's
first real token and padding keys are hidden), and ``forward_replace`` gives
Fast-dLLM's approximate caches (``sampler.kv_cache``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.attention import grouped_attention, padding_layout
from ..model.llama import RMSNorm
from ..model.replace_cache import ReplaceKVCache, kept_columns, span_attention_mask
from ..model.rotary import apply_rotary, rotary_tables
from .adapters import AdapterConfig

#: config values this module builds (others are named by ``native_reason``)
_REQUIRED = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu"}


def native_reason(config: dict) -> str | None:
    """Why the LLaDA ``config`` (config.json) cannot be built here, or None if it can."""
    if not all(isinstance(config.get(k), int) for k in ("d_model", "n_heads", "n_layers")):
        return "config.json has no LLaDA shape (d_model, n_heads, n_layers)"
    for key, value in _REQUIRED.items():
        if str(config.get(key)).lower() != value:
            return f"{key}={config.get(key)!r} (this module builds {key}={value!r})"
    for key in ("alibi", "attention_layer_norm", "multi_query_attention"):
        if config.get(key):
            return f"{key}=true"
    if not config.get("rope", False):
        return "rope=false (this module builds rotary embeddings)"
    if config.get("clip_qkv") is not None:
        return "clip_qkv is set"
    if config["d_model"] % config["n_heads"] or config["n_heads"] % _kv_heads(config):
        return "d_model, n_heads and n_kv_heads do not divide"
    return None


def _kv_heads(config: dict) -> int:
    return int(config.get("n_kv_heads") or config["n_heads"])


class _RMSNorm(RMSNorm):
    """Llama's RMSNorm plus LLaDA's optional bias (its RMSLayerNorm); the bias rule of
    config.json (``bias_for_layer_norm``, else ``include_bias``) decides."""

    def __init__(self, config: dict):
        super().__init__(config["d_model"], float(config.get("rms_norm_eps", 1e-5)))
        bias = config.get("bias_for_layer_norm")
        bias = bool(config.get("include_bias")) if bias is None else bool(bias)
        self.bias = nn.Parameter(torch.zeros(config["d_model"])) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return x + self.bias if self.bias is not None else x


class _Block(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        d, heads, kv = config["d_model"], config["n_heads"], _kv_heads(config)
        head_dim, hidden = d // heads, int(config.get("mlp_hidden_size") or config.get("mlp_ratio", 4) * d)
        bias, qkv_bias = bool(config.get("include_bias")), bool(config.get("include_bias") or config.get("include_qkv_bias"))
        self.heads, self.kv_heads, self.head_dim = heads, kv, head_dim
        self.attn_norm, self.ff_norm = _RMSNorm(config), _RMSNorm(config)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv * head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=bias)
        self.ff_proj = nn.Linear(d, hidden, bias=bias)
        self.up_proj = nn.Linear(d, hidden, bias=bias)
        self.ff_out = nn.Linear(hidden, d, bias=bias)

    def forward(self, x: torch.Tensor, rotary, mask: torch.Tensor | None, store=None) -> torch.Tensor:
        """x [B, Q, d] -> [B, Q, d]. ``store(k, v)`` (a replace cache) returns the keys and
        values of every column [B, K, kv_heads, D] with the span's in them; None: the
        span is the whole sequence. ``mask`` [B, 1, 1, K] (True = real key) or None."""
        b, q_len, d = x.shape
        n = self.attn_norm(x)
        cos, sin = rotary
        q = apply_rotary(self.q_proj(n).view(b, q_len, self.heads, self.head_dim), cos, sin)
        k = apply_rotary(self.k_proj(n).view(b, q_len, self.kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(n).view(b, q_len, self.kv_heads, self.head_dim)
        if store is not None:
            k, v = store(k, v)
        x = x + self.attn_out(grouped_attention(q, k, v, mask).reshape(b, q_len, d))
        m = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(m)) * self.up_proj(m))


class LLaDANetwork(nn.Module):
    """input_ids [B, L] (+ attention_mask [B, L] bool, left padding) -> logits [B, L, V] (fp32).

    ``sigma`` is accepted and ignored (LLaDA has no time conditioning). ``config`` is
    the ``AdapterConfig`` the samplers read; ``llada_config`` the config.json dict.
    """

    def __init__(self, llada_config: dict, mask_id: int):
        super().__init__()
        reason = native_reason(llada_config)
        if reason:
            raise ValueError(f"this LLaDA config cannot be built natively: {reason}")
        self.llada_config = dict(llada_config)
        d = llada_config["d_model"]
        vocab = int(llada_config.get("embedding_size") or llada_config["vocab_size"])
        self.tied = bool(llada_config.get("weight_tying", False))
        self.rope_theta = float(llada_config.get("rope_theta", 10000.0))
        self.input_emb_norm = bool(llada_config.get("input_emb_norm", False))
        self.scale_logits = bool(llada_config.get("scale_logits", False))
        self.head_dim = d // llada_config["n_heads"]
        self.model = nn.Module()
        parts = {"wte": nn.Embedding(vocab, d), "blocks": nn.ModuleList(_Block(llada_config) for _ in range(llada_config["n_layers"])),
                 "ln_f": _RMSNorm(llada_config)}
        if not self.tied:
            parts["ff_out"] = nn.Linear(d, vocab, bias=bool(llada_config.get("include_bias")))
        self.model.transformer = nn.ModuleDict(parts)
        self.config = AdapterConfig(family="llada", mask_id=int(mask_id), vocab_size=vocab)

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.model.transformer.wte(input_ids)
        return x * self.llada_config["d_model"] ** 0.5 if self.input_emb_norm else x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        t = self.model.transformer
        x = t.ln_f(x)
        logits = F.linear(x, t.wte.weight) if self.tied else t.ff_out(x)
        if self.scale_logits:
            logits = logits / self.llada_config["d_model"] ** 0.5
        return logits.float()

    def _run(self, input_ids, attention_mask, start: int, stop: int, cache: ReplaceKVCache | None,
             keep: tuple[int, int] | None = None) -> torch.Tensor:
        positions, key_padding_mask = padding_layout(input_ids, attention_mask)
        rotary = rotary_tables(positions[:, start:stop], self.head_dim, base=self.rope_theta)
        mask = span_attention_mask(key_padding_mask)
        x = self._embed(input_ids[:, start:stop])
        for i, block in enumerate(self.model.transformer.blocks):
            store = None if cache is None else (lambda k, v, i=i: cache.put(i, k, v, start))
            x = block(x, rotary, mask, store)
        lo, hi = kept_columns(start, stop, keep)
        return self._logits(x[:, lo - start : hi - start])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(input_ids, attention_mask, 0, input_ids.shape[1], None)

    supports_replace_cache = True

    def new_replace_cache(self) -> ReplaceKVCache:
        return ReplaceKVCache(len(self.model.transformer.blocks))

    @torch.no_grad()
    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache: ReplaceKVCache, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits [B, stop - start, V] of columns [start, stop) (or [B, hi - lo, V] of
        ``keep`` = (lo, hi) inside them) against the other columns' keys and values in
        ``cache`` (an empty one is filled by a whole-sequence call, which equals
        ``forward``); see ``sdtt_search.model.replace_cache``."""
        if cache.empty and (start, stop) != (0, input_ids.shape[1]):
            raise ValueError("an empty replace cache is filled by a forward of the whole sequence first")
        return self._run(input_ids, attention_mask, start, stop, cache, keep)
