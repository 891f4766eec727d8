# Sourced by setup.sh and env.sh: the ROS 2 distribution to build and run against, and where
# its environment lives. EIR_DISTRO=kilted (default) or jazzy; each has its own pinned wheels,
# virtual environment and colcon folders, since Jazzy's and Kilted's wheels cannot share a venv.
# shellcheck shell=bash
EIR_DISTRO="${EIR_DISTRO:-kilted}"
case "$EIR_DISTRO" in
  kilted)
    EIR_VENV=.venv; EIR_REQUIREMENTS=requirements.txt
    EIR_BUILD=build; EIR_INSTALL=install; EIR_LOG=log
    _eir_tools=rolling ;;   # ../shared/ros2_tools' bundle for the Kilted wheels
  jazzy)
    EIR_VENV=.venv-jazzy; EIR_REQUIREMENTS=requirements-jazzy.txt
    EIR_BUILD=build-jazzy; EIR_INSTALL=install-jazzy; EIR_LOG=log-jazzy
    _eir_tools=jazzy ;;
  *)
    echo "EIR_DISTRO='$EIR_DISTRO': use kilted or jazzy" >&2
    return 2 2>/dev/null || exit 2 ;;
esac
export EIR_DISTRO EIR_VENV EIR_REQUIREMENTS EIR_BUILD EIR_INSTALL EIR_LOG
export ROS2_TOOLS_DISTRO="${ROS2_TOOLS_DISTRO:-$_eir_tools}"
unset _eir_tools
