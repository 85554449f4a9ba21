"""One tokenizer wrapper over Hugging Face ``tokenizers`` (persisted as tokenizer.json).

Masked diffusion needs four special ids: PAD (left padding of prompts), MASK (the
absorbing state), EOS (end of an answer) and UNK. The builders here (``char_level``,
``train_bpe``) put them at ids 0..3 as ``[PAD] [MASK] [EOS] [UNK]``. They are kept
in the model vocabulary only, not registered as "added tokens", so text never
encodes to a special id (the literal string "[MASK]" is just characters). A
tokenizer.json written by ``save`` is a plain Hugging Face file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

PAD, MASK, EOS, UNK = "[PAD]", "[MASK]", "[EOS]", "[UNK]"
SPECIALS = (PAD, MASK, EOS, UNK)
DEFAULT_NAMES = {"pad": PAD, "mask": MASK, "eos": EOS, "unk": UNK}


class Tokenizer:
    """Text <-> ids with the special tokens masked diffusion needs.

    Attributes:
        hf: the wrapped ``tokenizers.Tokenizer``.
        special_tokens: {"pad", "mask", "eos", "unk"} -> token string (unk may be None).
        pad_id / mask_id / eos_id / unk_id: their ids (unk_id may be None for foreign files).
        vocab_size: number of ids, special tokens included.
    """

    def __init__(self, hf: HFTokenizer, *, pad_token: str = PAD, mask_token: str = MASK,
                 eos_token: str = EOS, unk_token: str | None = UNK):
        self.hf = hf
        self.special_tokens = {"pad": pad_token, "mask": mask_token, "eos": eos_token, "unk": unk_token}
        ids: dict[str, int | None] = {}
        for role, token in self.special_tokens.items():
            token_id = None if token is None else hf.token_to_id(token)
            if token_id is None and role != "unk":
                raise ValueError(f"tokenizer has no {role} token {token!r}; add it to the vocabulary or pass {role}_token=<an existing token>")
            ids[role] = token_id
        if ids["unk"] is None:
            self.special_tokens["unk"] = None
        self.pad_id: int = ids["pad"]
        self.mask_id: int = ids["mask"]
        self.eos_id: int = ids["eos"]
        self.unk_id: int | None = ids["unk"]

    # ------------------------------------------------------------------ builders
    @classmethod
    def char_level(cls, alphabet: str) -> "Tokenizer":
        """One token per distinct character of ``alphabet``, after the 4 specials (ids 0..3).

        Any string over the alphabet (newline and space included) round-trips exactly;
        other characters encode to [UNK].
        """
        vocab = {token: i for i, token in enumerate(SPECIALS)}
        for ch in alphabet:
            vocab.setdefault(ch, len(vocab))
        hf = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        # Oniguruma's (?m) makes "." match newlines too: every character is its own piece.
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
        hf.decoder = decoders.Fuse()  # join pieces with no separator
        return cls(hf)

    @classmethod
    def numbers(cls, alphabet: str, max_number: int = 999) -> "Tokenizer":
        """``char_level(alphabet)`` plus one token per integer 0..``max_number`` (9, 99, 999, 9999).

        A whole run of digits without a leading zero and at most ``max_number`` is one
        token (so an operand is one token and a few-step sampler cannot mix the digits
        of two numbers); other digit runs fall back to single characters. Exact round
        trip, like ``char_level``.
        """
        if max_number not in (9, 99, 999, 9999):
            raise ValueError(f"tokenizer max_number={max_number!r} must be 9, 99, 999 or 9999 (all numbers of up to 1-4 digits)")
        vocab = {token: i for i, token in enumerate(SPECIALS)}
        for token in [*alphabet, *map(str, range(max_number + 1))]:
            vocab.setdefault(token, len(vocab))
        digits = len(str(max_number))
        hf = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        # a maximal digit run of <= `digits` digits with no leading zero is one piece, any
        # other character its own piece
        number = rf"(?<![0-9])(?:[1-9][0-9]{{0,{digits - 1}}}|0)(?![0-9])"
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(rf"(?m){number}|."), behavior="isolated")
        hf.decoder = decoders.Fuse()
        return cls(hf)

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int) -> "Tokenizer":
        """Byte-level BPE trained on ``texts``; specials at ids 0..3, exact round trip.

        ``vocab_size`` is an upper bound (the 256 byte symbols + 4 specials are always in).
        """
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        # The trainer registers the specials as added tokens, which the encoder would
        # then match inside text; keep them as plain vocabulary entries instead.
        data = json.loads(hf.to_str())
        data["added_tokens"] = []
        return cls(HFTokenizer.from_str(json.dumps(data)))

    @classmethod
    def from_hf(cls, tokenizer_json_path: str | Path, *, mask_token: str = MASK, pad_token: str = PAD,
                eos_token: str = EOS, unk_token: str | None = None) -> "Tokenizer":
        """Wrap a foreign tokenizer.json (e.g. a Hugging Face model's).

        The named tokens must exist in its vocabulary (pad and eos may be the same
        token, as in GPT-2); a missing mask token is a one-line ``ValueError``.
        """
        return cls(_read_hf(tokenizer_json_path), pad_token=pad_token, mask_token=mask_token,
                   eos_token=eos_token, unk_token=unk_token)

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no special tokens added)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], stop_at_eos: bool = True) -> str:
        """Text of ``ids`` (a list or a 1-D tensor): PAD, MASK and EOS tokens are dropped,
        and with ``stop_at_eos`` everything from the first EOS on is cut."""
        dropped = {self.pad_id, self.mask_id, self.eos_id}
        kept = []
        for i in ids:
            i = int(i)
            if stop_at_eos and i == self.eos_id:
                break
            if i not in dropped:
                kept.append(i)
        return self.hf.decode(kept, skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, pad={self.pad_id}, mask={self.mask_id}, eos={self.eos_id}, unk={self.unk_id})"

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> None:
        """Write the Hugging Face tokenizer.json to ``path``.

        The special-token *names* are not in that file: ``from_file`` assumes the
        defaults ([PAD] [MASK] [EOS] [UNK]); pass the names for other tokenizers
        (checkpoint.py records them in config.json).
        """
        Path(path).write_text(self.hf.to_str(), encoding="utf-8")

    @classmethod
    def from_file(cls, path: str | Path, *, pad_token: str = PAD, mask_token: str = MASK,
                  eos_token: str = EOS, unk_token: str | None = UNK) -> "Tokenizer":
        """Load a tokenizer.json written by ``save`` (or any HF tokenizer.json with these tokens)."""
        hf = _read_hf(path)
        if unk_token is not None and hf.token_to_id(unk_token) is None:
            unk_token = None
        return cls(hf, pad_token=pad_token, mask_token=mask_token, eos_token=eos_token, unk_token=unk_token)

    # Picklable (Ray ships tokenizers to workers): state = the JSON string + token names.
    def __getstate__(self) -> dict:
        return {"json": self.hf.to_str(), "special_tokens": dict(self.special_tokens)}

    def __setstate__(self, state: dict) -> None:
        names = state["special_tokens"]
        self.__init__(HFTokenizer.from_str(state["json"]), pad_token=names["pad"], mask_token=names["mask"],
                      eos_token=names["eos"], unk_token=names["unk"])


def _read_hf(path: str | Path) -> HFTokenizer:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json file; one-line ValueError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tokenizer file {path} is missing; expected a Hugging Face tokenizer.json (as written by Tokenizer.save)")
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means "not a tokenizer.json"
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ValueError(f"tokenizer file {path} is not a valid Hugging Face tokenizer.json ({reason})") from None
