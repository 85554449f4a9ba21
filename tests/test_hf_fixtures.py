"""Builders of tiny offline Hugging Face model directories for the ``test_hf_*`` tests.

Nothing is downloaded: a character-level tokenizer saved with ``save_pretrained``
(with a chat template), tiny LLaDA-like and Dream-like networks whose modelling
code is a .py file in the directory (``auto_map``: the ``trust_remote_code`` path
really runs), and MDLM / SDTT state dicts in the hub key layout as safetensors.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

SPECIALS = ["<pad>", "<bos>", "<eos>", "<|eot_id|>", "<mask>", "<|system|>", "<|user|>", "<|assistant|>", "<unk>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot_id|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")

# The LLaDA-like network numbers positions from column 0 and ignores the attention
# mask, as LLaDA's released code does: padding shown to it changes a row's logits.
MODELING = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tiny import TinyConfig


class TinyNet(PreTrainedModel):
    config_class = TinyConfig
    base_model_prefix = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.pos = nn.Embedding(config.max_positions, config.hidden_size)
        layer = nn.TransformerEncoderLayer(config.hidden_size, 2, 2 * config.hidden_size, dropout=0.0,
                                           batch_first=True)
        self.layers = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        if attention_mask is not None and not isinstance(attention_mask, str):
            if self.config.reject_tensor_masks:
                raise AssertionError("padding reached the network")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.embed(input_ids) + self.pos(positions)[None]
        return MaskedLMOutput(logits=self.head(self.layers(h)))
'''

CONFIGURATION = '''
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "{model_type}"

    def __init__(self, vocab_size=128, hidden_size=32, max_positions=512, mask_token_id=4,
                 reject_tensor_masks=False, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_positions = max_positions
        self.mask_token_id = mask_token_id
        self.reject_tensor_masks = reject_tensor_masks
        super().__init__(**kwargs)
'''


def build_tokenizer(*, chat: bool = True, mask: bool = True):
    """A character-level ``PreTrainedTokenizerFast`` over printable ASCII (specials first)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as RawTokenizer
    from transformers import PreTrainedTokenizerFast

    specials = [s for s in SPECIALS if mask or s != "<mask>"]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c\t"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    raw = RawTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
    raw.decoder = decoders.Fuse()
    extra = ["<|eot_id|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>", mask_token="<mask>" if mask else None,
                                  additional_special_tokens=extra)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tokenizer(directory: Path, **kwargs):
    tok = build_tokenizer(**kwargs)
    tok.save_pretrained(str(directory))
    return tok


def make_remote_model(directory: Path, kind: str, *, seed: int = 0, reject_tensor_masks: bool = True) -> Path:
    """A tiny ``kind`` ("llada" or "dream") model directory with its own modelling code (auto_map)."""
    from transformers import AutoConfig, AutoModel

    directory.mkdir(parents=True, exist_ok=True)
    tok = save_tokenizer(directory)
    (directory / "configuration_tiny.py").write_text(CONFIGURATION.format(model_type=f"tiny_{kind}"))
    (directory / "modeling_tiny.py").write_text(MODELING)
    config = {
        "model_type": f"tiny_{kind}", "architectures": ["TinyNet"],
        "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyNet"},
        "vocab_size": len(tok) + 3, "hidden_size": 32, "max_positions": 512,
        "mask_token_id": tok.mask_token_id, "reject_tensor_masks": reject_tensor_masks,
    }
    (directory / "config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    net = AutoModel.from_config(AutoConfig.from_pretrained(str(directory), trust_remote_code=True),
                                trust_remote_code=True)
    with torch.no_grad():  # large random weights: sharp, position-sensitive predictions
        for p in net.parameters():
            p.normal_(0, 0.5)
    net.save_pretrained(str(directory))
    return directory


def denoiser_state(vocab_size: int, *, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2, cond: int = 16):
    """A random (non-zero adaLN) ``Denoiser`` and its config, for MDLM / SDTT files."""
    from sdtt_search.model import Denoiser, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab_size, hidden_size=hidden, n_layers=layers, n_heads=heads, cond_dim=cond,
                      max_length=128, mask_id=vocab_size - 1)
    model = Denoiser(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def make_mdlm_checkpoint(directory: Path, *, layout: str = "mdlm", seed: int = 0, edit=None) -> tuple[Path, object]:
    """An MDLM (``kuleshov-group/mdlm-owt``-like) or SDTT (``jdeschena/sdtt``-like) directory.

    mdlm: HF config + keys ``backbone.<DiT key>``, tokenizer files in the directory.
    sdtt: OmegaConf-style run config naming a tokenizer directory + keys ``backbone.backbone.<DiT key>``.
    ``edit(state)`` may change the state dict before it is written. Returns (dir, reference Denoiser).
    """
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(chat=False, mask=False)
    model = denoiser_state(len(tok) + 1, seed=seed)
    prefix = "backbone." if layout == "mdlm" else "backbone.backbone."
    state = {prefix + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    head_dim = model.config.head_dim
    state[prefix + "rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    if edit is not None:
        edit(state)
    save_file(state, str(directory / "model.safetensors"))
    if layout == "mdlm":
        tok.save_pretrained(str(directory))
        config = {"model_type": "mdlm", "architectures": ["MDLM"],
                  "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
                  "vocab_size": len(tok) + 1, "hidden_dim": 32, "cond_dim": 16, "n_blocks": 2, "n_heads": 2,
                  "model_length": 128, "dropout": 0.1, "time_conditioning": False}
    else:
        tok_dir = directory.parent / f"{directory.name}-gpt2-like-tokenizer"
        tok.save_pretrained(str(tok_dir))
        config = {"model": {"name": "small", "hidden_size": 32, "cond_dim": 16, "length": 128, "n_blocks": 2,
                            "n_heads": 2, "dropout": 0.1, "scale_by_sigma": True},
                  "parameterization": "subs", "time_conditioning": False, "tokenizer": {"name": str(tok_dir)}}
    (directory / "config.json").write_text(json.dumps(config))
    return directory, model


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread: these models are tiny, and threads only contend on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory) -> Path:
    return make_remote_model(tmp_path_factory.mktemp("hf") / "tiny-llada", "llada")


@pytest.fixture(scope="session")
def dream_dir(tmp_path_factory) -> Path:
    return make_remote_model(tmp_path_factory.mktemp("hf") / "tiny-dream", "dream", seed=1)


@pytest.fixture()
def gsm8k_file(tmp_path) -> Path:
    """Three GSM8K-format problems in one jsonl file (served for every split)."""
    rows = [{"question": "Tom has 3 apples and buys 2 more. How many apples does he have?", "answer": "3+2=5\n#### 5"},
            {"question": "A box holds 4 pens. How many pens are in 2 boxes?", "answer": "4*2=8\n#### 8"},
            {"question": "Sam had 10 cards and gave away 7. How many are left?", "answer": "10-7=3\n#### 3"}]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
