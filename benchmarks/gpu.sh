#!/usr/bin/env bash
# One prepared script for a GPU machine (the project's device: an H100 or H200 with CUDA torch
# 2.11 in `python3`, but no ray, vllm, hydra or xformers, and no internet). Run from anywhere:
#   bash benchmarks/gpu.sh            # results in $OUT (default ./gpu-out): gpu.md, gpu.json, gpu.log, pytest-gpu.log,
#                                     # frontier.log, frontier/frontier.json + .png (7 files: a device call brings back 8)
# What it does (about 8.5 minutes, at most ~13; FRONTIER=0 saves 3, KV=0 1.5):
#   1. prints the card and torch's CUDA build;
#   2. checks which Python packages the project needs are missing, and installs only those
#      from wheels carried in ./wheels/ (git-ignored; at most ~64 MiB in all) without an
#      index: an xformers wheel with --no-deps (it must not replace torch) and pure-Python
#      wheels of hydra-core/omegaconf/antlr4, safetensors, tokenizers, transformers,
#      math-verify, sympy, tqdm; then says clearly what is still missing and stops if any is;
#   3. installs this repository with --no-deps (never pulls torch again; falls back to PYTHONPATH);
#   4. python -m benchmarks.gpu_bench --device cuda: xformers vs SDPA denoiser forward,
#      teacher/student/AR tokens/s at batch 1-256 and the batch where AR overtakes the
#      student, the zoo's Sudoku and CD3 models. In-process (the local executor: no ray) and the
#      transformers AR backend (no vllm here);
#      then training steps/s per model size and backend (to size GPU training runs);
#   5. python -m benchmarks.frontier on the card for the CD3 number-level models and the AR twin
#      (transformers backend), unless FRONTIER=0;
#   6. python -m benchmarks.kv_cache speed at a 1.3B LLaDA shape: Fast-dLLM's prefix and dual caches
#      against none (bf16, batch 1-32), unless KV=0;
#   7. python -m pytest -q -m gpu (xformers vs SDPA kernels, pretrain + SDTT rounds on CUDA
#      with xformers, an SDTT update under bf16 lowering the divergence).
#
# The wheels (git-ignored ./wheels/, about 4 MB; made on a machine with PyPI access):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d wheels xformers hydra-core==1.3.8 omegaconf==2.3.1 \
#     math-verify==0.9.0 latex2sympy2_extended==1.11.0
#   pip wheel --no-deps -w wheels antlr4-python3-runtime==4.9.3     # published as an sdist only
# PyPI's xformers 0.0.35 is built for torch 2.10: on torch 2.11 it imports without kernels, the
# library then falls back to SDPA (seen on an H200, 2026-11-27); carry a matching build to compare.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
# the device image's interpreter with CUDA torch is python3 (there may be no plain `python`)
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$(date +%s)

echo "== card"
nvidia-smi --query-gpu=name,memory.total --format=csv || echo "nvidia-smi failed: no NVIDIA driver visible"
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda build', torch.version.cuda, '| cuda available', torch.cuda.is_available())" \
  || { echo "torch does not import: nothing can be measured"; exit 2; }

# module:pip-name of what the project imports at run time (numpy comes with torch; pytest for step 5)
MODULES="numpy:numpy omegaconf:omegaconf hydra:hydra-core antlr4:antlr4-python3-runtime safetensors:safetensors
tokenizers:tokenizers transformers:transformers sympy:sympy tqdm:tqdm math_verify:math-verify yaml:pyyaml
huggingface_hub:huggingface-hub regex:regex packaging:packaging filelock:filelock pytest:pytest"
missing_now() {
  "$PY" - "$MODULES" <<'PY'
import importlib.util, sys
pairs = [p.split(":") for p in sys.argv[1].split()]
print(" ".join(pip for mod, pip in pairs if importlib.util.find_spec(mod) is None))
PY
}

echo "== python packages"
missing=$(missing_now)
echo "missing before install: ${missing:-nothing}"
if [ -d wheels ]; then
  echo "wheels carried: $(ls wheels | tr '\n' ' ')"
  if ls wheels/xformers-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-deps wheels/xformers-*.whl && echo "installed xformers (--no-deps)" || echo "xformers wheel did not install"
  fi
  for pkg in $missing; do
    # one by one, so one absent wheel does not block the others; --no-index: the machine is offline
    if "$PY" -m pip install -q --no-index --find-links wheels "$pkg"; then echo "installed $pkg from wheels/"
    else echo "could not install $pkg from wheels/ (no wheel, or one of its dependencies is missing)"; fi
  done
  missing=$(missing_now)
else
  echo "no ./wheels directory: nothing to install"
fi
if [ -n "$missing" ]; then
  echo "MISSING on this machine: $missing"
  echo "carry their wheels in ./wheels/ (e.g. pip download --no-deps -d wheels $missing) and rerun; stopping"
  exit 2
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 && echo "installed sdtt-search (editable, --no-deps)" \
  || { export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; echo "pip install -e . failed: using PYTHONPATH=$PWD"; }
"$PY" -c "import benchmarks.gpu_bench, transformers; print('transformers', transformers.__version__)" \
  || { echo "the benchmark does not import (see the error above: a package too old or one of its dependencies missing); stopping"; exit 2; }
"$PY" -c "import xformers, xformers.ops; print('xformers', xformers.__version__)" 2>/dev/null \
  || echo "xformers not importable: only SDPA is measured (carry wheels/xformers-*.whl to compare)"
"$PY" -c "from sdtt_search.model.attention import xformers_available as a; print('xformers kernels run:', a())" 2>&1 | tail -2
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'" || { echo "no GPU visible to torch; stopping"; exit 2; }

echo "== measurements (in-process local executor, transformers AR backend: no ray or vllm here)"
timeout 330 "$PY" -m benchmarks.gpu_bench --device cuda --out "$OUT" \
  || echo "gpu_bench failed or timed out (exit $?): $OUT/gpu.json holds the sections measured so far"

if [ "${FRONTIER:-1}" = 1 ]; then
  # the equal-budget frontier on the card (accuracy does not depend on the machine, the budgets do):
  # the CPU run's seeded accuracy runs of all 1000 test problems are reused (--accuracy-from), so
  # the card only times the same models (windowed students on their unwindowed twins' candidates);
  # AR on transformers generate (no vLLM here); `$S:steps=12` (the 4-call student with a budget
  # that never binds: more calls per batch, 4 points more pass@1) reuses the step-budget run and
  # the stratified specs (sampler.stratify=3) the stratified run, so nothing is searched on the card;
  # FRONTIER=0 skips it (about 3 min)
  echo "== frontier on the GPU: CD3 number-level teacher and students vs the AR twin"
  S=countdown-cd3-num-sdtt-4
  timeout 240 "$PY" -m benchmarks.frontier --task countdown --models countdown-cd3-num-teacher \
    countdown-cd3-num-sdtt-8 $S $S:steps=5 $S:steps=12 $S:window=5 $S:window=5,stratify=3 \
    $S:steps=5,head_tokens=3,head_temperature=1.3 countdown-cd3-ar:ar_backend=transformers \
    countdown-cd3-ar:ar_backend=transformers,stratify=3 --problems 1000 --samples 64 \
    --accuracy-from benchmarks/runs/2026-11-28-cd3-window/frontier.json \
    benchmarks/runs/2026-11-28-cd3-step-budget/frontier.json benchmarks/runs/2026-11-28-cd3-stratified/frontier.json \
    --batches 1 8 64 256 --device cuda --ar-backend transformers --out "$OUT/frontier" > "$OUT/frontier.log" 2>&1
  echo "frontier exit code $? (tables in $OUT/frontier.log, $OUT/frontier/frontier.json)"
  grep -A6 "^Targets" "$OUT/frontier.log" | tail -5
fi

if [ "${KV:-1}" = 1 ]; then
  # Fast-dLLM's caches (sampler.kv_cache) on the native LLaDA network at a 1.3B LLaDA shape, bf16,
  # random weights (speed does not depend on them), LLaDA's GSM8K decoding scaled: prompt 128,
  # 256 generated in blocks of 32, 256 steps; KV=0 skips it (about 1.5 min); the table goes to gpu.log
  echo "== Fast-dLLM caches on the card (python -m benchmarks.kv_cache speed)"
  timeout 150 "$PY" -m benchmarks.kv_cache speed --shape llada-1b --device cuda --batch 1 8 32 --steps 256 --repeats 2 \
    || echo "kv_cache speed failed or timed out (exit $?)"
fi

echo "== gpu-marked tests"
# only the modules that hold gpu-marked tests: others may import ray, which this machine lacks
gpu_tests=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
echo "modules: $gpu_tests"
timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider $gpu_tests > "$OUT/pytest-gpu.log" 2>&1
echo "pytest -m gpu exit code $? (5 = none collected)"; tail -15 "$OUT/pytest-gpu.log"

echo "== done in $(( $(date +%s) - start )) s: $OUT/gpu.md, $OUT/gpu.json, $OUT/gpu.log, $OUT/pytest-gpu.log"
