#!/usr/bin/env bash
# Accuracy vs compute: every model x sampling steps x samples per problem, on 100 countdown problems.
# Each grid point is a resumable `sdtt_search.run` output dir under output_dir; the combined table is
# output_dir/sweep.csv + sweep.md, and accuracy_vs_wallclock.png plots accuracy against wall-clock.
#   MODELS: zoo names or checkpoint dirs, e.g. MODELS=[outputs/teacher,outputs/sdtt-round7]
#   EXECUTOR=ray runs each grid point as a Ray task (private local cluster; add ray.address=auto to join one).
set -euo pipefail
MODELS=${MODELS:-"[countdown-cd3-num-sdtt-4]"}
EXECUTOR=${EXECUTOR:-local}
python -m sdtt_search.sweep task=countdown "models=${MODELS}" "steps=[4,8,16]" "samples=[1,4,16,64]" \
  limit=100 executor="${EXECUTOR}" output_dir=outputs/sweep_countdown "$@"
