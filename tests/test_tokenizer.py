"""Tokenizer: builders, round trips, special ids, persistence, pickling, errors."""
from __future__ import annotations

import json
import pickle

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from sdtt_search.tokenizer import Tokenizer

ALPHABET = "0123456789+-*/=() abcdefghijklmnopqrstuvwxyz\n[]:,.ADKMPS"
CORPUS = [
    "Question: what is 12 + 30?\nAnswer: 42\n",
    "Using the numbers [3, 5, 7] make 22: (3 + 7) * 2 + 2 = 22\n",
    "The quick brown fox jumps over the lazy dog.  Twice!\t\n",
] * 20


@pytest.fixture(scope="module")
def char_tok() -> Tokenizer:
    return Tokenizer.char_level(ALPHABET)


@pytest.fixture(scope="module")
def bpe_tok() -> Tokenizer:
    return Tokenizer.train_bpe(CORPUS, vocab_size=320)


def test_char_special_ids_and_vocab(char_tok):
    assert (char_tok.pad_id, char_tok.mask_id, char_tok.eos_id, char_tok.unk_id) == (0, 1, 2, 3)
    assert char_tok.vocab_size == 4 + len(set(ALPHABET))
    assert len(char_tok.encode("a b\n")) == 4  # one token per character


@pytest.mark.parametrize("text", ["", "a", "12 + 30 = 42\n", "  two  spaces\n\nand newlines\n", "[MASK] [PAD]: literal"])
def test_char_round_trip(char_tok, text):
    ids = char_tok.encode(text)
    assert len(ids) == len(text)
    assert char_tok.decode(ids) == text
    assert char_tok.mask_id not in ids and char_tok.pad_id not in ids  # text never becomes a special id


def test_char_unknown_characters_become_unk(char_tok):
    ids = char_tok.encode("a\tZ!b")
    assert ids[1:4] == [char_tok.unk_id] * 3
    assert char_tok.decode(ids) == "a[UNK][UNK][UNK]b"


def test_decode_drops_pad_mask_and_stops_at_eos(char_tok):
    t = char_tok
    ids = [t.pad_id, t.pad_id] + t.encode("ab") + [t.mask_id] + t.encode("c") + [t.eos_id] + t.encode("zz")
    assert t.decode(ids) == "abc"
    assert t.decode(ids, stop_at_eos=False) == "abczz"
    import torch

    assert t.decode(torch.tensor(ids)) == "abc"


def test_bpe_round_trip_and_specials(bpe_tok):
    assert (bpe_tok.pad_id, bpe_tok.mask_id, bpe_tok.eos_id, bpe_tok.unk_id) == (0, 1, 2, 3)
    assert 260 < bpe_tok.vocab_size <= 320
    for text in CORPUS[:3] + ["unseen words ~{}|^ and \t tabs\n\n  ", "[MASK] stays text", ""]:
        ids = bpe_tok.encode(text)
        assert bpe_tok.decode(ids) == text
        assert not {bpe_tok.pad_id, bpe_tok.mask_id, bpe_tok.eos_id} & set(ids)
    assert len(bpe_tok.encode(CORPUS[0])) < len(CORPUS[0])  # it did learn merges


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_and_pickle(tmp_path, char_tok, bpe_tok, kind):
    tok = char_tok if kind == "char" else bpe_tok
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    HFTokenizer.from_file(str(path))  # a plain Hugging Face file
    text = "Answer: 42 = (3 + 7) * 4 + 2\n"
    for other in (Tokenizer.from_file(path), pickle.loads(pickle.dumps(tok))):
        assert other.vocab_size == tok.vocab_size
        assert (other.pad_id, other.mask_id, other.eos_id, other.unk_id) == (tok.pad_id, tok.mask_id, tok.eos_id, tok.unk_id)
        assert other.encode(text) == tok.encode(text)
        assert other.decode(other.encode(text)) == text


def _foreign_tokenizer_json(path, specials):
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(CORPUS, trainer=trainer)
    hf.save(str(path))
    return path


def test_from_hf_foreign_names(tmp_path):
    path = _foreign_tokenizer_json(tmp_path / "tokenizer.json", ["<|endoftext|>", "<mask>"])
    tok = Tokenizer.from_hf(path, mask_token="<mask>", pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    assert tok.mask_id == 1 and tok.pad_id == tok.eos_id == 0 and tok.unk_id is None
    assert tok.decode(tok.encode("hello 42\n") + [tok.eos_id, 7]) == "hello 42\n"
    again = pickle.loads(pickle.dumps(tok))
    assert (again.mask_id, again.eos_id) == (1, 0)


def test_from_hf_without_mask_token_is_one_line_error(tmp_path):
    path = _foreign_tokenizer_json(tmp_path / "tokenizer.json", ["<|endoftext|>"])
    with pytest.raises(ValueError) as err:
        Tokenizer.from_hf(path, mask_token="<mask>", pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    assert "\n" not in str(err.value) and "mask" in str(err.value) and "<mask>" in str(err.value)


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        Tokenizer.from_file(tmp_path / "nope.json")
    assert "\n" not in str(err.value) and "missing" in str(err.value) and "tokenizer.json" in str(err.value)
    for content in ["{not json", json.dumps({"hello": 1}), "[1, 2]"]:
        bad = tmp_path / "tokenizer.json"
        bad.write_text(content)
        with pytest.raises(ValueError) as err:
            Tokenizer.from_file(bad)
        assert "\n" not in str(err.value) and "not a valid" in str(err.value)
    with pytest.raises(ValueError) as err:
        Tokenizer.from_hf(tmp_path / "absent.json", mask_token="[MASK]")
    assert "\n" not in str(err.value)


def test_numbers_tokenizer_makes_each_number_one_token(tmp_path):
    tok = Tokenizer.numbers("0123456789+-*/=,", 999)
    pieces = lambda s: [tok.hf.id_to_token(i) for i in tok.encode(s)]  # noqa: E731
    assert pieces("44-15=29,79-29=50") == ["44", "-", "15", "=", "29", ",", "79", "-", "29", "=", "50"]
    # over max_number or with a leading zero: single characters; every string round-trips
    assert pieces("9702/98") == ["9", "7", "0", "2", "/", "98"]
    assert pieces("05+100") == ["0", "5", "+", "100"]
    for text in ("98*99=9702,9702/98=99", "0,0,7", "1000000", "x+1", ""):
        assert tok.decode(tok.encode(text)) == (text if "x" not in text else "[UNK]+1")
    assert tok.vocab_size == 4 + 16 + 990 and (tok.pad_id, tok.mask_id, tok.eos_id) == (0, 1, 2)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.encode("44-15=29") == tok.encode("44-15=29")
    with pytest.raises(ValueError, match="max_number"):
        Tokenizer.numbers("0123456789", 500)


def test_task_tokenizer_kinds_for_training():
    from distill.setup import build_task, build_tokenizer

    task = build_task({"name": "countdown", "options": {"n": 3}})
    chars = build_tokenizer(task, {"kind": "char"}, seed=0)
    numbers = build_tokenizer(task, {"kind": "numbers", "max_number": 999}, seed=0)
    target = "44-15=29,79-29=50"
    assert len(chars.encode(target)) == 17 and len(numbers.encode(target)) == 11
    assert numbers.decode(numbers.encode(target)) == target
    with pytest.raises(ValueError, match="char, numbers or bpe"):
        build_tokenizer(task, {"kind": "words"}, seed=0)
