"""The denoiser networks and their configuration."""
from .attention import select_backend
from .config import MODEL_SIZES, ModelConfig
from .dit import Denoiser
from .llama_denoiser import LlamaDenoiser, build_denoiser

__all__ = ["MODEL_SIZES", "ModelConfig", "Denoiser", "LlamaDenoiser", "build_denoiser", "select_backend"]
