"""The denoiser network and its configuration."""
from .attention import select_backend
from .config import MODEL_SIZES, ModelConfig
from .dit import Denoiser

__all__ = ["MODEL_SIZES", "ModelConfig", "Denoiser", "select_backend"]
