"""What machine a number was measured on (for benchmark tables and model cards)."""
from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """e.g. "CPU: AMD EPYC 9B14 (2 cores), torch 2.13.0" or the GPU's name."""
    parts = [f"CPU: {cpu_model()} ({os.cpu_count()} cores)"]
    if torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    parts.append(f"torch {torch.__version__.split('+')[0]}")
    return ", ".join(parts)


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" -> cuda if available else cpu; a CUDA device without a GPU is a one-line error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} was asked for but no CUDA GPU is visible; use device=cpu or device=auto")
    return torch.device(name)
