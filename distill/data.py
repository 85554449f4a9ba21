"""From a task's (prompt, target) text pairs to token batches for training.

A training row has the same layout the samplers generate into:
``[left padding | prompt | target, EOS, PAD filler up to gen_length]``.
The completion region (target + EOS + filler) is what the loss covers: the model
learns where the answer ends by predicting EOS and the filler, so the answer
length need not be known in advance (as in Ye et al. 2025 and LLaDA SFT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch


@dataclass
class TrainBatch:
    """Token batch, all [B, L].

    Attributes:
        x: clean tokens; maskable: True on the completion region (the loss);
        attention_mask: False on left padding.
    """

    x: torch.Tensor
    maskable: torch.Tensor
    attention_mask: torch.Tensor

    def to(self, device: torch.device | str) -> "TrainBatch":
        return TrainBatch(self.x.to(device), self.maskable.to(device), self.attention_mask.to(device))

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode_completion(tokenizer, target: str, gen_length: int) -> list[int] | None:
    """Target ids + EOS + PAD filler, exactly ``gen_length`` long; None if too long."""
    ids = tokenizer.encode(target) + [tokenizer.eos_id]
    if len(ids) > gen_length:
        return None
    return ids + [tokenizer.pad_id] * (gen_length - len(ids))


def collate(tokenizer, pairs: Sequence[tuple[str, str]], gen_length: int) -> TrainBatch:
    """Encode (prompt, target) pairs into one left-padded batch.

    Pairs whose target does not fit in ``gen_length`` raise: filter them first with
    ``fits``, so the training stream never silently truncates answers.
    """
    prompts = [tokenizer.encode(p) for p, _ in pairs]
    completions = []
    for (_, target) in pairs:
        ids = encode_completion(tokenizer, target, gen_length)
        if ids is None:
            raise ValueError(f"target longer than gen_length={gen_length}: {target[:60]!r}...")
        completions.append(ids)
    width = max(len(p) for p in prompts) + gen_length
    x = torch.full((len(pairs), width), tokenizer.pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.bool)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        start = width - gen_length - len(prompt)
        x[row, start:] = torch.tensor(prompt + completion, dtype=torch.long)
        attention[row, start:] = True
    maskable = torch.zeros_like(attention)
    maskable[:, width - gen_length :] = True
    return TrainBatch(x=x, maskable=maskable, attention_mask=attention)


# An example stream that skips this many pairs in a row is misconfigured (it would loop forever).
MAX_SKIPPED_IN_A_ROW = 10_000


class ExampleStream:
    """A task's training pairs as an iterator that knows how far it has gone.

    Resuming a run re-creates the stream with the same seed and skips the pairs
    already consumed, so a resumed run sees exactly the data of an uninterrupted
    one. With ``world_size > 1`` rank r keeps every world_size-th pair.
    """

    def __init__(
        self,
        examples: Iterable[tuple[str, str]],
        *,
        tokenizer,
        gen_length: int,
        max_prompt_tokens: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self._examples = iter(examples)
        self.tokenizer = tokenizer
        self.gen_length = gen_length
        self.max_prompt_tokens = max_prompt_tokens
        self.rank, self.world_size = rank, world_size
        self.consumed = 0  # pairs drawn from the underlying iterator (all ranks)
        self.skipped_too_long = 0

    def _fits(self, prompt: str, target: str) -> bool:
        if len(self.tokenizer.encode(target)) + 1 > self.gen_length:
            return False
        return self.max_prompt_tokens is None or len(self.tokenizer.encode(prompt)) <= self.max_prompt_tokens

    def _next_pair(self) -> tuple[str, str]:
        skipped_in_a_row = 0
        while True:
            pair = next(self._examples)
            index = self.consumed
            self.consumed += 1
            if index % self.world_size != self.rank:
                continue
            if self._fits(*pair):
                return pair
            self.skipped_too_long += 1
            skipped_in_a_row += 1
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                target_tokens = len(self.tokenizer.encode(pair[1])) + 1
                raise ValueError(
                    f"{skipped_in_a_row} training pairs in a row do not fit (e.g. a target of {target_tokens} tokens "
                    f"with EOS, gen_length={self.gen_length}, max_prompt_tokens={self.max_prompt_tokens}): raise "
                    "task.gen_length (or leave it null to measure it) or check the task options")

    def skip_to(self, consumed: int) -> None:
        """Advance the underlying iterator until ``consumed`` pairs were drawn."""
        while self.consumed < consumed:
            next(self._examples)
            self.consumed += 1

    def next_batch(self, batch_size: int) -> TrainBatch:
        return collate(self.tokenizer, [self._next_pair() for _ in range(batch_size)], self.gen_length)

    def __iter__(self) -> Iterator[TrainBatch]:
        raise TypeError("use next_batch(batch_size)")

    def close(self) -> None:
        """Nothing to release (``WorkerStream`` stops its processes here)."""


def shard_seed(seed: int, shard: int) -> int:
    """The example-stream seed of data shard ``shard`` (rank * workers + worker) of a run."""
    return seed * 1_000_003 + 1 + shard


def batches_before(position: int, worker: int, workers: int) -> int:
    """How many of the first ``position`` batches worker ``worker`` of ``workers`` made
    (batch b comes from worker b mod workers)."""
    return max(0, (position - worker + workers - 1) // workers)


class ShardedBatches(torch.utils.data.IterableDataset):
    """Micro-batches of fixed size from one independent example stream per DataLoader
    worker; worker w first regenerates (and drops) the batches it made before ``skip``."""

    def __init__(self, make_examples: Callable[[int], Iterable[tuple[str, str]]], *, tokenizer, gen_length: int,
                 batch_size: int, workers: int, skip: int):
        self.make_examples, self.tokenizer, self.gen_length = make_examples, tokenizer, gen_length
        self.batch_size, self.workers, self.skip = batch_size, workers, skip

    def __iter__(self) -> Iterator[TrainBatch]:
        info = torch.utils.data.get_worker_info()
        # The DataLoader hands out batches from its workers 0, 1, ... in turn, starting
        # with worker 0 also after a skip: its worker i makes global batch skip + i first,
        # i.e. it plays logical worker (skip + i) mod workers.
        worker = ((info.id if info is not None else 0) + self.skip) % self.workers
        stream = ExampleStream(self.make_examples(worker), tokenizer=self.tokenizer, gen_length=self.gen_length)
        for _ in range(batches_before(self.skip, worker, self.workers)):
            stream.next_batch(self.batch_size)
        while True:
            yield stream.next_batch(self.batch_size)


class WorkerStream:
    """``ExampleStream``'s interface with the examples made by ``workers`` processes.

    Generating and tokenizing examples in one Python process bounds GPU training of
    small models (about 12k CD3 examples/s, docs/results.md). Here each worker
    of a ``torch.utils.data.DataLoader`` owns its own seeded stream (``make_examples(w)``)
    and batch b comes from worker b mod workers, so the batches are a pure function of
    (seed, rank, workers): a resumed run sees exactly the uninterrupted run's data, as
    long as it uses the same number of workers. A different worker count draws
    different (equally distributed) examples than ``workers=0``.
    """

    def __init__(self, make_examples: Callable[[int], Iterable[tuple[str, str]]], *, tokenizer, gen_length: int,
                 workers: int, prefetch: int = 4):
        if workers < 1:
            raise ValueError(f"train.data_workers={workers!r}: a worker stream needs at least 1 worker")
        if "fork" not in torch.multiprocessing.get_all_start_methods():
            raise RuntimeError("train.data_workers > 0 needs the 'fork' start method (Linux); use train.data_workers=0")
        self.make_examples, self.tokenizer, self.gen_length = make_examples, tokenizer, gen_length
        self.workers, self.prefetch = workers, prefetch
        self.batches = 0  # micro-batches delivered so far
        self.batch_size: int | None = None
        self._start = 0
        self._iter = None

    @property
    def consumed(self) -> dict:
        return {"batches": self.batches, "workers": self.workers, "batch_size": self.batch_size}

    def skip_to(self, consumed) -> None:
        if not isinstance(consumed, dict) or consumed.get("workers") != self.workers:
            was = consumed.get("workers") if isinstance(consumed, dict) else 0
            raise ValueError(f"the training state was written with train.data_workers={was}; "
                             f"resume with that value (not {self.workers}) or delete train_state.pt to start over")
        if self._iter is not None:
            raise RuntimeError("skip_to must come before the first batch")
        self.batches = self._start = int(consumed["batches"])
        self.batch_size = consumed.get("batch_size")

    def next_batch(self, batch_size: int) -> TrainBatch:
        if self.batch_size is not None and batch_size != self.batch_size:
            raise ValueError(f"micro-batch size changed from {self.batch_size} to {batch_size}: with "
                             "train.data_workers > 0 keep train.batch_size, grad_accum and the world size of the run")
        if self._iter is None:
            self.batch_size = batch_size
            dataset = ShardedBatches(self.make_examples, tokenizer=self.tokenizer, gen_length=self.gen_length,
                                     batch_size=batch_size, workers=self.workers, skip=self._start)
            loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.workers,
                                                 prefetch_factor=self.prefetch, multiprocessing_context="fork")
            self._iter = iter(loader)
        self.batches += 1
        return next(self._iter)

    def close(self) -> None:
        """Stop the worker processes: dropping the DataLoader's iterator shuts them down."""
        self._iter = None
