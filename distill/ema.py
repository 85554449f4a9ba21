"""Exponential moving average of model weights (MDLM/SDTT keep one)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy of a model with decay_k = min(decay, (1 + k) / (10 + k)).

    The warm-up rule lets early updates move the shadow quickly. ``model`` holds
    the EMA weights and is what evaluation and checkpoints use.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        # Frozen parameters (e.g. the base under a LoRA student) never change: the
        # shadow shares them instead of copying (an 8B base is not duplicated).
        frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
        self.model = copy.deepcopy(model, memo=dict(frozen)).eval()
        self._own = [name for name, p in self.model.named_parameters() if id(p) not in frozen]
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        k = self.num_updates
        decay = min(self.decay, (1 + k) / (10 + k))
        for shadow, p in zip(self.model.parameters(), model.parameters()):
            if shadow is not p:
                shadow.lerp_(p.detach().to(shadow.dtype), 1.0 - decay)

    def state_dict(self) -> dict:
        """Only the shadow's own weights (shared frozen ones are the model's)."""
        shared = {name for name, _ in self.model.named_parameters()} - set(self._own)
        weights = {k: v for k, v in self.model.state_dict().items() if k not in shared}
        return {"decay": self.decay, "num_updates": self.num_updates, "weights": weights}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        missing = set(self._own) - set(state["weights"])
        if missing:
            raise RuntimeError(f"EMA state lacks {sorted(missing)[:3]}; it was saved for another model")
        self.model.load_state_dict(state["weights"], strict=False)
