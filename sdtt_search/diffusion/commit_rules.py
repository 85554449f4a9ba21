"""How many positions a step of ``confidence_sample`` commits, and how many steps a block gets.

Two rules, one interface (``start_block``, ``block_over``, ``idle``, ``take_step``, ``commit``):

* ``LinearSchedule`` (LLaDA, Nie et al. 2025, no threshold): each block gets its share of
  ``steps`` and each step commits the k best ranked candidates, k from LLaDA's linear
  schedule (``transfer_counts``);
* ``ThresholdBudget`` (Fast-dLLM, Wu et al. 2025, threshold tau): a step commits every
  candidate with confidence >= tau, and at least the best ranked one; ``steps`` is each
  row's budget of steps, shared by its blocks (each keeps one for every later block), and
  a row's last allowed step in a block commits every token it has left (with ``steps`` >=
  the generated length the budget never binds: Fast-dLLM's uncapped decoding). A row
  spends a step only when it has a masked column in the block, so it decodes as it would
  alone, whatever its batch-mates need: the count is per row, ``steps_used`` [B].
"""
from __future__ import annotations

import torch


def transfer_counts(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's linear schedule: tokens to commit at each of ``steps`` steps.

    Args:
        num_masked: [B] masked tokens per row in the current block.
    Returns:
        [B, steps] long, rows sum to ``num_masked``; the remainder of
        num_masked // steps goes to the first steps.
    """
    base = num_masked // steps
    remainder = num_masked % steps
    counts = base[:, None].repeat(1, steps)
    counts += (torch.arange(steps, device=num_masked.device)[None, :] < remainder[:, None]).long()
    return counts


class LinearSchedule:
    """LLaDA: block b gets steps // n_blocks steps (one more for the first steps % n_blocks
    blocks); step i commits ``transfer_counts`` of the block's masked tokens."""

    def __init__(self, steps: int, n_blocks: int, batch: int, device: torch.device):
        self.steps, self.n_blocks = steps, n_blocks
        self.steps_used = torch.zeros(batch, dtype=torch.long, device=device)  # [B] steps each row took part in
        self.block_steps = 0
        self.counts: torch.Tensor | None = None  # [B, block_steps]

    def start_block(self, b: int, num_masked: torch.Tensor) -> None:
        """Enter block ``b`` whose rows have ``num_masked`` [B] masked columns."""
        self.block_steps = self.steps // self.n_blocks + (1 if b < self.steps % self.n_blocks else 0)
        self.counts = transfer_counts(num_masked, self.block_steps)

    def block_over(self, step: int) -> bool:
        return step >= self.block_steps

    def idle(self, step: int) -> bool:
        """A step at which no row commits anything (no call)."""
        return not bool((self.counts[:, step] > 0).any())

    def take_step(self, active: torch.Tensor) -> torch.Tensor:
        """Count a step for the rows ``active`` [B] bool; returns [B] bool: the rows whose
        last allowed step this is (none: the schedule empties each block by itself)."""
        self.steps_used += active.long()
        return torch.zeros_like(active)

    def commit(self, candidates: torch.Tensor, confidence: torch.Tensor, ranks: torch.Tensor, step: int,
               last_step: torch.Tensor) -> torch.Tensor:
        """[B, L] bool: the ``counts[:, step]`` best ``ranks`` of each row's ``candidates``."""
        return candidates & (ranks < self.counts[:, step][:, None])


class ThresholdBudget:
    """Fast-dLLM's threshold with a per-row budget of ``steps`` shared by ``n_blocks``
    blocks; ``contiguous`` (``remasking="prefix"``): only the run of sure tokens right after
    the leftmost masked one commits."""

    def __init__(self, threshold: float, steps: int, n_blocks: int, batch: int, device: torch.device,
                 contiguous: bool = False):
        self.threshold, self.steps, self.n_blocks, self.contiguous = threshold, steps, n_blocks, contiguous
        # [B] sampler steps each row has taken part in (a step of a row with a masked column in the
        # block): a row's budget is its own, so it decodes as it would alone, whatever its batch-mates
        self.steps_used = torch.zeros(batch, dtype=torch.long, device=device)
        self.block = 0

    def start_block(self, b: int, num_masked: torch.Tensor) -> None:
        self.block = b

    def block_over(self, step: int) -> bool:
        return False  # a block ends when it has no masked column left

    def idle(self, step: int) -> bool:
        return False

    def take_step(self, active: torch.Tensor) -> torch.Tensor:
        """Count a step for the rows ``active`` [B] bool; returns [B] bool: the active rows
        whose last allowed step in this block it is (each later block keeps one)."""
        last_step = (self.steps_used + 1 >= self.steps - (self.n_blocks - self.block - 1)) & active
        self.steps_used += active.long()
        return last_step

    def commit(self, candidates: torch.Tensor, confidence: torch.Tensor, ranks: torch.Tensor, step: int,
               last_step: torch.Tensor) -> torch.Tensor:
        """[B, L] bool: the ``candidates`` whose ``confidence`` [B, L] float64 is >= the
        threshold, the best ranked one of each row, and all of them on a row's last step."""
        sure = torch.zeros_like(candidates)
        sure[candidates] = confidence[candidates] >= self.threshold  # the drawn token's probability, whatever the order
        if self.contiguous:  # no unsure candidate to the left (the leftmost counts as sure)
            sure = (candidates & ~(sure | (ranks == 0))).long().cumsum(-1) == 0
        return candidates & (sure | (ranks == 0) | last_step[:, None])
