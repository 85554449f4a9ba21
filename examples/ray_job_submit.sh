#!/usr/bin/env bash
# Submit a best-of-N run to a Ray cluster as a Ray job.
#
# Start a one-node cluster first, with token authentication, listening on loopback only
# (the job server is the dashboard, 127.0.0.1:8265; it needs `pip install 'ray[default]'`):
#   ray get-auth-token --generate          # writes ~/.ray/auth_token (once)
#   export RAY_AUTH_MODE=token             # in the shell of `ray start` and of this script
#   ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1
# `ray start` only turns token auth on when RAY_AUTH_MODE=token or a token already exists.
# Clients on this machine read ~/.ray/auth_token; elsewhere set RAY_AUTH_TOKEN=<token> and reach
# port 8265 through an SSH tunnel rather than opening it.
#
# Inside the job, ray.address=auto joins the cluster and `workers` actors each hold a model replica.
# Results land in the job's working directory (outputs/countdown); rerunning the job resumes them.
set -euo pipefail
ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
  python -m sdtt_search.run task=countdown samples=64 executor=ray ray.address=auto workers=4 "$@"
