"""
kill -9 of a stage process on shared memory: the publisher goes on, a restarted one reconnects.

Real processes, as ``ros2 run`` starts them: a camera node and a preprocess node with
``transport.same_host:=iceoryx2``; the test reads their /diagnostics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from edge_infer_ros.core import shm
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from support.waiting import wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shm.unavailable_reason() is not None,
                                 reason=str(shm.unavailable_reason()))]

COMMON = ['-p', 'transport.same_host:=iceoryx2', '-p', 'diagnostics_period_s:=0.2']


def _start(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', f'edge_infer_ros.ros.nodes.{module}',
                             '--ros-args', *COMMON, *args], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Diagnostics:
    """The latest values of each node's status."""

    def __init__(self, context: Context) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        self.node = Node('kill_test', context=context)
        self.latest: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on(self, msg: Any) -> None:
        for status in msg.status:
            self.latest[status.name] = {kv.key: kv.value for kv in status.values}

    def value(self, name: str, key: str) -> int:
        return int(self.latest.get(name, {}).get(key, '0'))

    def wait(self, condition: Any, timeout: float = 60.0) -> bool:
        return wait_for(condition, timeout, executor=self.executor)


def test_a_killed_stage_process_neither_stops_the_camera_nor_stays_away():
    context = Context()
    rclpy.init(context=context)
    processes = []
    try:
        diagnostics = Diagnostics(context)
        camera = '/camera: camera'
        processes.append(_start('camera', '-p', 'fps:=30.0'))
        first = _start('preprocess', '-r', '__node:=preprocess_a')
        processes.append(first)
        assert diagnostics.wait(lambda: diagnostics.value(
            '/preprocess_a: preprocess', 'shm_frames_received') > 10), diagnostics.latest
        first.send_signal(signal.SIGKILL)  # kill -9 mid-run
        first.wait(timeout=10)
        captured = diagnostics.value(camera, 'frames_captured')
        assert diagnostics.wait(lambda: diagnostics.value(camera, 'frames_captured') >
                                captured + 30)  # the camera goes on
        processes.append(_start('preprocess', '-r', '__node:=preprocess_b'))
        assert diagnostics.wait(lambda: diagnostics.value(
            '/preprocess_b: preprocess', 'shm_frames_received') > 10), diagnostics.latest
        assert diagnostics.value(camera, 'shm_send_failures') == 0
        assert diagnostics.value(camera, 'zero_copy_frames') > 0
        assert processes[0].poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        rclpy.try_shutdown(context=context)
