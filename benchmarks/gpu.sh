#!/usr/bin/env bash
# One prepared script for a GPU machine (the project's device: an H100 with CUDA torch,
# but no ray, vllm or xformers, and no internet). Run from the repository root:
#   bash benchmarks/gpu.sh            # results in $OUT (default ./gpu-out)
# Wheels carried in ./wheels/ (git-ignored; at most ~64 MiB) are installed without an index:
# an xformers wheel (--no-deps, it must not replace torch) and pure-Python wheels of any of
# hydra-core/omegaconf/antlr4, safetensors, tokenizers, transformers, math-verify, sympy,
# tqdm that the machine lacks. Uses the local executor and the transformers AR backend.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
echo "== card"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
if ls wheels/xformers-*.whl >/dev/null 2>&1; then pip install -q --no-deps wheels/xformers-*.whl; fi
if ls wheels/*.whl >/dev/null 2>&1; then
  pip install -q --no-index --find-links wheels hydra-core safetensors tokenizers transformers math-verify sympy tqdm 2>/dev/null || true
fi
pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "== imports"
missing=$(python - <<'PY'
import importlib
need = ["torch", "numpy", "omegaconf", "hydra", "safetensors", "tokenizers", "transformers", "sympy", "tqdm", "math_verify"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "MISSING on this machine: $missing (carry their wheels in ./wheels/); stopping"; exit 2
fi
python -c "import xformers.ops; print('xformers', xformers.__version__)" || echo "xformers not installed: only SDPA is measured"
echo "== measurements (local executor, transformers AR backend)"
timeout 420 python benchmarks/gpu_bench.py --device cuda --out "$OUT" || echo "gpu_bench failed or timed out"
echo "== gpu-marked tests"
timeout 120 python -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15
echo "== done: $OUT/gpu.md, $OUT/gpu.json, $OUT/gpu.log"
