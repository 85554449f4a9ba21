"""The autoregressive baseline: Llama-format AR twins, sampled by vLLM or transformers."""
from .backends import BACKENDS, ARSample, TransformersBackend, VLLMBackend, resolve_backend, vllm_available
from .checkpoint import ARPretrained, is_ar_checkpoint, load_ar_pretrained, save_ar_pretrained
from .model import ARModel, load_ar_model

__all__ = [
    "BACKENDS", "ARSample", "TransformersBackend", "VLLMBackend", "resolve_backend", "vllm_available",
    "ARPretrained", "is_ar_checkpoint", "load_ar_pretrained", "save_ar_pretrained", "ARModel", "load_ar_model",
]
