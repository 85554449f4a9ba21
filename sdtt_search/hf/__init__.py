"""Hugging Face masked-diffusion models (LLaDA, Dream, MDLM, SDTT) behind ``load_model("hf:...")``,
and causal LMs (Llama, Qwen2, Mistral, GPT-2, ...) as the autoregressive baseline (``causal``).

    from sdtt_search import load_model
    model = load_model("hf:GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True, device="cuda")
    model.default_sampler()   # LLaDA's defaults: confidence, gen 256, block 32, 256 steps

Modules, one job each: ``source`` (where the files are), ``family`` (which adapter),
``adapters`` (``input_ids -> logits [B, L, V]``), ``mdlm`` (MDLM / SDTT weights into our
``Denoiser``), ``tokenizer`` (an ``AutoTokenizer`` with pad / mask / eos ids), ``prompting``
(chat template and answer format), ``precision`` (dtype policy), ``defaults`` (the
authors' samplers), ``model`` (what the search engine calls), ``loader``
(``load_hf_model``), ``causal`` (a ``...ForCausalLM`` as an ``ARModel``), ``options`` (run.yaml keys -> ``load_model`` arguments).

Importing this package does not import ``transformers``; loading a model does.
"""
from .defaults import default_sampler, fast_dllm
from .family import FAMILIES, detect_family
from .causal import HFCausalModel
from .loader import load_hf_model
from .model import HFDiffusionModel
from .options import load_options_from_config
from .precision import CPU_FP32_MAX_PARAMS
from .prompting import ANSWER_FORMATS, PromptFormat

__all__ = [
    "ANSWER_FORMATS", "CPU_FP32_MAX_PARAMS", "FAMILIES", "HFCausalModel", "HFDiffusionModel", "PromptFormat", "default_sampler",
    "detect_family", "fast_dllm", "load_hf_model", "load_options_from_config",
]
