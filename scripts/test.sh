#!/usr/bin/env bash
# Set everything up (idempotent) and run the test suite in every environment CI checks:
#   kilted      the whole suite on the ROS 2 Kilted wheels (.venv)
#   jazzy       the suite on the ROS 2 Jazzy wheels (.venv-jazzy), less what cannot differ:
#               the ROS-free tests and the linters, and the checks of the benchmarks' output
#               formats (marker bench_format) but for the foreign publisher's, whose figures
#               are the DDS vendor's (with pytest arguments: the whole suite)
#   humble-sim  the ROS tests that start the nodes, the container, the runner and a pipeline,
#               then the main job (30 frames), with Humble's rclpy surface simulated on the
#               Jazzy wheels (test/humble_sim/)
#   oldest      the ROS-free tests on numpy 1.23.5 and OpenCV 4.5.5 (.venv-oldest)
# Each step runs in a subshell of its own; a command failing in it ends that step.
# It fails if any step fails, and prints each step's time. EIR_TEST_STEPS="kilted jazzy" runs
# only those. Extra arguments go to pytest in every step, e.g. scripts/test.sh -k budget -x
# Each step's pytest has a time limit (kilted 1800 s, jazzy 1500, humble-sim 600, oldest 300;
# EIR_STEP_LIMIT_S sets one for all), so a hung run fails in the step that hung.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEPS="${EIR_TEST_STEPS:-kilted jazzy humble-sim oldest}"
# A domain of its own per run, so tests never meet another ROS graph on this host.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 101 ))}"
# The Humble simulation covers these (why: they start every node class, the container, the
# runner's composed and split pipelines, the parameter services and QoS events, the
# publishers' matched event among them, where the package met rclpy's newer names); the rest
# of the suite does not touch rclpy differently.
HUMBLE_SIM_TESTS=(test/test_humble_surface.py test/ros/test_compat.py test/ros/test_parameters_doc.py
  test/pipeline/test_pipeline.py test/ros/test_node_faults.py test/ros/test_budget_monitor_node.py
  test/ros/test_config_files.py test/ros/test_messages.py test/ros/test_ports.py)

summary=()
failed=0

step() {  # step NAME: run one step in a shell of its own, record its time and result
  local name="$1" start=$SECONDS rc=0
  echo "[test] === $name ===" >&2
  ( "step_${name//-/_}" "${ARGS[@]+"${ARGS[@]}"}" ) || rc=$?
  summary+=("$(printf '%-11s %s  %4d s' "$name" "$([ "$rc" = 0 ] && echo pass || echo "FAIL($rc)")" \
    $((SECONDS - start)))")
  [ "$rc" = 0 ] || failed=1
}

run_pytest() {  # run_pytest WHOLE_SUITE ARGS...: pytest; "no tests" fails a whole-suite step
  local whole="$1"; shift
  local rc=0
  # A step that outlives its limit fails (exit 124) rather than hold CI to its own limit.
  timeout --kill-after=30 "$STEP_LIMIT_S" python -m pytest -ra --durations=15 "$@" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "[test] pytest ran past this step's limit of $STEP_LIMIT_S s" >&2
  fi
  if [ "$rc" = 5 ] && { [ "$whole" = 1 ] || [ "${#ARGS[@]}" = 0 ]; }; then
    echo "[test] pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  [ "$rc" = 5 ] && return 0
  return "$rc"
}

step_kilted() {
  STEP_LIMIT_S="${EIR_STEP_LIMIT_S:-1800}"
  export EIR_DISTRO=kilted
  bash scripts/setup.sh || return
  # shellcheck disable=SC1091
  . scripts/env.sh || return
  run_pytest 1 "$@"
}

step_jazzy() {
  STEP_LIMIT_S="${EIR_STEP_LIMIT_S:-1500}"
  export EIR_DISTRO=jazzy
  bash scripts/setup.sh || return
  # shellcheck disable=SC1091
  . scripts/env.sh || return
  # What cannot differ between the distributions ran in the kilted step already: the ROS-free
  # tests (same Python, same pinned numerics), the linters and mypy (same sources), and the
  # benchmarks' output formats (the same scripts; the package code they drive is tested here
  # by the pipeline tests).
  local skip=() file
  if [ "${#ARGS[@]}" = 0 ]; then
    for file in $(python scripts/ros_free_tests.py) test/test_linters.py; do
      skip+=("--ignore=$file")
    done
    skip+=(-m "not bench_format")
  fi
  run_pytest 1 "${skip[@]}" "$@"
}

step_humble_sim() {
  STEP_LIMIT_S="${EIR_STEP_LIMIT_S:-600}"
  export EIR_DISTRO=jazzy
  bash scripts/setup.sh || return
  # shellcheck disable=SC1091
  . scripts/env.sh || return
  export EIR_HUMBLE_SIM=1 PYTHONPATH="$ROOT/test/humble_sim${PYTHONPATH:+:$PYTHONPATH}"
  python -c 'import rclpy_humble_sim as s; assert s._applied; print("[test]", s.describe())' \
    >&2 || return
  run_pytest 0 "${HUMBLE_SIM_TESTS[@]}" "$@" || return
  # And the main job itself, as a user starts it (scripts/run.sh): a short composed run.
  local report
  report="$(mktemp)"
  timeout --kill-after=30 300 \
    python -m edge_infer_ros.runner --frames 30 --report-json "$report" >/dev/null || return
  python - "$report" <<'PY' || return
import json, sys
frames = json.load(open(sys.argv[1]))['frames']
assert frames['captured'] == 30 and frames['processed'] >= 25, frames
print('[test] main job under simulated Humble:', frames, file=sys.stderr)
PY
}

step_oldest() {
  STEP_LIMIT_S="${EIR_STEP_LIMIT_S:-300}"
  local venv="$ROOT/.venv-oldest" hash
  hash="$(sha256sum requirements-oldest.txt | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv" || return; fi
  if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$hash" ]; then
    echo "[test] installing requirements-oldest.txt into .venv-oldest" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-oldest.txt \
      || return
    echo "$hash" > "$venv/.requirements.sha256"
  fi
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  export PYTHONPATH="$ROOT"   # the plain Python package from the source tree; no ROS here
  python -c 'import numpy, cv2; print("[test] numpy", numpy.__version__, "OpenCV", cv2.__version__)' >&2
  local files
  files="$(python scripts/ros_free_tests.py)" || return
  # shellcheck disable=SC2086
  run_pytest 0 --noconftest $files "$@"
}

ARGS=("$@")
for name in $STEPS; do
  case "$name" in
    kilted|jazzy|humble-sim|oldest) step "$name" ;;
    *) echo "[test] unknown step '$name' (kilted jazzy humble-sim oldest)" >&2; exit 2 ;;
  esac
done
echo "[test] --- summary (ROS_DOMAIN_ID $ROS_DOMAIN_ID) ---" >&2
printf '[test] %s\n' "${summary[@]}" >&2
exit "$failed"
