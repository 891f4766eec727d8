"""
What a robot stack needs when it wires the pipeline in.

One camera drives, each camera has its own deadline, the base gets the command type it takes
in its own frame, and wiring mistakes are named.
"""

from __future__ import annotations

import time
from typing import Any

from edge_infer_ros.core.resources import config_path
from edge_infer_ros.ros.container import ComponentSpec, Container
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene
from geometry_msgs.msg import Twist, TwistStamped
import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from support.outside import Outside
from support.waiting import wait_for

FRONT, REAR = 'front', 'rear'


def _stage(plugin: str, name: str, namespace: str = '', **parameters: Any) -> ComponentSpec:
    return ComponentSpec(plugin, name, namespace, param_files=(config_path('pipeline.yaml'),),
                         parameters={'diagnostics_period_s': 0.2, **parameters})


def _image(pixels: np.ndarray, frame_id: str, node: Node) -> Image:
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding='bgr8',
                step=pixels.shape[1] * 3, data=pixels.tobytes())
    msg.header.frame_id = frame_id
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def _target_scene() -> np.ndarray:
    """Return a synthetic frame with boxes well left of its centre: targets to steer to."""
    pixels, truth = SyntheticScene(640, 480, seed=3).render(0)
    box = CLASS_NAMES.index('box')
    assert any(c == box and (x0 + x1) / 2 < 200 for (x0, _, x1, _), c in
               zip(truth.boxes.tolist(), truth.class_ids.tolist()))
    return pixels


def test_front_camera_drives_and_each_camera_has_its_deadline(
        ros_context, second_context) -> None:
    """Rear frames with a target never steer the robot while the front camera drives."""
    container = Container(ros_context)
    container.load(_stage('edge_infer_ros::Preprocess', 'preprocess',
                          image_topics=['/front/image_raw', '/rear/image_raw']))
    container.load(_stage('edge_infer_ros::Detector', 'detector'))
    container.load(_stage('edge_infer_ros::Nms', 'nms'))
    action = container.load(_stage('edge_infer_ros::Action', 'action', drive_camera=FRONT,
                                   target_classes=['box'], obstacle_classes=['cone']))
    monitor = container.load(ComponentSpec(
        'edge_infer_ros::BudgetMonitor', 'budget_monitor',
        param_files=(config_path('budget.yaml'),),
        parameters={'diagnostics_period_s': 0.2, 'deadline_grace_s': 0.0,
                    f'cameras.{FRONT}.deadline_ms': 0.5,
                    f'cameras.{REAR}.deadline_ms': 5000.0}))
    outside = Outside(second_context, listen_commands=True)
    front_pub = outside.node.create_publisher(Image, '/front/image_raw', qos_profile_sensor_data)
    rear_pub = outside.node.create_publisher(Image, '/rear/image_raw', qos_profile_sensor_data)
    empty = np.full((480, 640, 3), 90, np.uint8)  # the front sees nothing
    target = _target_scene()

    def publish_until(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            front_pub.publish(_image(empty, FRONT, outside.node))
            rear_pub.publish(_image(target, REAR, outside.node))
            if outside.spin_until(condition, 0.08):
                return True
        return False
    try:
        container.spin_in_background()
        assert not container.start()
        assert publish_until(lambda: len(outside.commands) >= 15 and
                             action.drive.other_camera_frames >= 15, 60.0), \
            (len(outside.commands), action.drive.other_camera_frames)
        commands = list(outside.commands)
        assert all(c.twist.angular.z == 0.0 and c.twist.linear.x == 0.0 for c in commands), \
            [(c.twist.linear.x, c.twist.angular.z) for c in commands]
        assert {c.header.frame_id for c in commands} == {'base_link'}
        # Each camera judged by its own deadline: every front frame misses 0.5 ms, no rear one
        # misses 5 s.
        assert wait_for(lambda: all(monitor.summary()['cameras'].get(c, {}).get('frames', 0)
                                    >= 5 for c in (FRONT, REAR)), 10.0)
        cameras = monitor.summary()['cameras']
        assert cameras[FRONT]['deadline_ms'] == 0.5 and cameras[REAR]['deadline_ms'] == 5000.0
        assert cameras[FRONT]['deadline_misses'] == cameras[FRONT]['frames']
        assert cameras[REAR]['deadline_misses'] == 0
        # The same rear frames do steer once the rear camera drives: the test can fail.
        action.set_parameters([Parameter('drive_camera', value=REAR)])
        assert publish_until(lambda: any(c.twist.angular.z != 0.0
                                         for c in outside.commands[len(commands):]), 30.0)
    finally:
        outside.close()
        container.shutdown()


def test_without_drive_camera_two_cameras_stop_the_robot(composed, second_context) -> None:
    container, nodes = composed(frames=0, names={'camera', 'preprocess', 'detector', 'nms',
                                                 'action'})
    action = nodes['action']
    assert wait_for(lambda: action.commands >= 3, 20.0)
    outside = Outside(second_context, listen_commands=True)
    other = outside.node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
    try:
        frame = np.full((480, 640, 3), 90, np.uint8)
        assert wait_for(lambda: (other.publish(_image(frame, 'second_camera', outside.node)),
                                 outside.executor.spin_once(timeout_sec=0.05),
                                 action.drive.ambiguous_frames >= 3)[-1], 20.0)
        assert wait_for(lambda: 'set drive_camera' in action.stage_status().message, 5.0)
        assert action.stage_status().level == b'\x01'
        assert outside.spin_until(lambda: outside.commands and outside.commands[-1].twist ==
                                  TwistStamped().twist, 10.0)
    finally:
        outside.close()


def test_command_type_twist_reaches_a_twist_subscriber(composed, second_context) -> None:
    outside = Node('base_controller', context=second_context)
    twists: list[Twist] = []
    outside.create_subscription(Twist, 'cmd_vel', twists.append, 10)
    executor = SingleThreadedExecutor(context=second_context)
    executor.add_node(outside)
    try:
        composed(frames=0, overrides={'action': {'command_type': 'twist'}})
        assert wait_for(lambda: len(twists) >= 5, 20.0, executor=executor), len(twists)
    finally:
        outside.destroy_node()
        executor.shutdown()


def test_every_command_watchdog_stops_included_is_in_base_link(composed,
                                                               second_context) -> None:
    outside = Outside(second_context, listen_commands=True)
    try:
        _, nodes = composed(frames=20, overrides={'action': {'command_timeout_s': 0.1}})
        assert outside.spin_until(lambda: nodes['action'].watchdog_stops >= 2 and
                                  len(outside.commands) >= 20, 20.0)
        assert {c.header.frame_id for c in outside.commands} == {'base_link'}
    finally:
        outside.close()


def test_a_topic_nobody_publishes_is_named_within_the_grace(composed, second_context) -> None:
    """A mistyped image topic, and a cmd_vel nobody reads: WARN naming each, then cleared."""
    grace = 1.0
    started = time.monotonic()
    _, nodes = composed(frames=0, overrides={
        'camera': {'source': 'topic', 'startup_grace_s': grace},
        'action': {'startup_grace_s': grace}})
    camera, action = nodes['camera'], nodes['action']
    assert wait_for(lambda: 'no publisher on /image_in' in camera.stage_status().message,
                    grace + 2.0), camera.stage_status().message
    assert time.monotonic() - started >= grace
    assert wait_for(lambda: 'no subscriber on /cmd_vel' in action.stage_status().message,
                    grace + 2.0), action.stage_status().message
    outside = Outside(second_context, listen_commands=True)  # a base controller appears
    try:
        assert outside.spin_until(
            lambda: 'no subscriber' not in action.stage_status().message, 10.0)
    finally:
        outside.close()


def test_two_robots_never_share_a_status_name_or_hardware_id(ros_context) -> None:
    container = Container(ros_context)
    try:
        nodes = {ns: (container.load(_stage('edge_infer_ros::Nms', 'nms', ns)),
                      container.load(ComponentSpec('edge_infer_ros::BudgetMonitor',
                                                   'budget_monitor', ns,
                                                   param_files=(config_path('budget.yaml'),))))
                 for ns in ('robot1', 'robot2')}
        container.spin_in_background()
        assert not container.start()
        for ns, (nms, monitor) in nodes.items():
            assert nms.stage_status().name == f'/{ns}/nms: nms'
            assert nms.stage_status().hardware_id == ns
            assert monitor.stage_status().hardware_id == ns
            assert monitor.stage_status().name.startswith(f'/{ns}/budget_monitor: ')
        override = container.load(_stage('edge_infer_ros::Nms', 'nms', 'robot3',
                                         hardware_id='jetson_left'))
        assert override.stage_status().hardware_id == 'jetson_left'
    finally:
        container.shutdown()


def test_a_camera_of_the_budget_file_that_never_sends_is_named(ros_context) -> None:
    container = Container(ros_context)
    try:
        monitor = container.load(ComponentSpec(
            'edge_infer_ros::BudgetMonitor', 'budget_monitor',
            param_files=(config_path('budget.yaml'),),
            parameters={'startup_grace_s': 0.5, f'cameras.{REAR}.deadline_ms': 80.0}))
        container.spin_in_background()
        assert not container.start()
        name = f'/budget_monitor: {REAR}/end_to_end'

        def silent_status():
            return next((s for s in monitor.budget_statuses() if s.name == name), None)
        assert wait_for(lambda: silent_status() is not None, 5.0)
        status = silent_status()
        assert status.level == b'\x01' and "no frame from camera 'rear'" in status.message
        assert monitor.tracker.budgets(REAR).deadline_ms == 80.0
    finally:
        container.shutdown()


def test_a_second_node_of_the_same_name_is_a_warn_naming_it(ros_context,
                                                            second_context) -> None:
    """Two pipelines with one name take each other's frames: both nodes say so (WARN)."""
    first, second = Container(ros_context), Container(second_context)
    try:
        nms = first.load(_stage('edge_infer_ros::Nms', 'nms', 'clash'))
        first.spin_in_background()
        assert not first.start()
        twin = second.load(_stage('edge_infer_ros::Nms', 'nms', 'clash'))
        second.spin_in_background()
        assert not second.start()
        for node in (nms, twin):
            assert wait_for(lambda: 'another node in the graph also named /clash/nms' in
                            node.stage_status().message, 20.0), node.stage_status().message
            assert node.stage_status().level == b'\x01'
    finally:
        second.shutdown()
        first.shutdown()
