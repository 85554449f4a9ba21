"""SDTT with a LoRA student on shared frozen weights (for teachers too large to copy).

The student is the base network with LoRA adapters (``sdtt_search.lora``). The
teacher of a round is the same network with a frozen snapshot of the adapter
weights: round 1's snapshot is the adapters' initial state (lora_B = 0, i.e. the
base model itself), and at each round boundary the snapshot becomes the student's
adapters, so "the student becomes the teacher" costs a few MB, not a
second copy of an 8B model.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from sdtt_search.lora import adapter_parameters, check_lora_state, lora_state


class SharedWeightsTeacher:
    """Calls ``student`` with the snapshot's adapter weights swapped in (no grad, eval mode).

    Quacks like the denoiser for the SDTT math and the samplers: ``config``,
    ``parameters()``, ``eval()``/``train()``, ``__call__(input_ids, attention_mask=, sigma=)``.
    The snapshot lives beside the adapters (same device and dtype) and a call exchanges
    the tensors' storage with the parameters' and back: no copies in the training loop.
    """

    training = False

    def __init__(self, student: nn.Module, snapshot: dict[str, torch.Tensor] | None = None):
        self.student = student
        self.load_state_dict(lora_state(student) if snapshot is None else snapshot)

    def _swap(self) -> None:
        for name, p in adapter_parameters(self.student).items():
            p.data, self.snapshot[name] = self.snapshot[name], p.data

    @property
    def config(self):
        return self.student.config

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.student.parameters()

    def eval(self) -> "SharedWeightsTeacher":
        return self

    def train(self, mode: bool = True) -> "SharedWeightsTeacher":
        return self

    @torch.no_grad()
    def __call__(self, *args, **kwargs) -> torch.Tensor:
        was_training = self.student.training
        self._swap()
        self.student.eval()
        try:
            return self.student(*args, **kwargs)
        finally:
            self._swap()
            self.student.train(was_training)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu").clone() for k, v in self.snapshot.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take a snapshot ({adapter name: tensor}); names and shapes must match the student's adapters."""
        params = adapter_parameters(self.student)
        check_lora_state(params, state)
        self.snapshot = {n: state[n].detach().to(p.device, p.dtype).clone() for n, p in params.items()}
