"""Hugging Face causal LMs (Llama, Qwen2, Mistral, GPT-2, ...) as the autoregressive baseline.

``load_model("hf:<id or dir>")`` comes here when config.json's ``architectures`` names a
``...ForCausalLM`` that is none of the diffusion families: the network is sampled by vLLM
(``ar_backend=vllm``, or ``auto`` where vLLM is installed: one request per candidate with
its seed, prefix caching) or by ``AutoModelForCausalLM`` on the ``transformers`` backend
(per-candidate seeds, batch-invariant) (``sdtt_search.ar.backends``); prompts are
formatted as for the diffusion families (``prompting``: chat template, answer
instruction), and a completion stops at the tokenizer's EOS or an end-of-turn token
(``HFTokenizer.stop_ids``: ``<|im_end|>``, ``<|eot_id|>``, ...).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..ar.backends import TransformersBackend, VLLMBackend, resolve_backend
from ..ar.model import ARModel
from ..interface import Completions
from ..sampling_config import SamplerConfig
from .prompting import PromptFormat
from .source import HFSource, _first_line
from .tokenizer import HFTokenizer

#: tokens generated when neither the sampler nor the task says (as LLaDA's default)
DEFAULT_GEN_LENGTH = 256
#: config.json keys that give the longest sequence a network was built for
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
#: HFTokenizer wants a MASK id; a causal LM has none, and no token id is negative
NO_MASK = -1


def is_causal_lm(config: dict) -> bool:
    """Whether config.json names a causal LM architecture: a ``...ForCausalLM`` (remote code too) or a
    class ``AutoModelForCausalLM`` maps to (``GPT2LMHeadModel``); the diffusion families are checked first."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    known = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        known.update(value if isinstance(value, (list, tuple)) else [value])
    return any(str(a).endswith("ForCausalLM") or str(a) in known for a in (config.get("architectures") or []))


def context_length(config: dict) -> int | None:
    """Longest prompt + completion in tokens per config.json (None: it does not say)."""
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


class DescribedBackend:
    """The engine of a causal LM that is only described (``device="meta"``: a Ray driver,
    whose workers load their own replicas): a name, and no sampling."""

    def __init__(self, name: str):
        self.name, self.nfe = name, 0

    def generate(self, *args, **kwargs):
        raise RuntimeError("this hf: causal LM was only described (device=meta), not loaded; load it with "
                           "device=cuda or cpu")


class HFCausalModel(ARModel):
    """An ``ARModel`` whose task prompts are formatted (chat template, answer instruction) before sampling.

    Attributes (beyond ``ARModel``'s): prompt_format; tokenizer: ``HFTokenizer``.
    """

    def __init__(self, backend, tokenizer: HFTokenizer, meta: dict, name: str, *, prompt_format: PromptFormat,
                 num_parameters: int | None = None, context_length: int | None = None):
        super().__init__(backend, tokenizer, meta, name, num_parameters=num_parameters, context_length=context_length)
        self.prompt_format = prompt_format

    def format_prompt(self, prompt: str) -> str:
        """The text the model is conditioned on for a task prompt."""
        return self.prompt_format.render(prompt, self.tokenizer)

    def generate(self, prompts: Sequence[str], sampler: SamplerConfig, *, seeds: Sequence[int],
                 heads=None) -> Completions:
        texts = [self.format_prompt(p) for p in prompts]
        if self.context_length:
            max_tokens = sampler.gen_length or self.gen_length
            longest = max((len(self.tokenizer.encode(t)) for t in texts), default=0)
            if longest + max_tokens > self.context_length:
                raise ValueError(f"{self.name}: a prompt of {longest} tokens plus {max_tokens} to generate exceeds "
                                 f"the model's context of {self.context_length} (max_position_embeddings); "
                                 "shorten the prompt or lower sampler.gen_length")
        return super().generate(texts, sampler, seeds=seeds, heads=heads)

    def extend(self, prompts: Sequence[str], prefixes: Sequence[Sequence[int]], sampler: SamplerConfig, *,
               seeds: Sequence[int], max_tokens: int) -> Completions:
        """``ARModel.extend`` on the formatted prompts (particle search over prefixes)."""
        return super().extend([self.format_prompt(p) for p in prompts], prefixes, sampler, seeds=seeds,
                              max_tokens=max_tokens)

    #: no re-denoising of candidates (``Search(strategy="repair")``) for an AR model
    infill = None


def load_causal_lm(source: HFSource, config: dict, *, trust_remote_code: bool, dtype: torch.dtype,
                   device: torch.device, n_params: int | None, chat: bool | None, answer_format: str | None,
                   system_prompt: str | None, tokenizer: str | None, backend: str = "auto") -> HFCausalModel:
    """An ``HFCausalModel`` over ``source`` (config.json already read and classified)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    spec = source.spec
    try:
        hf_tok = AutoTokenizer.from_pretrained(tokenizer or source.load_location(),
                                               revision=None if tokenizer else source.revision,
                                               trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - one line whatever went wrong
        raise ValueError(f"{spec}: could not load the tokenizer ({_first_line(err)}); pass "
                         "hf.tokenizer=<a compatible one>") from None
    tok = HFTokenizer(hf_tok, mask_id=NO_MASK)
    context = context_length(config)
    if device.type == "meta":
        engine = DescribedBackend(resolve_backend(backend))
    elif resolve_backend(backend) == "vllm":
        if source.revision:
            raise ValueError(f"{spec}: a revision (@...) is not passed to vLLM; download that revision to a "
                             "directory and load hf:<dir>, or use ar_backend=transformers")
        engine = VLLMBackend(source.load_location(), eos_id=tok.eos_id, device=device, max_model_len=context or 2048,
                             stop_ids=sorted(tok.stop_ids), trust_remote_code=trust_remote_code)
    else:
        hf_logging.disable_progress_bar()
        try:
            network = AutoModelForCausalLM.from_pretrained(source.load_location(), revision=source.revision,
                                                           trust_remote_code=trust_remote_code, dtype=dtype)
        except Exception as err:  # noqa: BLE001 - one line whatever went wrong
            raise ValueError(f"{spec}: loading the causal LM failed ({type(err).__name__}: {_first_line(err)})") \
                from None
        engine = TransformersBackend(network.to(device), pad_id=tok.pad_id, eos_id=tok.eos_id,
                                     stop_ids=sorted(tok.stop_ids))
    use_chat = tok.has_chat_template if chat is None else bool(chat)
    if use_chat and not tok.has_chat_template:
        raise ValueError(f"{spec}: chat=true but the tokenizer has no chat template; pass hf.chat=false")
    fmt = PromptFormat(chat=use_chat, answer_format=answer_format, system_prompt=system_prompt)
    meta = {"family": "causal-lm", "architecture": (config.get("architectures") or [None])[0],
            "source": source.location, "revision": source.revision, "dtype": str(dtype).removeprefix("torch."),
            "parameters": n_params, "gen_length": DEFAULT_GEN_LENGTH, "chat": use_chat,
            "answer_format": answer_format}
    return HFCausalModel(engine, tok, meta, spec, prompt_format=fmt, num_parameters=n_params,
                         context_length=context)
