"""run.yaml keys -> ``load_model`` keyword arguments for ``hf:`` models.

    trust_remote_code: false   # allow modelling code from the hub (LLaDA, Dream, remote causal LMs)
    family: null               # llada | dream | mdlm | sdtt (null: detected)
    dtype: null                # bfloat16 | float16 | float32 (null: bf16 on CUDA, fp32 on CPU)
    hf:
      chat: null               # chat template (null: when the tokenizer has one)
      answer_format: auto      # hash | boxed | null; auto: hash for gsm8k, else none
      system_prompt: null
      native: null             # LLaDA: build the network here (null: when config.json allows; false: remote code)
"""
from __future__ import annotations

from typing import Any

#: answer_format=auto picks this per task
AUTO_ANSWER_FORMAT = {"gsm8k": "hash"}


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def load_options_from_config(cfg: Any, task_name: str) -> dict:
    """``load_model`` keyword arguments (``trust_remote_code``, ``family``, ``dtype``, ``hf_options``)
    from a run config; plain JSON values, so they can travel to Ray workers."""
    trust = _get(cfg, "trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ValueError(f"trust_remote_code={trust!r} must be true or false")  # noqa: TRY004 - a user error
    hf = _get(cfg, "hf", {})
    answer_format = hf.get("answer_format", "auto") if hasattr(hf, "get") else "auto"  # null: no instruction
    if answer_format == "auto":
        answer_format = AUTO_ANSWER_FORMAT.get(task_name)
    chat = _get(hf, "chat", None)
    if chat is not None and not isinstance(chat, bool):
        raise ValueError(f"hf.chat={chat!r} must be true, false or null")
    native = _get(hf, "native", None)
    if native is not None and not isinstance(native, bool):
        raise ValueError(f"hf.native={native!r} must be true, false or null")
    family, dtype = _get(cfg, "family"), _get(cfg, "dtype")
    return {
        "trust_remote_code": trust,
        "family": None if family is None else str(family),
        "dtype": None if dtype is None else str(dtype),
        "hf_options": {"chat": chat, "answer_format": answer_format, "system_prompt": _get(hf, "system_prompt"),
                       "native": native},
    }
