"""SUBS parameterisation of the denoiser output (MDLM §3.2.3)."""
from __future__ import annotations

import torch

# MDLM uses a large finite negative number rather than -inf so that downstream
# sums (e.g. 0 * log p) stay finite.
NEG_INF = -1e6


def subs_log_probs(logits: torch.Tensor, z: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Turn raw logits into SUBS log-probabilities of the clean token.

    1. zero masking probability: the MASK logit gets ``NEG_INF``;
    2. normalise with log-softmax (in float32 at least);
    3. carry-over unmasking: where ``z`` is not MASK, the row is a one-hot of ``z``
       (log-prob 0 at the observed token, ``NEG_INF`` elsewhere).

    Args:
        logits: [B, L, V] raw network output.
        z: [B, L] noisy tokens the network was given.
        mask_id: index of the MASK token in the vocabulary.
    Returns:
        [B, L, V] log-probabilities (float32, or float64 if ``logits`` is float64).
    """
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logits = logits.to(dtype).clone()
    logits[..., mask_id] = NEG_INF
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    unmasked = z != mask_id
    if unmasked.any():
        carry = torch.full_like(log_probs, NEG_INF)
        carry.scatter_(-1, z.unsqueeze(-1), 0.0)
        log_probs = torch.where(unmasked.unsqueeze(-1), carry, log_probs)
    return log_probs
