"""A camera and a preprocess node in two rclpy contexts: two "processes" on one host."""

from __future__ import annotations

from typing import Any

from edge_infer_ros.ros.nodes.camera import CameraNode
from edge_infer_ros.ros.nodes.preprocess import PreprocessNode
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter


def camera_and_preprocess(camera_context: Any, preprocess_context: Any, same_host: str,
                          frames: int = 40, fps: float = 20.0,
                          camera_same_host: str = '') -> tuple[Any, Any, list[Any]]:
    """
    Create the pair, each with its own executor (not spun); the camera does not start itself.

    Separate contexts are separate DDS participants and local buses, so frames between them
    go by ``transport.same_host`` (``camera_same_host`` for the camera, if given) or DDS.
    """
    def common(transport: str) -> list[Parameter]:
        return [Parameter('transport.same_host', value=transport),
                Parameter('diagnostics_period_s', value=0.2)]
    camera = CameraNode(context=camera_context, parameter_overrides=common(
        camera_same_host or same_host) + [Parameter('max_frames', value=frames),
                                          Parameter('fps', value=fps),
                                          Parameter('autostart', value=False)])
    preprocess = PreprocessNode(context=preprocess_context, parameter_overrides=common(
        same_host) + [Parameter('qos.input.reliability', value='reliable')])
    executors = []
    for node, context in ((camera, camera_context), (preprocess, preprocess_context)):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executors.append(executor)
    return camera, preprocess, executors
