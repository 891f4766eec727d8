#!/usr/bin/env bash
# Set everything up (idempotent) and run the main job: the composed pipeline on its built-in
# synthetic camera, printing the per-stage latency report. Arguments go to the pipeline runner
# (see `scripts/run.sh --help`), e.g. scripts/run.sh --frames 600 --report-json report.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
exec python -m edge_infer_ros.runner "$@"
