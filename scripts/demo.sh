#!/usr/bin/env bash
# The demo command: sets up .venv (first run only), starts a whole Corral cluster on this
# machine with `corral up` (real NVIDIA GPUs where NVML finds them, a simulated
# heterogeneous cluster otherwise), runs the example training job to completion, prints
# its logs, and shuts the cluster down. Exit code: the job's (0 when it SUCCEEDED).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
rm -rf .corral/demo
exec corral up --data-dir .corral/demo --listen 127.0.0.1:0 --example examples/job.yaml "$@"
