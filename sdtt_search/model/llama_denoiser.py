"""A masked-diffusion denoiser on Llama blocks, so it can start from an AR twin.

Adapting an autoregressive model into a diffusion model (DiffuLLaMA, Gong et al.
2024; Dream 7B, Ye et al. 2025) keeps the AR weights and changes two things:
attention becomes bidirectional, and the logits are *shifted*: the prediction for
position i is read from the hidden state at i - 1, which is where the AR model
already predicts token i. The MDLM loss and samplers see ordinary per-position
logits [B, L, V]; the shift is internal.

Parameter names are ``CausalLM``'s (Hugging Face Llama names), so an AR twin's state
dict loads unchanged: ``distill.pretrain model.backbone=llama init_from=<AR dir>``.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .config import ModelConfig
from .attention import padding_layout
from .invariant import InvariantLinear
from .llama import CausalLM, CausalLMConfig, KVCache, LlamaBody
from .replace_cache import ReplaceKVCache, kept_columns, shifted_rows
from .noise import NoiseEmbedding


def llama_shape(config: ModelConfig) -> CausalLMConfig:
    """The ``CausalLMConfig`` whose blocks a ``LlamaDenoiser`` of ``config`` uses."""
    return CausalLMConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size, n_layers=config.n_layers,
                          n_heads=config.n_heads, intermediate_size=config.mlp_ratio * config.hidden_size,
                          max_length=config.max_length, dropout=config.dropout,
                          attention_backend=config.attention_backend)


class LlamaDenoiser(nn.Module):
    """input_ids [B, L] (+ attention_mask [B, L]) -> logits of the clean token [B, L, V] (fp32).

    ``sigma`` is accepted and ignored (no time conditioning, like MDLM's default).
    A row's first real token has no left neighbour and reads its own hidden state; the
    generated span always follows at least one prompt (or BOS) token in this library.
    ``config.causal=True`` keeps causal attention: then the logits at i + 1 equal the
    AR model's at i (tested), which pins the shift and the weight mapping.
    ``config.attention_block=B`` (with causal) makes it block-causal: the generated
    region, from column ``gen_start`` (a forward argument then), is cut into blocks of
    B columns that see each other; the hidden state that predicts a block's first
    column is the previous block's last, as in the causal model.
    ``config.noise_input=True`` (causal only) adds ``noise_embed`` and a ``noise``
    [B, L] forward argument: the uniform with which column j is (or was) drawn enters
    at column j, so hidden j, which predicts column j + 1, knows how j is drawn.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.backbone != "llama":
            raise ValueError(f"LlamaDenoiser needs model.backbone=llama, got {config.backbone!r}")
        self.config = config
        self.gradient_checkpointing = False
        shape = llama_shape(config)
        self.model = LlamaBody(shape)
        self.lm_head = InvariantLinear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(CausalLM._init)
        if config.noise_input:
            self.noise_embed = NoiseEmbedding(config.hidden_size)

    def enable_noise_input(self) -> "LlamaDenoiser":
        """Give this causal denoiser the noise input (zero-initialised: the same logits
        as before until trained); returns self."""
        if not self.config.noise_input:
            self.config = replace(self.config, noise_input=True)  # validates: causal llama only
            weight = self.lm_head.weight
            self.noise_embed = NoiseEmbedding(self.config.hidden_size).to(device=weight.device, dtype=weight.dtype)
        return self

    def _offset(self, noise: torch.Tensor | None) -> torch.Tensor | None:
        if noise is None or not self.config.noise_input:
            return None
        return self.noise_embed(noise)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _block(self, gen_start: int | None) -> tuple[int, int] | None:
        """(gen_start, block) for a block-causal model, None otherwise."""
        if not self.config.attention_block:
            return None
        if gen_start is None:
            raise ValueError("a block-causal denoiser (model.attention_block > 0) needs gen_start, the first "
                             "generated column, in its forward (the samplers and distill losses pass it)")
        return int(gen_start), int(self.config.attention_block)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None, gen_start: int | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        hidden, positions = self.model(input_ids, attention_mask, causal=self.config.causal, checkpointing=checkpointing,
                                       block=self._block(gen_start), input_offset=self._offset(noise))
        logits = self.lm_head(hidden).float()
        # The shift: position i is predicted from hidden state i - 1; a row's first real
        # token (position 0 after any left padding) has no left neighbour and reads itself.
        shifted = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return torch.where((positions == 0)[..., None], logits, shifted)

    @property
    def supports_prefix_cache(self) -> bool:
        """Causal attention: a clean prefix's keys and values never change, so a
        block-wise sampler can cache them exactly (``forward_span``)."""
        return bool(self.config.causal)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.model.layers))

    @torch.no_grad()
    def forward_span(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int,
                     cache: KVCache, gen_start: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, stop - start, V] for columns [start + 1, stop] (hidden i predicts
        column i + 1: the shift) from columns [start, stop) after the cached [0, start);
        the span's keys and values are written after the cache, ``cache.extend(n)`` keeps
        the first n of them. Causal models only: equal
        to ``forward``'s logits at those columns (block-causal ones: when ``stop`` ends
        a block or the sequence, else the span misses keys its block would see).
        ``noise``: [B, L] for the whole batch, as ``forward``'s."""
        if not self.config.causal:
            raise ValueError("forward_span needs a causal denoiser (model.causal=true): a bidirectional "
                             "model's prefix changes with every new token")
        offset = self._offset(None if noise is None else noise[:, start:stop])
        hidden = self.model.forward_cached(input_ids, attention_mask, start, stop, cache, block=self._block(gen_start),
                                           input_offset=offset)
        return self.lm_head(hidden).float()

    @property
    def supports_replace_cache(self) -> bool:
        """Bidirectional attention: Fast-dLLM's approximate caches apply
        (``forward_replace``); causal models have the exact prefix cache instead."""
        return not self.config.causal

    def new_replace_cache(self) -> ReplaceKVCache:
        return ReplaceKVCache(len(self.model.layers))

    @torch.no_grad()
    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache: ReplaceKVCache, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits [B, stop - start, V] of columns [start, stop) with the keys and values
        of the other columns read from ``cache`` (``sdtt_search.model.replace_cache``;
        an empty cache is filled by a whole-sequence call, start 0 and stop L, which
        equals ``forward``). Column j is predicted from hidden j - 1 (the shift), so the
        call runs hidden columns [start - 1, stop): every column of the span is run, its
        keys and values replaced. ``keep`` = (lo, hi): return only those columns' logits
        [B, hi - lo, V] (the head runs on them alone)."""
        if not self.supports_replace_cache:
            raise ValueError("forward_replace is for bidirectional denoisers; a causal one has the exact prefix "
                             "cache (forward_span)")
        lo, hi = kept_columns(start, stop, keep)
        first = max(start - 1, 0)
        hidden = self.model.forward_replace(input_ids, attention_mask, first, stop, cache)  # columns [first, stop)
        rows = shifted_rows(padding_layout(input_ids, attention_mask)[0], lo, hi, first)
        return self.lm_head(hidden.gather(1, rows[..., None].expand(-1, -1, hidden.shape[-1]))).float()


def causal_denoiser_from(ar: CausalLM, mask_id: int) -> LlamaDenoiser:
    """The AR model ``ar`` as a causal denoiser with the same weights.

    With causal attention the shifted logits at i + 1 are the AR model's at i, so
    decoding blocks of one token left to right is the AR model's own sampler; a
    masked position reads whatever the (untrained) MASK embedding gives until it is
    trained (e.g. as the teacher of block-wise SDTT, whose students start here).
    """
    c = ar.config
    if not 0 <= mask_id < c.vocab_size:
        raise ValueError(f"mask id {mask_id} is outside the AR model's vocabulary of {c.vocab_size}: "
                         "train the AR twin with the diffusion twin's tokenizer (tokenizer_from=...)")
    config = ModelConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, n_layers=c.n_layers, n_heads=c.n_heads,
                         mlp_ratio=c.intermediate_size // c.hidden_size, max_length=c.max_length, dropout=c.dropout,
                         attention_backend=c.attention_backend, backbone="llama", causal=True, mask_id=mask_id)
    if llama_shape(config) != c:
        raise ValueError("this AR model's MLP width, rotary base or norm epsilon has no LlamaDenoiser equivalent")
    model = LlamaDenoiser(config)
    model.load_state_dict(ar.state_dict())
    return model.to(next(ar.parameters()).device)


def build_denoiser(config: ModelConfig) -> nn.Module:
    """The denoiser network of ``config.backbone``: ``Denoiser`` (DiT) or ``LlamaDenoiser``."""
    if config.backbone == "llama":
        return LlamaDenoiser(config)
    from .dit import Denoiser

    return Denoiser(config)
