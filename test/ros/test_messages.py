"""Every custom message goes through real DDS (rclpy, Fast DDS) and arrives intact."""

import threading

from edge_infer_ros_msgs import msg as eir
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def _timing(stage: str, base: int) -> eir.StageTiming:
    return eir.StageTiming(stage=stage, node='/test/' + stage, received_ns=base,
                           start_ns=base + 10, end_ns=base + 250)


def _examples() -> list:
    detection = eir.Detection(x_min=1.5, y_min=2.0, x_max=30.25, y_max=40.0, score=0.75,
                              class_id=2, class_name='cone')
    stages = [_timing('preprocess', 1_000), _timing('detector', 2_000)]
    array = eir.DetectionArray(camera='front', seq=7, image_width=640, image_height=480,
                               detections=[detection, detection], stages=stages)
    array.header.stamp.sec = 12
    array.header.frame_id = 'camera_optical'
    trace = eir.FrameTrace(camera='front', seq=8, stages=stages)
    miss = eir.DeadlineMiss(camera='front', seq=9, deadline_ms=45.0, latency_ms=51.5,
                            overrun_ms=6.5, worst_stage='detector', worst_component='service',
                            worst_stage_ms=22.0, worst_stage_budget_ms=14.0)
    tensor = eir.TensorFrame(camera='front', seq=10, shape=[1, 3, 2, 2], dtype='float32',
                             data=bytes(range(48)), scale=0.5, pad_x=0.0, pad_y=40.0,
                             image_width=640, image_height=480, stages=stages)
    candidates = eir.CandidateArray(camera='front', seq=11, boxes=[0.0, 1.0, 2.0, 3.0],
                                    scores=[0.5], class_ids=[3], scale=0.5, pad_x=0.0,
                                    pad_y=40.0, image_width=640, image_height=480,
                                    backend='onnxruntime', stages=stages)
    return [detection, array, _timing('nms', 5), trace, miss, tensor, candidates]


@pytest.fixture
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.mark.parametrize('message', _examples(), ids=lambda m: type(m).__name__)
def test_message_round_trip_over_dds(ros_context, message) -> None:
    node_pub = Node('msg_pub', context=ros_context)
    node_sub = Node('msg_sub', context=ros_context)
    topic = 'roundtrip_' + type(message).__name__.lower()
    received = []
    got = threading.Event()

    def on_message(msg) -> None:
        received.append(msg)
        got.set()

    node_sub.create_subscription(type(message), topic, on_message, 10)
    publisher = node_pub.create_publisher(type(message), topic, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node_pub)
    executor.add_node(node_sub)
    for _ in range(200):  # discovery takes a moment; publish until one arrives
        publisher.publish(message)
        executor.spin_once(timeout_sec=0.05)
        if got.is_set():
            break
    executor.shutdown()
    node_pub.destroy_node()
    node_sub.destroy_node()
    assert received, f'no {type(message).__name__} arrived through DDS'
    assert received[0] == message
