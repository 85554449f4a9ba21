"""Per-family networks behind one call: ``adapter(input_ids, attention_mask=, sigma=) -> logits``.

Every adapter returns float32 logits [B, L, V] where row b, column i is the model's
prediction of the clean token at position i (what the samplers in
``sdtt_search.diffusion.samplers`` read), and carries a ``config`` with
``time_conditioning`` and ``mask_id``.

Left padding: LLaDA's released modelling code ignores the attention mask and both
LLaDA and Dream number positions from column 0, so a padded row would not give
what it gives alone. ``RemoteAdapter`` therefore never shows padding to the
network: rows with the same amount of left padding run together with the padding
columns cut off (one call per distinct prompt length; best-of-N batches are N
copies of a few prompts, so this is a few calls). A row's logits are then exactly
those of the row alone.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AdapterConfig:
    """What the samplers and loaders read off an adapter.

    Attributes:
        family: llada | dream | mdlm | sdtt.
        mask_id: the MASK token id.
        vocab_size: V, the logits' last dimension.
        time_conditioning: whether sigma(t) is used (only time-conditioned MDLM DiTs).
        shift_logits: Dream's one-position shift (see ``RemoteAdapter``).
    """

    family: str
    mask_id: int
    vocab_size: int
    time_conditioning: bool = False
    shift_logits: bool = False


def _logits_of(output) -> torch.Tensor:
    """The logits of a transformers output object, a tuple, or a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__} without logits; expected an output with .logits")
    return logits


def left_padding(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] number of leading padding columns of each row of a left-padded mask [B, L].

    A mask whose real tokens are not one contiguous block at the right is a one-line ``ValueError``.
    """
    mask = attention_mask.bool()
    length = mask.shape[1]
    starts = length - mask.sum(-1)
    expected = torch.arange(length, device=mask.device)[None, :] >= starts[:, None]
    if not torch.equal(mask, expected):
        raise ValueError("the attention mask must be left padding only (real tokens contiguous at the right); "
                         "lay the batch out with sdtt_search.diffusion.build_batch")
    return starts


class RemoteAdapter(nn.Module):
    """A transformers model (LLaDA, Dream: the repository's own code) as a denoiser.

    Args:
        network: the loaded ``PreTrainedModel``; called as ``network(input_ids=ids, **call_kwargs)``.
        config: the ``AdapterConfig``.
        call_kwargs: extra forward arguments (Dream's authors pass ``attention_mask="full"``).
    """

    def __init__(self, network: nn.Module, config: AdapterConfig, call_kwargs: dict | None = None):
        super().__init__()
        self.network = network
        self.config = config
        self.call_kwargs = dict(call_kwargs or {})

    def _unpadded_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [b, l] without padding -> float32 logits [b, l, V] for position i at column i."""
        logits = _logits_of(self.network(input_ids=input_ids, **self.call_kwargs)).float()
        if self.config.shift_logits:
            # Dream was initialised from an autoregressive LM (Qwen2.5) and kept its head:
            # the output at position i-1 scores the token at position i. Shift right by
            # one so column i holds position i's prediction; column 0 (never generated:
            # a prompt token) keeps its own output, as in Dream's generation code.
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the clean token at every position.

        Args:
            input_ids: [B, L] token ids (MASK where masked), left-padded.
            attention_mask: [B, L] bool, False on left padding (None: no padding).
            sigma: [B] diffusion noise level; ignored (these models are not time-conditioned).
        Returns:
            [B, L, V] float32; padding columns are 0.
        """
        if attention_mask is None or bool(attention_mask.all()):
            return self._unpadded_logits(input_ids)
        starts = left_padding(attention_mask)
        batch, length = input_ids.shape
        out: torch.Tensor | None = None
        for start in torch.unique(starts).tolist():
            rows = (starts == start).nonzero().squeeze(-1)
            logits = self._unpadded_logits(input_ids[rows, start:])
            if out is None:
                out = logits.new_zeros(batch, length, logits.shape[-1])
            out[rows, start:] = logits
        return out


class DenoiserAdapter(nn.Module):
    """Our ``Denoiser`` holding MDLM / SDTT weights (it handles padding and sigma itself).

    On CUDA with ``autocast_dtype`` bf16 the fp32 weights run under autocast, as
    MDLM and SDTT sample; the logits are returned in float32.
    """

    def __init__(self, denoiser: nn.Module, config: AdapterConfig, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.config = config
        self.autocast_dtype = autocast_dtype

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, L], attention_mask [B, L] bool, sigma [B] -> float32 logits [B, L, V]."""
        with self._autocast(input_ids.device.type):
            return self.denoiser(input_ids, attention_mask=attention_mask, sigma=sigma).float()

    def _autocast(self, device: str):
        """bf16 (``autocast_dtype``) autocast on CUDA, nothing elsewhere."""
        use = self.autocast_dtype is not None and self.autocast_dtype != torch.float32 and device == "cuda"
        return torch.autocast(device, dtype=self.autocast_dtype) if use else nullcontext()

    @property
    def supports_replace_cache(self) -> bool:
        """Whether the wrapped denoiser takes Fast-dLLM's approximate caches (``sampler.kv_cache``)."""
        return bool(getattr(self.denoiser, "supports_replace_cache", False))

    def new_replace_cache(self):
        return self.denoiser.new_replace_cache()

    def forward_replace(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int, stop: int,
                        cache, keep: tuple[int, int] | None = None) -> torch.Tensor:
        """The wrapped denoiser's ``forward_replace`` under the same autocast as ``forward``."""
        with self._autocast(input_ids.device.type):
            return self.denoiser.forward_replace(input_ids, attention_mask, start, stop, cache, keep).float()
