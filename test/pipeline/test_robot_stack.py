"""
What robot stacks need from the pipeline.

Several cameras through one detector, vision_msgs, and a debug view that costs nothing
unless someone watches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time
from types import SimpleNamespace

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.payloads import DetectionPayload
from edge_infer_ros.core.resources import config_path
from edge_infer_ros.ros.container import ComponentSpec, Container
from edge_infer_ros.ros.vision import load_vision_msgs, to_detection2d_array
from edge_infer_ros_msgs.msg import DetectionArray
import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image
from support import ros2_tools
from support.waiting import assert_detections_match, wait_for


def _stage(plugin: str, name: str, namespace: str = '', **parameters) -> ComponentSpec:
    return ComponentSpec(plugin, name, namespace, param_files=(config_path('pipeline.yaml'),),
                         parameters={'diagnostics_period_s': 0.2, **parameters})


def test_two_cameras_share_one_detector_with_results_per_camera(ros_context, second_context,
                                                                planted_model) -> None:
    container = Container(ros_context)
    model = {'model_path': planted_model.path}
    # Each camera in its own namespace, as on a robot: /front/image_raw, /rear/image_raw.
    front = container.load(_stage('edge_infer_ros::Camera', 'camera', 'front', frame_id='front',
                                  seed=1, fps=20.0, max_frames=0))
    rear = container.load(_stage('edge_infer_ros::Camera', 'camera', 'rear', frame_id='rear',
                                 seed=2, fps=20.0, max_frames=0, width=320, height=240))
    assert (front.camera_name, rear.camera_name) == ('front', 'rear')
    container.load(_stage('edge_infer_ros::Preprocess', 'preprocess',
                          image_topics=['/front/image_raw', '/rear/image_raw'],
                          **model))
    container.load(_stage('edge_infer_ros::Detector', 'detector', **model))
    nms = container.load(_stage('edge_infer_ros::Nms', 'nms', per_camera_topics=True))
    container.load(_stage('edge_infer_ros::Action', 'action'))
    monitor = container.load(ComponentSpec(
        'edge_infer_ros::BudgetMonitor', 'budget_monitor',
        param_files=(config_path('budget.yaml'),), parameters={'diagnostics_period_s': 0.2}))
    outside = Node('per_camera_listener', context=second_context)
    got: dict[str, list[DetectionArray]] = {'front': [], 'rear': []}
    outside.create_subscription(DetectionArray, 'detections/front',
                                got['front'].append, 10)
    outside.create_subscription(DetectionArray, 'detections/rear', got['rear'].append, 10)
    executor = SingleThreadedExecutor(context=second_context)
    executor.add_node(outside)
    try:
        container.spin_in_background()
        assert not container.start()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < 5:
            executor.spin_once(timeout_sec=0.05)
        assert min(len(v) for v in got.values()) >= 5, {k: len(v) for k, v in got.items()}
        # Routed per camera: each topic carries only its camera's frames, in its own pixels.
        for camera, size in (('front', (640, 480)), ('rear', (320, 240))):
            assert {m.header.frame_id for m in got[camera]} == {camera}
            assert {(m.image_width, m.image_height) for m in got[camera]} == {size}
        rear_msg = got['rear'][-1]
        scale = 0.5  # the rear camera has half the resolution: boxes are half as large
        boxes = np.array([[d.x_min, d.y_min, d.x_max, d.y_max] for d in rear_msg.detections])
        expected = tuple((tuple(v * scale for v in box), score, cls)
                         for box, score, cls in planted_model.expected)
        assert_detections_match(boxes, [d.score for d in rear_msg.detections],
                                [d.class_id for d in rear_msg.detections], expected)
        # Fair sharing: neither camera starves the other at the shared detector. (The
        # monitor counts a frame after the action stage, a little after nms published it.)

        def frames_seen() -> dict[str, int]:
            return {k: v['frames'] for k, v in monitor.summary()['cameras'].items()}
        assert wait_for(lambda: min(frames_seen().get(c, 0) for c in got) >= 5, 5.0), \
            frames_seen()
        # Each camera's path has its own budget verdicts.
        names = {s.name for s in monitor.budget_statuses()}
        for camera in ('front', 'rear'):
            for item in ('preprocess', 'detector', 'nms', 'action', 'end_to_end'):
                assert f'/budget_monitor: {camera}/{item}' in names
        assert nms.outputs  # detections, detections/front, detections/rear
    finally:
        outside.destroy_node()
        executor.shutdown()
        container.shutdown()


@dataclass
class _Msg:
    """A message made from a definition's field list (for packages not installable here)."""

    fields: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name == 'fields':
            raise AttributeError(name)
        if name not in self.fields:
            raise AttributeError(f'no field {name!r} in this message definition')
        return self.fields[name]

    def __setattr__(self, name: str, value) -> None:
        if name == 'fields':
            object.__setattr__(self, name, value)
        elif name not in self.fields:
            raise AttributeError(f'no field {name!r} in this message definition')
        else:
            self.fields[name] = value


def _definitions() -> SimpleNamespace:
    """vision_msgs >= 4.0 (Humble and later) as their .msg files define the fields."""
    def header():
        return _Msg({'stamp': None, 'frame_id': ''})

    def pose2d():
        return _Msg({'position': _Msg({'x': 0.0, 'y': 0.0}), 'theta': 0.0})

    return SimpleNamespace(
        Detection2DArray=lambda: _Msg({'header': header(), 'detections': []}),
        Detection2D=lambda: _Msg({'header': header(), 'results': [], 'id': '',
                                  'bbox': _Msg({'center': pose2d(), 'size_x': 0.0,
                                                'size_y': 0.0})}),
        ObjectHypothesisWithPose=lambda: _Msg({
            'hypothesis': _Msg({'class_id': '', 'score': 0.0}), 'pose': _Msg({})}),
    )


def _detections_envelope() -> Envelope:
    payload = DetectionPayload(np.array([[10, 20, 50, 100]], np.float32),
                               np.array([0.75], np.float32), np.array([3], np.int32),
                               ('ball', 'box', 'cone', 'person'), 640, 480)
    return Envelope('front', 42, 5_000_000_000, 'front_optical', (), payload)


def test_detection2d_array_conversion_fits_the_message_definition() -> None:
    array = to_detection2d_array(_detections_envelope(), _definitions(), 'STAMP')
    assert array.header.frame_id == 'front_optical' and array.header.stamp == 'STAMP'
    (detection,) = array.detections
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y) == (30.0, 60.0)
    assert (detection.bbox.size_x, detection.bbox.size_y) == (40.0, 80.0)
    assert detection.id == 'front/42/0'
    (result,) = detection.results
    assert result.hypothesis.class_id == 'person'
    assert result.hypothesis.score == pytest.approx(0.75)


def test_detection2d_array_with_the_real_vision_msgs() -> None:
    msgs = load_vision_msgs()
    if msgs is None:  # no PyPI wheel; every ROS install has it, setup.sh builds it otherwise
        ros2_tools.missing('vision_msgs')
    from builtin_interfaces.msg import Time
    array = to_detection2d_array(_detections_envelope(), msgs, Time(sec=5))
    assert array.detections[0].results[0].hypothesis.class_id == 'person'


def test_debug_image_is_drawn_only_while_someone_watches(composed, second_context) -> None:
    container, nodes = composed(frames=0, overrides={'action': {'debug_image': True}})
    action = nodes['action']
    assert wait_for(lambda: action.commands > 10, 10.0)
    assert action.debug_images_drawn == 0  # frames flow, nobody subscribed: nothing drawn
    viewer = Node('viewer', context=second_context)
    images: list[Image] = []
    viewer.create_subscription(Image, 'debug_image', images.append, 5)
    executor = SingleThreadedExecutor(context=second_context)
    executor.add_node(viewer)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and len(images) < 3:
        executor.spin_once(timeout_sec=0.05)
    assert len(images) >= 3 and action.debug_images_drawn >= 3
    assert (images[-1].width, images[-1].height, images[-1].encoding) == (640, 480, 'bgr8')
    viewer.destroy_node()
    executor.shutdown()
    assert wait_for(lambda: action.debug_pub.get_subscription_count() == 0, 10.0)
    assert wait_for(action._debug_input.idle, 5.0)  # a frame taken before may still be drawn
    drawn = action.debug_images_drawn
    commands = action.commands
    assert wait_for(lambda: action.commands > commands + 10, 10.0)
    assert action.debug_images_drawn <= drawn + 1  # watching stopped: drawing stopped
