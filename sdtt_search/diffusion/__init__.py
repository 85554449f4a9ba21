"""Masked diffusion: schedule, SUBS, training loss, samplers."""
from .blocks import attention_block, denoise, first_generated_column, takes_noise
from .batching import GenerationBatch, build_batch
from ..sampling_config import SamplerConfig, fit_blocks  # re-exported (SamplerConfig lives in sdtt_search.sampling_config)
from .generate import Generation, generate
from .loss import LossOutput, ar_loss, mask_tokens, mdlm_loss, mdm_loss, sample_times, uniform
from .rng import RowRNG, categorical, row_positions
from .samplers import SampleOutput, ancestral_sample, confidence_sample, is_time_conditioned, sample, transfer_counts
from .schedule import LogLinearSchedule
from .subs import NEG_INF, subs_log_probs

__all__ = [
    "GenerationBatch", "build_batch", "SamplerConfig", "fit_blocks", "Generation", "generate", "LossOutput",
    "ar_loss", "mask_tokens", "mdlm_loss", "mdm_loss", "sample_times", "uniform", "RowRNG", "categorical", "row_positions",
    "SampleOutput", "ancestral_sample", "confidence_sample", "is_time_conditioned", "sample", "transfer_counts",
    "LogLinearSchedule", "NEG_INF", "subs_log_probs", "attention_block", "denoise", "first_generated_column", "takes_noise",
]
