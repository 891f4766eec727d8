"""
The launch surface a robot team uses, under the real ``ros2 launch``.

Every tuning argument reaches its node (``ros2 param dump``, ``ros2 param get``),
``image_topics`` and ``action`` change the launch's shape, and the shipped example robot
launch file runs and stops cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from geometry_msgs.msg import Twist, TwistStamped
from pipeline.test_real_tools import (assert_clean_exit, Launch, poll, Probe, ros2,
                                      START_TIMEOUT)
from pipeline.test_real_tools import tools  # noqa: F401 - the fixture: skip without the tools
import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def probe() -> Iterator[Probe]:
    """One listening node for the module."""
    node = Probe()
    yield node
    node.close()
    ros2('daemon', 'stop', timeout=30)


def params(node: str) -> dict[str, Any]:
    """Return a node's parameters as ``ros2 param dump`` prints them, once the node answers."""
    def answer() -> dict[str, Any]:
        out = ros2('param', 'dump', node).stdout
        try:
            document = yaml.safe_load(out) or {}
        except yaml.YAMLError:
            return {}
        return document.get(node, {}).get('ros__parameters', {}) if isinstance(document, dict) \
            else {}
    return poll(answer, 30) or {}


def param(node: str, name: str) -> str:
    """Return what ``ros2 param get`` prints for a parameter, once the node answers."""
    def answer() -> str:
        out = ros2('param', 'get', node, name).stdout.strip()
        return out if 'value' in out else ''
    return poll(answer, 30) or ros2('param', 'get', node, name).stdout.strip()


def test_every_tuning_argument_reaches_its_node(tmp_path: Path, probe: Probe) -> None:
    overlay = tmp_path / 'overlay.yaml'
    overlay.write_text('/**/nms:\n  ros__parameters:\n    max_detections: 7\n')
    probe.listen('/tune/base/cmd_vel', Twist)
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline.launch.py',
                    'namespace:=tune', 'fps:=12.5', 'frame_id:=cam_x',
                    'class_names:=[ball, box, cone, person]', 'score_threshold:=0.33',
                    'iou_threshold:=0.44', 'deadline_ms:=77.0', 'late_frame_policy:=hold',
                    'command_type:=twist', 'command_frame_id:=odom', 'drive_camera:=cam_x',
                    'debug_image:=true', 'use_sim_time:=false', f'params_file:={overlay}',
                    'cmd_vel_topic:=base/cmd_vel')
    try:
        assert poll(lambda: probe.messages('/tune/base/cmd_vel') or
                    launch.process.poll() is not None, START_TIMEOUT) and \
            launch.process.poll() is None, launch.output()[-3000:]
        expected = {
            ('camera', 'fps'): 12.5,
            ('detector', 'expected_fps'): 12.5,
            ('camera', 'frame_id'): 'cam_x',
            ('detector', 'class_names'): ['ball', 'box', 'cone', 'person'],
            ('detector', 'score_threshold'): 0.33,
            ('nms', 'score_threshold'): 0.33,
            ('nms', 'iou_threshold'): 0.44,
            ('budget_monitor', 'deadline_ms'): 77.0,
            ('action', 'deadline_ms'): 77.0,
            ('action', 'late_frame_policy'): 'hold',
            ('action', 'command_type'): 'twist',
            ('action', 'command_frame_id'): 'odom',
            ('action', 'drive_camera'): 'cam_x',
            ('action', 'debug_image'): True,
            ('camera', 'use_sim_time'): False,
            ('nms', 'max_detections'): 7,  # the params_file overlay
        }
        dumped = {node: params(f'/tune/{node}') for node in {key[0] for key in expected}}
        got = {key: dumped[key[0]].get(key[1], '(not declared)') for key in expected}
        assert got == expected
        # Types too: YAML keeps 12.5 a double and 7 an integer, as the nodes declared them.
        assert {key: type(value) for key, value in got.items()} == \
            {key: type(value) for key, value in expected.items()}
        launch.double_sigint()
        assert_clean_exit(launch, launch.wait(), processes=1)
    finally:
        launch.kill()


def test_image_topics_replace_the_camera_and_action_false_leaves_it_out(
        tmp_path: Path, probe: Probe) -> None:
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline.launch.py',
                    'namespace:=shape', 'image_topics:=[/a/image, /b/image]', 'action:=false')
    try:
        assert poll(lambda: launch.output().count('Loaded node') >= 4 or
                    launch.process.poll() is not None, START_TIMEOUT), launch.output()[-3000:]
        assert param('/shape/preprocess', 'image_topics') == \
            "String values are: ['/a/image', '/b/image']"
        nodes = ros2('node', 'list').stdout
        assert '/shape/preprocess' in nodes and '/shape/budget_monitor' in nodes, nodes
        assert '/shape/camera\n' not in nodes and '/shape/action\n' not in nodes, nodes
        launch.double_sigint()
        assert_clean_exit(launch, launch.wait(), processes=1)
    finally:
        launch.kill()


def test_split_launch_takes_the_same_arguments(tmp_path: Path, probe: Probe) -> None:
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'pipeline_split.launch.py',
                    'namespace:=split', 'fps:=12.0', 'deadline_ms:=66.0', 'action:=false')
    try:
        assert poll(lambda: launch.output().count('process started') >= 5 or
                    launch.process.poll() is not None, START_TIMEOUT), launch.output()[-3000:]
        assert param('/split/camera', 'fps') == 'Double value is: 12.0'
        assert param('/split/budget_monitor', 'deadline_ms') == 'Double value is: 66.0'
        assert '/split/action\n' not in ros2('node', 'list').stdout
        launch.double_sigint()
        assert_clean_exit(launch, launch.wait(), processes=5)
    finally:
        launch.kill()


def test_the_example_robot_launch_file_runs_and_stops_cleanly(
        tmp_path: Path, probe: Probe) -> None:
    probe.listen('/robot1/cmd_vel', TwistStamped)
    launch = Launch(tmp_path / 'launch.log', 'edge_infer_ros', 'robot.launch.py')
    try:
        assert poll(lambda: probe.messages('/robot1/cmd_vel') or
                    launch.process.poll() is not None, START_TIMEOUT) and \
            launch.process.poll() is None, launch.output()[-3000:]
        assert param('/robot1/action', 'drive_camera') == \
            'String value is: front_optical_frame'
        nodes = ros2('node', 'list').stdout
        wanted = ('front_driver', 'rear_driver', 'preprocess', 'action')
        assert all(f'/robot1/{n}' in nodes for n in wanted), nodes
        assert {m.header.frame_id for m in probe.messages('/robot1/cmd_vel')} == {'base_link'}
        launch.double_sigint()
        assert_clean_exit(launch, launch.wait(), processes=3)
    finally:
        launch.kill()
