"""``load_hf_model``: ``hf:<hub id or dir>`` -> ``HFDiffusionModel`` (what ``load_model("hf:...")`` calls)."""
from __future__ import annotations

import torch

from ..machine import resolve_device
from .adapters import AdapterConfig, DenoiserAdapter, RemoteAdapter
from .causal import HFCausalModel, is_causal_lm, load_causal_lm
from .defaults import default_sampler
from .family import MASK_IDS, REMOTE_FAMILIES, detect_family, needs_remote_code
from .native import NATIVE, load_native, native_reason
from .model import HFDiffusionModel
from .precision import choose_dtype, count_parameters
from .prompting import PromptFormat
from .source import HFSource, _first_line, parse_source, read_config
from .tokenizer import HFTokenizer

#: Dream's generation code calls its network with attention_mask="full" (no padding reaches it here)
CALL_KWARGS = {"llada": {}, "dream": {"attention_mask": "full"}}
#: auto classes tried, in order, for the repository's own modelling code
AUTO_CLASSES = ("AutoModel", "AutoModelForMaskedLM", "AutoModelForCausalLM")


def load_hf_model(
    spec: str,
    *,
    trust_remote_code: bool = False,
    family: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    chat: bool | None = None,
    answer_format: str | None = None,
    system_prompt: str | None = None,
    mask_id: int | None = None,
    tokenizer: str | None = None,
    native: bool | None = None,
    ar_backend: str = "auto",
) -> HFDiffusionModel | HFCausalModel:
    """Load a Hugging Face masked-diffusion model, or a causal LM (``causal``), ready for ``Search``.

    Args:
        spec: ``"hf:<owner/name>[@revision]"`` or ``"hf:<local dir>"``.
        trust_remote_code: allow running the repository's modelling code (LLaDA, Dream);
            without it such a model is a one-line ``ValueError``.
        family: force llada | dream | mdlm | sdtt (default: detected from config.json).
        dtype: bfloat16 | float16 | float32 (default: bf16 on CUDA, fp32 on CPU; see ``precision``).
        device: cpu | cuda[:i] | auto, or "meta" to only describe the model (no weights
            are read: a Ray driver needs the family and default sampler only).
        chat: apply the tokenizer's chat template (default: when it has one).
        answer_format: None | "hash" | "boxed": instruction on how to write the final answer.
        system_prompt: optional system turn for chat prompts.
        mask_id: override the MASK id (default: config ``mask_token_id``, else the family's).
        tokenizer: tokenizer name or directory (default: the model's own; MDLM / SDTT: gpt2).
        native: LLaDA and Dream: build the network here (``sdtt_search.hf.llada`` /
            ``.dream``: no remote code, left padding, Fast-dLLM's caches). None (default):
            whenever its config.json is one those modules build; False: the repository's code.
        ar_backend: causal LMs: "auto" (vLLM when installed, else transformers), "vllm" or
            "transformers" (``sdtt_search.ar.backends``).
    """
    source = parse_source(spec)
    config = read_config(source)
    if family is None and _is_plain_causal_lm(config, source):
        return _load_causal(source, config, trust_remote_code=trust_remote_code, dtype=dtype, device=device,
                            chat=chat, answer_format=answer_format, system_prompt=system_prompt, tokenizer=tokenizer,
                            ar_backend=ar_backend)
    family = detect_family(config, hint=source.location, family=family)
    use_native = _use_native(family, config, native, spec)
    if family in REMOTE_FAMILIES and not use_native and needs_remote_code(config) and not trust_remote_code:
        why = f" (it cannot be built natively: {native_reason(family, config)})" if native is None else ""
        raise ValueError(f"{spec} runs modelling code from its repository{why}; if you trust it, pass "
                         "trust_remote_code=true (CLI) / trust_remote_code=True (API)")
    describe_only = str(device) == "meta"
    device = torch.device("meta") if describe_only else resolve_device(device)
    n_params = count_parameters(source, config)
    run_dtype = choose_dtype(dtype, torch.device("cuda" if describe_only else device.type), n_params, spec)
    if family not in REMOTE_FAMILIES and not describe_only and device.type != "cuda":
        run_dtype = torch.float32  # MDLM / SDTT keep fp32 weights; bf16 is autocast, which only runs on CUDA
    sampler = default_sampler(family, revision=source.revision)
    meta = {
        "family": family, "source": source.location, "revision": source.revision, "dtype": str(run_dtype).removeprefix("torch."),
        "parameters": n_params, "gen_length": sampler.gen_length, "sampling_steps": sampler.steps,
    }
    if family in REMOTE_FAMILIES:
        meta["network"] = "native" if use_native else "remote code"
    if describe_only:
        fmt = PromptFormat(chat=bool(chat), answer_format=answer_format, system_prompt=system_prompt)
        meta.update(chat=chat, answer_format=answer_format)  # chat None: decided by the tokenizer when loaded
        return HFDiffusionModel(None, None, meta, spec, family=family, prompt_format=fmt)

    if use_native:
        tok = _remote_tokenizer(source, config, family, tokenizer, trust_remote_code, mask_id)
        adapter = load_native(family, source, config, mask_id=tok.mask_id, dtype=run_dtype)
    elif family in REMOTE_FAMILIES:
        tok = _remote_tokenizer(source, config, family, tokenizer, trust_remote_code, mask_id)
        adapter = _remote_adapter(source, config, family, tok, trust_remote_code, run_dtype)
    else:
        from .mdlm import load_denoiser

        tok = _mdlm_tokenizer(source, config, tokenizer, mask_id)
        denoiser = load_denoiser(source, config, mask_id=tok.mask_id)
        if denoiser.config.vocab_size != tok.vocab_size:
            raise ValueError(f"{spec}: the weights have {denoiser.config.vocab_size} tokens but the tokenizer gives "
                             f"{tok.vocab_size} (its tokens + MASK); pass tokenizer=<the one the model was trained with>")
        adapter = DenoiserAdapter(
            denoiser, AdapterConfig(family=family, mask_id=tok.mask_id, vocab_size=denoiser.config.vocab_size,
                                    time_conditioning=denoiser.config.time_conditioning),
            autocast_dtype=run_dtype)
    adapter = adapter.to(device).eval()
    use_chat = tok.has_chat_template if chat is None else bool(chat)
    if use_chat and not tok.has_chat_template:
        raise ValueError(f"{spec}: chat=true but the tokenizer has no chat template; pass chat=false")
    fmt = PromptFormat(chat=use_chat, answer_format=answer_format, system_prompt=system_prompt)
    meta.update(chat=use_chat, answer_format=answer_format, mask_id=tok.mask_id)
    return HFDiffusionModel(adapter, tok, meta, spec, family=family, prompt_format=fmt)


def _is_plain_causal_lm(config: dict, source: HFSource) -> bool:
    """A ``...ForCausalLM`` config that no diffusion family claims."""
    if not is_causal_lm(config):
        return False
    try:
        detect_family(config, hint=source.location)
    except ValueError:
        return True
    return False


def _load_causal(source: HFSource, config: dict, *, trust_remote_code: bool, dtype, device, chat, answer_format,
                 system_prompt, tokenizer, ar_backend: str = "auto") -> HFCausalModel:
    """Checks (architecture, remote code, weights) with one-line errors, then ``load_causal_lm``."""
    spec = source.spec
    if needs_remote_code(config):
        if not (config.get("auto_map") or {}).get("AutoModelForCausalLM"):
            raise ValueError(f"{spec}: architecture {config.get('architectures')} (model_type="
                             f"{config.get('model_type')!r}) is unknown to this transformers and the repository "
                             "ships no code for it (auto_map.AutoModelForCausalLM)")
        if not trust_remote_code:
            raise ValueError(f"{spec} runs modelling code from its repository; if you trust it, pass "
                             "trust_remote_code=true (CLI) / trust_remote_code=True (API)")
    if source.local and not any(any(source.path.glob(p)) for p in ("*.safetensors", "pytorch_model*.bin")):
        raise ValueError(f"{spec}: {source.path} has no weights (*.safetensors or pytorch_model*.bin)")
    device = torch.device("meta") if str(device) == "meta" else resolve_device(device)
    n_params = count_parameters(source, config)
    run_dtype = choose_dtype(dtype, torch.device("cuda") if device.type == "meta" else device, n_params, spec)
    return load_causal_lm(source, config, trust_remote_code=trust_remote_code, dtype=run_dtype, device=device,
                          n_params=n_params, chat=chat, answer_format=answer_format, system_prompt=system_prompt,
                          tokenizer=tokenizer, backend=ar_backend)


def _use_native(family: str, config: dict, native: bool | None, spec: str) -> bool:
    """Whether to build the network here (``sdtt_search.hf.llada``) instead of running its repository's code."""
    if native is not None and not isinstance(native, bool):
        raise ValueError(f"native={native!r} must be true, false or null")
    if family not in NATIVE:
        if native:
            raise ValueError(f"{spec}: native=true builds {' and '.join(NATIVE)} networks only, this is family "
                             f"{family}; drop native")
        return False
    reason = native_reason(family, config)
    if native and reason:
        raise ValueError(f"{spec}: native=true but {reason}; load it with its own code (native=false "
                         "trust_remote_code=true)")
    return native is not False and reason is None


def _auto_tokenizer(location: str, revision: str | None, trust_remote_code: bool, spec: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - one line whatever went wrong
        hint = "" if trust_remote_code else ("; a tokenizer written as repository code (Dream's) needs "
                                             "trust_remote_code=true, or pass tokenizer=<a compatible one>")
        raise ValueError(f"{spec}: could not load the tokenizer from {location} ({_first_line(err)}){hint}") from None


def _remote_tokenizer(source: HFSource, config: dict, family: str, name: str | None, trust: bool,
                      mask_id: int | None) -> HFTokenizer:
    hf = _auto_tokenizer(name or source.load_location(), None if name else source.revision, trust, source.spec)
    mask = mask_id if mask_id is not None else config.get("mask_token_id", MASK_IDS[family])
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and not 0 <= int(mask) < vocab:
        raise ValueError(f"{source.spec}: mask id {mask} is outside the model's vocabulary of {vocab}; pass mask_id=")
    return HFTokenizer(hf, mask_id=int(mask))


def _mdlm_tokenizer(source: HFSource, config: dict, name: str | None, mask_id: int | None) -> HFTokenizer:
    """The model directory's tokenizer, else the one its config names, else GPT-2; MASK appended after
    its tokens unless it has one (MDLM's rule); pad = eos; BOS first in every prompt."""
    if name is None:
        has_own = source.local and any((source.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tok_cfg = config.get("tokenizer") if isinstance(config.get("tokenizer"), dict) else {}
        data_cfg = config.get("data") if isinstance(config.get("data"), dict) else {}
        name = (source.load_location() if has_own
                else tok_cfg.get("name") or data_cfg.get("tokenizer_name_or_path") or "gpt2")
    hf = _auto_tokenizer(name, None, False, source.spec)
    if mask_id is None:
        mask_id = hf.mask_token_id if hf.mask_token_id is not None else len(hf)
    return HFTokenizer(hf, mask_id=mask_id, pad_id=hf.eos_token_id, prepend_bos=True)


def _auto_class(config: dict):
    import transformers

    auto_map = config.get("auto_map") or {}
    for name in AUTO_CLASSES:
        if name in auto_map:
            return getattr(transformers, name)
    return transformers.AutoModel


def _dtype_kwarg() -> str:
    """transformers >= 4.56 calls it ``dtype``; older versions ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _remote_adapter(source: HFSource, config: dict, family: str, tok: HFTokenizer, trust: bool,
                    dtype: torch.dtype) -> RemoteAdapter:
    """The repository's network in ``dtype`` on CPU (the caller moves it; never sharded with device_map)."""
    auto = _auto_class(config)
    try:
        network = auto.from_pretrained(source.load_location(), revision=source.revision, trust_remote_code=trust,
                                       use_safetensors=True, **{_dtype_kwarg(): dtype})
    except Exception as err:  # noqa: BLE001 - one line whatever went wrong
        raise ValueError(f"{source.spec}: loading the network failed ({type(err).__name__}: {_first_line(err)}); "
                         "weights are read from safetensors only") from None
    vocab = getattr(network.config, "vocab_size", None) or config.get("vocab_size")
    adapter_config = AdapterConfig(family=family, mask_id=tok.mask_id, vocab_size=int(vocab), shift_logits=family == "dream")
    return RemoteAdapter(network, adapter_config, call_kwargs=CALL_KWARGS[family])
