#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: linters, logic, nodes, pipeline.
# Extra arguments go to pytest, e.g. scripts/test.sh -k budget -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
# A domain of its own per run, so tests never meet another ROS graph on this host.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 101 ))}"
set +e
python -m pytest -ra --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
