#!/usr/bin/env bash
# The number-level CD3 pipeline on one GPU: AR twin -> causal block-wise denoiser -> block-causal
# SDTT students (8 and 4 steps) -> a tail-distilled student (4-call budget, distill.sdtt layout=tail). Its first three
# stages made the zoo's countdown-cd3-ar (continued from a CPU-trained twin), countdown-cd3-num-teacher and
# countdown-cd3-num-sdtt-8 on an H200 in one device call of about 5 minutes on 2026-11-27 (docs/results.md, "GPU (H200)").
#
#   bash benchmarks/gpu_train_cd3.sh [AR_TWIN_DIR]
#
# AR_TWIN_DIR: a number-level AR twin to continue (e.g. one trained on CPU with
#   python -m distill.pretrain task=countdown task.tokenizer.kind=numbers objective=ar ...);
#   without it the twin is trained from scratch here (AR_STEPS steps of BATCH).
# Results: $OUT (default runs/gpu-cd3): nar/, ncpre/, nsdtt/ (round-1-steps-8, round-2-steps-4,
# rounds.json), ntail/ (round-1-steps-4: TAIL_STEPS=0 skips it), nnoise/ (the noise-conditioned
# student from ntail: NOISE_STEPS=0 skips it) and one tar per stage, each under 16 MiB so a device call can bring it back.
# Each stage has a wall-clock cap: a capped stage keeps its last exported checkpoint (save_every),
# which the next stage starts from. With WORKERS=0 one CPU process generates the examples (about
# 12k CD3 examples/s on the H200 machine): that, not the GPU, bounds tiny models; WORKERS=8 spreads
# it over 8 processes (train.data_workers).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-runs/gpu-cd3}"
BATCH="${BATCH:-512}"
AR_STEPS="${AR_STEPS:-2000}"; AR_CAP="${AR_CAP:-130}"
PRE_STEPS="${PRE_STEPS:-1000}"; PRE_CAP="${PRE_CAP:-80}"
SDTT_STEPS="${SDTT_STEPS:-400}"; SDTT_CAP="${SDTT_CAP:-100}"
# the CPU-made tail student (the first stage of countdown-cd3-num-sdtt-4) had 1500 steps of 256
TAIL_STEPS="${TAIL_STEPS:-2000}"; TAIL_CAP="${TAIL_CAP:-200}"  # a capped run exports nothing: size the steps to the cap
# the noise-conditioned student (first made on CPU: 1500 off-policy + 1500 on-policy steps of 256) from the tail student
NOISE_STEPS="${NOISE_STEPS:-4000}"; NOISE_CAP="${NOISE_CAP:-300}"
# processes making training examples (train.data_workers); the shipped students were made with 0
# (one process, about 6k examples/s: the bound of that run); more workers draw other examples
WORKERS="${WORKERS:-0}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
quiet() { grep -v "it/s" | tail -"$1"; }   # drop tqdm lines, keep the summary

if [ $# -ge 1 ]; then
  ar_init="init_from=$1 seed=2 train.lr=3e-4"
else
  ar_init="train.lr=1e-3"
fi
echo "== AR twin ($AR_STEPS steps of $BATCH, cap ${AR_CAP}s)"
timeout "$AR_CAP" "$PY" -m distill.pretrain task=countdown task.tokenizer.kind=numbers objective=ar $ar_init \
  train.steps="$AR_STEPS" train.batch_size="$BATCH" train.warmup=50 train.eval_every=0 train.save_every=250 \
  train.data_workers="$WORKERS" eval.problems=256 output_dir="$OUT/nar" 2>&1 | quiet 3
[ -f "$OUT/nar/checkpoint/config.json" ] || { echo "no AR checkpoint was exported; stopping"; exit 2; }

echo "== causal block-wise denoiser from the twin ($PRE_STEPS steps, cap ${PRE_CAP}s)"
timeout "$PRE_CAP" "$PY" -m distill.pretrain task=countdown task.tokenizer.kind=numbers task.gen_length=12 \
  model.backbone=llama model.causal=true init_from="$OUT/nar/checkpoint" semi_ar=0.8 train.steps="$PRE_STEPS" \
  train.batch_size="$BATCH" train.lr=3e-4 train.warmup=50 train.eval_every=0 train.save_every=250 eval.problems=128 \
  train.data_workers="$WORKERS" \
  eval.sampler.method=confidence +eval.sampler.block_length=2 eval.sampler.steps=6 output_dir="$OUT/ncpre" 2>&1 | quiet 3
[ -f "$OUT/ncpre/checkpoint/config.json" ] || { echo "no denoiser checkpoint was exported; stopping"; exit 2; }

echo "== block-causal SDTT, 16 -> 8 -> 4 steps ($SDTT_STEPS steps per round, cap ${SDTT_CAP}s)"
timeout "$SDTT_CAP" "$PY" -m distill.sdtt teacher="$OUT/nar/checkpoint" gen_length=12 student_init="$OUT/ncpre/checkpoint" \
  block_causal=true teacher_steps=16 min_steps=4 steps_per_round="$SDTT_STEPS" semi_ar=1.0 eval.method=confidence \
  eval.block_length=1 eval.problems=256 eval.batch_size=256 train.batch_size="$BATCH" train.save_every=100 \
  train.data_workers="$WORKERS" \
  output_dir="$OUT/nsdtt" 2>&1 | quiet 8

if [ "$TAIL_STEPS" -gt 0 ]; then
  echo "== tail distillation to a 4-call budget ($TAIL_STEPS steps, cap ${TAIL_CAP}s)"
  timeout "$TAIL_CAP" "$PY" -m distill.sdtt teacher="$OUT/nar/checkpoint" gen_length=12 student_init="$OUT/ncpre/checkpoint" \
    layout=tail divergence=fkl semi_ar=1.0 teacher_steps=12 min_steps=4 steps_per_round="$TAIL_STEPS" \
    eval.method=confidence eval.block_length=1 eval.threshold=0.9 eval.problems=256 eval.batch_size=256 \
    train.batch_size="$BATCH" train.save_every=250 train.data_workers="$WORKERS" output_dir="$OUT/ntail" 2>&1 | quiet 4
fi

if [ "$NOISE_STEPS" -gt 0 ] && [ -f "$OUT/ntail/round-1-steps-4/config.json" ]; then
  echo "== noise-conditioned on-policy student, 4-call budget ($NOISE_STEPS steps, cap ${NOISE_CAP}s)"
  timeout "$NOISE_CAP" "$PY" -m distill.sdtt teacher="$OUT/nar/checkpoint" gen_length=12 \
    student_init="$OUT/ntail/round-1-steps-4" layout=tail divergence=fkl semi_ar=1.0 teacher_steps=12 min_steps=4 \
    steps_per_round="$NOISE_STEPS" noise_input=true on_policy=true tail_reveal=0.0 train.lr=1e-4 train.schedule=cosine \
    eval.method=confidence eval.block_length=1 eval.threshold=0.8 eval.problems=256 eval.batch_size=256 \
    train.batch_size="$BATCH" train.save_every=250 train.data_workers="$WORKERS" output_dir="$OUT/nnoise" 2>&1 | quiet 4
fi

cd "$OUT" && rm -f ./*/train_state.pt
for stage in nar ncpre nsdtt ntail nnoise; do [ -d "$stage" ] && tar cf "$stage.tar" "$stage"; done
ls -la
