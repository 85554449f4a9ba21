#!/usr/bin/env bash
# Planning tasks where generation order matters, on one GPU: a masked diffusion model and an AR
# model of the same size, trained on the same stream for the same steps (twins under one
# budget), SDTT students of the diffusion model, then every search of each family side by side
# (benchmarks.native_search: best-of-N, verify-and-stop, particles, repair; the AR twin's prefix
# particles), many problems at a time and one at a time.
#
#   bash benchmarks/gpu_train_planning.sh cd4|cd5|sudoku6|sudoku9
#   OBJECTIVE=mdm bash benchmarks/gpu_train_planning.sh sudoku9   # Ye et al.'s MDM loss
#
# Ye et al. (ICLR 2025, "Beyond Autoregression") report CD4 91.5 % for an 85M diffusion model
# against 45.8 % for the same-size AR model, and 9x9 Sudoku 100 % (6M) against about 20 %.
# The defaults size a run for about 10 minutes of an H100 (MODEL=mini: about 6M parameters);
# MODEL=small and more STEPS are the paper's scale. Number-level tokens for Countdown (one token
# per operand), characters for Sudoku. Results: $OUT (default runs/gpu-<task>): mdlm/, ar/
# (same size, steps and batch), sdtt/ (round-*), native_search.md. Each stage has a wall-clock
# cap; a capped stage keeps its last exported checkpoint (save_every). With DEVICE=cpu and tiny
# settings it is the offline smoke test (tests/test_gpu_planning_recipe.py).
set -uo pipefail
cd "$(dirname "$0")/.."
TASK="${1:-cd4}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-runs/gpu-$TASK}"
DEVICE="${DEVICE:-cuda}"
MODEL="${MODEL:-mini}"
BATCH="${BATCH:-512}"
STEPS="${STEPS:-4000}"; CAP="${CAP:-240}"             # each twin
SDTT_STEPS="${SDTT_STEPS:-400}"; SDTT_CAP="${SDTT_CAP:-120}"
MIN_STEPS="${MIN_STEPS:-8}"
PROBLEMS="${PROBLEMS:-500}"; LATENCY="${LATENCY:-20}"; SAMPLES="${SAMPLES:-16}"
WORKERS="${WORKERS:-8}"
EVAL="${EVAL:-128}"                                   # validation problems of each stage's own check
OBJECTIVE="${OBJECTIVE:-mdlm}"                        # mdlm (NELBO) or mdm (Ye et al.'s reweighted loss, decoded margin-first)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
quiet() { grep -v "it/s" | tail -"$1"; }   # drop tqdm lines, keep the summary

case "$TASK" in
  cd4) task=(task=countdown task.options.n=4 task.tokenizer.kind=numbers) ;;
  cd5) task=(task=countdown task.options.n=5 task.tokenizer.kind=numbers) ;;
  sudoku6) task=(task=sudoku task.options.size=6) ;;
  sudoku9) task=(task=sudoku task.options.size=9 model.max_length=192) ;;
  *) echo "unknown task $TASK: use cd4, cd5, sudoku6 or sudoku9"; exit 2 ;;
esac
common=("${task[@]}" model="$MODEL" device="$DEVICE" train.steps="$STEPS" train.batch_size="$BATCH" train.warmup=100
        train.eval_every=0 train.save_every=250 train.data_workers="$WORKERS" eval.problems="$EVAL")

decode=()
[ "$OBJECTIVE" = mdm ] && decode=(eval.sampler.method=confidence +eval.sampler.remasking=margin)
echo "== masked diffusion model ($OBJECTIVE, $STEPS steps of $BATCH, $MODEL, cap ${CAP}s)"
timeout "$CAP" "$PY" -m distill.pretrain "${common[@]}" objective="$OBJECTIVE" "${decode[@]}" output_dir="$OUT/mdlm" \
  2>&1 | quiet 3
[ -f "$OUT/mdlm/checkpoint/config.json" ] || { echo "no diffusion checkpoint was exported; stopping"; exit 2; }

echo "== its AR twin (the same size, stream, steps and batch; its tokenizer)"
timeout "$CAP" "$PY" -m distill.pretrain "${common[@]}" objective=ar tokenizer_from="$OUT/mdlm/checkpoint" \
  output_dir="$OUT/ar" 2>&1 | quiet 3
[ -f "$OUT/ar/checkpoint/config.json" ] || { echo "no AR checkpoint was exported; stopping"; exit 2; }

echo "== SDTT students of the diffusion model (down to $MIN_STEPS steps, $SDTT_STEPS steps a round, cap ${SDTT_CAP}s)"
timeout "$SDTT_CAP" "$PY" -m distill.sdtt teacher="$OUT/mdlm/checkpoint" device="$DEVICE" min_steps="$MIN_STEPS" \
  steps_per_round="$SDTT_STEPS" train.batch_size="$BATCH" train.save_every=100 train.data_workers="$WORKERS" \
  eval.problems="$EVAL" eval.batch_size="$EVAL" output_dir="$OUT/sdtt" 2>&1 | quiet 6

students=()
for d in "$OUT"/sdtt/round-*; do [ -f "$d/config.json" ] && students+=("$d"); done
echo "== every search of each family ($PROBLEMS problems x $SAMPLES, $LATENCY one at a time)"
"$PY" -m benchmarks.native_search "$OUT/mdlm/checkpoint" "${students[@]}" "$OUT/ar/checkpoint:ar_backend=auto" \
  --problems "$PROBLEMS" --latency-problems "$LATENCY" --samples "$SAMPLES" --device "$DEVICE" --out "$OUT" 2>&1 | tail -40
