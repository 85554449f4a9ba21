"""Exponential moving average of model weights (MDLM/SDTT keep one; spec §A6)."""
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
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        k = self.num_updates
        decay = min(self.decay, (1 + k) / (10 + k))
        for shadow, p in zip(self.model.parameters(), model.parameters()):
            shadow.lerp_(p.detach().to(shadow.dtype), 1.0 - decay)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "weights": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.model.load_state_dict(state["weights"])
