"""
Start the Humble rclpy simulation in every Python process of a test run that asks for it.

Active when ``EIR_HUMBLE_SIM=1`` and this folder is on ``PYTHONPATH`` (``scripts/test.sh`` sets
both for its Humble step), so that processes the tests start are simulated too. Not in the
``ros2`` command-line tools: on a real Humble install those are Humble's own, while the ones
built here are Jazzy's or Rolling's, which use the newer names.
"""

import os
import sys


def _is_ros2_tool() -> bool:
    argv = getattr(sys, 'orig_argv', sys.argv)
    return any(os.path.basename(a) in ('ros2', '_ros2_daemon') or 'ros2cli' in a
               for a in argv[:4])


if os.environ.get('EIR_HUMBLE_SIM') == '1' and not _is_ros2_tool():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import rclpy_humble_sim  # noqa: E402
    rclpy_humble_sim.apply()
