"""The model interface: what the search engine and the programs ask of a loaded model.

Every model ``load_model`` returns (``DiffusionModel``, ``HFDiffusionModel``, ``ARModel``,
a LoRA student) is a ``Model``; so is anything else with these members (the tests use
scripted models with only a ``generate``). The interface and ``Completions`` live here,
below the model classes, so that the loaders, the model families and the search engine
all depend on this module and none on another's (docs/architecture.md, "The model
interface"). No torch: ``heads`` is whatever the model's sampler takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from .sampling_config import SamplerConfig

__all__ = ["Completions", "Model", "TextTokenizer"]


@dataclass
class Completions:
    """What ``generate`` returns to the search engine.

    Attributes:
        texts: decoded completions (cut at the first EOS).
        logprobs: per row, the model log-prob of each generated token up to and
            including EOS (its mean is the "confidence" score).
        nfe: network calls of the batch.
        positions: generated positions per row (the compute per sample).
        tokens: per row, the token ids of every generated position (also past EOS), or
            None; a model that can re-denoise a candidate (``infill``) fills it.
        token_logprobs: per row, the log-prob of every generated position's token (0.0
            where a position was given, not drawn), or None; filled beside ``tokens``.
        trails: per row, the text of each sampler step's prediction of the clean
            completion (``generate(..., trace=True)``, temporal voting), or None.
    """

    texts: list[str]
    logprobs: list[list[float]]
    nfe: int
    positions: int
    tokens: list[list[int]] | None = None
    token_logprobs: list[list[float]] | None = None
    trails: list[list[str]] | None = None


class TextTokenizer(Protocol):
    """The part of a model's tokenizer the search reads (prompt lengths) and AR models use."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, cut at the first end-of-sequence token."""
        ...


@runtime_checkable
class Model(Protocol):
    """A model the search engine can sample from.

    Attributes:
        kind: ``"diffusion"`` or ``"ar"``.
        name: how it was loaded (a zoo name, a directory, ``hf:<id>``).
        meta: the checkpoint's record: ``task`` ({"name", "options"}), ``gen_length``,
            ``sampling_steps``, the training record.
        tokenizer: its tokenizer.
        gen_length: tokens generated per completion (0: none recorded; the sampler's
            ``gen_length`` then decides).
        context_length: longest prompt + completion the network was built for, in
            tokens (None: unknown).
    """

    kind: str
    name: str
    meta: dict

    @property
    def tokenizer(self) -> TextTokenizer: ...

    @property
    def gen_length(self) -> int: ...

    @property
    def context_length(self) -> int | None: ...

    def default_sampler(self) -> SamplerConfig:
        """The decoding the model was trained or distilled for."""
        ...

    def generate(self, prompts: Sequence[str], sampler: SamplerConfig, *, seeds: Sequence[int],
                 heads: Any = None) -> Completions:
        """One completion per prompt, row i drawn from ``seeds[i]`` alone; ``heads``: the
        stratified uniforms of each row's first tokens (``SamplerConfig.stratify``)."""
        ...
