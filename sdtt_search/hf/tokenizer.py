"""An ``AutoTokenizer`` seen through the interface the samplers use.

``sdtt_search.diffusion.generate`` needs ``encode``, ``decode``, ``pad_id``,
``mask_id`` and ``eos_id``; this class supplies them for a Hugging Face tokenizer,
plus the end-of-turn ids that also end an answer (``<|eot_id|>``, ``<|im_end|>``).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

#: tokens that end an assistant turn in the chat formats of LLaDA, Dream / Qwen and GPT-2
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", "<|end|>")


class HFTokenizer:
    """Text <-> ids with the special ids masked diffusion needs.

    Attributes:
        hf: the wrapped ``transformers`` tokenizer.
        mask_id / pad_id / eos_id: the MASK, left-padding and end-of-answer ids.
        stop_ids: ids that end an answer (eos and end-of-turn tokens).
        prepend_bos: put the BOS token first in ``encode`` (MDLM was trained on
            [BOS] + text; chat templates write their own BOS, so ``for_chat`` turns it off).
    """

    def __init__(self, hf, *, mask_id: int, pad_id: int | None = None, eos_id: int | None = None,
                 prepend_bos: bool = False):
        self.hf = hf
        self.mask_id = int(mask_id)
        eos = eos_id if eos_id is not None else hf.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos token; pass a tokenizer with eos_token set")
        self.eos_id = int(eos)
        pad = pad_id if pad_id is not None else hf.pad_token_id
        # Prompts are left-padded with pad_id; it must never read as MASK.
        self.pad_id = int(pad) if pad is not None and int(pad) != self.mask_id else self.eos_id
        vocab = hf.get_vocab()
        self.stop_ids = frozenset({self.eos_id} | {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab})
        self.bos_id = hf.bos_token_id
        self.prepend_bos = bool(prepend_bos) and self.bos_id is not None

    @property
    def vocab_size(self) -> int:
        """Tokens of the tokenizer, plus the MASK if it was appended after them (MDLM)."""
        return max(len(self.hf), self.mask_id + 1)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def for_chat(self) -> HFTokenizer:
        """A copy that adds no BOS (the chat template writes the text's special tokens itself)."""
        other = copy.copy(self)
        other.prepend_bos = False
        return other

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; special tokens written in the text (a chat template's) are recognised."""
        ids = list(self.hf.encode(text, add_special_tokens=False))
        if self.prepend_bos and (not ids or ids[0] != self.bos_id):
            ids.insert(0, int(self.bos_id))
        return ids

    def decode(self, ids: Sequence[int], stop_at_eos: bool = True) -> str:
        """Text of ``ids`` (a list or a 1-D tensor), cut at the first stop id when ``stop_at_eos``;
        MASK, padding, special tokens and ids beyond the tokenizer are dropped."""
        kept, limit = [], len(self.hf)
        for i in ids:
            i = int(i)
            if stop_at_eos and i in self.stop_ids:
                break
            if i != self.mask_id and i != self.pad_id and 0 <= i < limit:
                kept.append(i)
        return self.hf.decode(kept, skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict]) -> str:
        """The chat-formatted prompt text, ending with the assistant turn's opening."""
        return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def __repr__(self) -> str:
        return (f"HFTokenizer({type(self.hf).__name__}, vocab_size={self.vocab_size}, pad={self.pad_id}, "
                f"mask={self.mask_id}, eos={self.eos_id}, stop={sorted(self.stop_ids)})")
