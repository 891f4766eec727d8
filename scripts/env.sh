# Source me (bash): the environment in which the packages built by scripts/setup.sh run
# (EIR_DISTRO=kilted, the default, or jazzy: the same choice as for setup.sh).
# shellcheck shell=bash
_EIR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$_EIR_ROOT/scripts/distro.sh" || return
# shellcheck disable=SC1091
. "$_EIR_ROOT/$EIR_VENV/bin/activate"
# setup.bash of colcon resets AMENT_PREFIX_PATH; the venv is itself a ROS prefix, so add it back.
_eir_nounset=0; case $- in *u*) _eir_nounset=1; set +u;; esac
# shellcheck disable=SC1091
. "$_EIR_ROOT/$EIR_INSTALL/setup.bash"
# The ROS 2 tools scripts/setup.sh built where the environment has none (ros2, launch_ros).
if [ -f "$_EIR_ROOT/$EIR_BUILD/ros2_tools/install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_EIR_ROOT/$EIR_BUILD/ros2_tools/install/local_setup.bash"
fi
[ "$_eir_nounset" = 1 ] && set -u
export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _EIR_ROOT _eir_nounset
