#!/usr/bin/env bash
# Set up everything edge_infer_ros needs on a fresh Debian 12 / Python 3.11 machine, idempotently:
#   1. a virtual environment .venv with the pinned ROS 2 Kilted wheels and numerics (requirements.txt;
#      EIR_DISTRO=jazzy: .venv-jazzy from requirements-jazzy.txt, built into build-jazzy/ install-jazzy/)
#   2. the include paths the wheels' CMake files expect (they carry their build machine's paths)
#   3. colcon build of edge_infer_ros_msgs (msg/) and edge_infer_ros (.) into install/
#   4. the ROS 2 tools (ros2, launch, composition_interfaces, vision_msgs) into build/ros2_tools
#      (build-jazzy/ros2_tools for Jazzy),
#      unless the environment has them (ROS2_TOOLS_DISTRO=rolling|jazzy picks the bundle)
# A second run with nothing changed only compares two hashes and returns in about a second.
# Afterwards `. scripts/env.sh` gives a shell in which `import rclpy` and the messages work.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
# shellcheck disable=SC1091
. "$ROOT/scripts/distro.sh"
VENV="$ROOT/$EIR_VENV"

log() { printf '[setup] %s\n' "$*" >&2; }

hash_files() {  # sha256 over the names and contents of the given files, in a stable order
  sort | while IFS= read -r f; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1
}

# --- 1. virtual environment with pinned packages -------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in $EIR_VENV"
  "$PYTHON" -m venv "$VENV"
fi
req_hash="$(sha256sum "$EIR_REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned packages ($EIR_REQUIREMENTS); about a minute on a fresh machine"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$EIR_REQUIREMENTS"
  echo "$req_hash" > "$VENV/.requirements.sha256"
  rm -f "$ROOT/$EIR_BUILD/.edge_infer_ros.sha256"   # new wheels: rebuild the packages
fi
# colcon must never crawl into the environment or the build outputs.
mkdir -p "$EIR_BUILD" "$EIR_INSTALL" "$EIR_LOG"
touch "$VENV/COLCON_IGNORE" "$EIR_BUILD/COLCON_IGNORE" "$EIR_INSTALL/COLCON_IGNORE" "$EIR_LOG/COLCON_IGNORE"

# --- 2. include paths baked into the wheels' CMake configuration ---------------------------
py_include="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$VENV/bin/python" -c 'import numpy, os; print(os.path.join(os.path.dirname(numpy.__file__), "_core", "include"))')"
ensure_link() {  # ensure_link TARGET LINK: LINK must resolve to TARGET's contents
  local target="$1" link="$2"
  if [ -e "$link" ]; then return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "linking $link -> $target (the wheels' CMake files name this path)"
  $sudo mkdir -p "$(dirname "$link")"
  $sudo ln -sfn "$target" "$link"
}
ensure_link "$py_include" /opt/python/cp311-cp311/include/python3.11
ensure_link "$np_include" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

# --- 3. colcon build of both packages ------------------------------------------------------
src_hash="$( { find msg launch config models resource examples -type f 2>/dev/null; \
  echo package.xml; echo setup.py; echo setup.cfg; echo edge_infer_ros/core/shape.py; } | hash_files)"
if [ "$(cat "$EIR_BUILD/.edge_infer_ros.sha256" 2>/dev/null)" != "$src_hash" ] || [ ! -f "$EIR_INSTALL/setup.bash" ]; then
  log "colcon build (edge_infer_ros_msgs, edge_infer_ros) for $EIR_DISTRO"
  (
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    colcon --log-base "$EIR_LOG" build --build-base "$EIR_BUILD" --install-base "$EIR_INSTALL" \
      --paths msg . --symlink-install \
      --event-handlers console_direct- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >&2
  )
  echo "$src_hash" > "$EIR_BUILD/.edge_infer_ros.sha256"
fi

# --- 4. the ROS 2 launch and command-line tools (ros2, launch_ros, composition_interfaces) ----
# A real ROS 2 install has them; a wheels-only environment builds them from ../shared/ros2_tools
# (read-only in CI) into $EIR_BUILD/ros2_tools. build.sh keeps its own stamp: a second run returns at once.
own_tools="$ROOT/$EIR_BUILD/ros2_tools"
tools_src="${ROS2_TOOLS_SRC:-}"   # default: ../shared/ros2_tools beside the clone (or a worktree's)
for candidate in "$ROOT/../shared/ros2_tools" "$ROOT/../../shared/ros2_tools"; do
  if [ -z "$tools_src" ] && [ -x "$candidate/build.sh" ]; then tools_src="$candidate"; fi
done
found_tools="$("$VENV/bin/python" -c 'import composition_interfaces, launch_ros, ros2cli
print(ros2cli.__file__)' 2>/dev/null || true)"
if [ -n "$found_tools" ] && [ "${found_tools#"$own_tools"}" = "$found_tools" ] \
    && command -v ros2 >/dev/null; then
  log "ros2, launch_ros and composition_interfaces come from the environment"
elif [ -n "$tools_src" ] && [ -x "$tools_src/build.sh" ]; then
  log "ROS 2 tools (${ROS2_TOOLS_DISTRO:-rolling}) into $EIR_BUILD/ros2_tools"
  (
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    "$tools_src/build.sh" "${ROS2_TOOLS_DISTRO:-rolling}" "$own_tools"
  )
else
  log "no ROS 2 tools here and no ../shared/ros2_tools: tests of ros2 launch/param/component skip"
fi
log "ready ($EIR_DISTRO): . scripts/env.sh"
