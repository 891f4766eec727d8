"""
Detections as ``vision_msgs/Detection2DArray``, the message other ROS packages read.

vision_msgs is on every real ROS 2 install but has no wheel on PyPI, so the module is imported
lazily: the NMS node publishes Detection2DArray when it is there and says once that it is not.
The conversion takes the message module as an argument, so it is tested against the message
definition's fields where vision_msgs itself cannot be installed. Layout of vision_msgs >= 4.0
(Humble and later): BoundingBox2D.center is a vision_msgs/Pose2D with a Point2D position.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.payloads import DetectionPayload


def load_vision_msgs() -> Optional[ModuleType]:
    """Return ``vision_msgs.msg``, or None when the package is not installed."""
    try:
        from vision_msgs import msg
    except ImportError:
        return None
    return msg


def to_detection2d_array(envelope: Envelope, msgs: Any, stamp: Any) -> Any:
    """
    Build a Detection2DArray of one frame's detections.

    ``msgs`` is the vision_msgs.msg module; ``stamp`` the frame's builtin_interfaces/Time.
    Boxes become centre + size in original image pixels; the class name goes into
    ``hypothesis.class_id`` (a string in vision_msgs >= 4), the score into ``score``.
    """
    payload: DetectionPayload = envelope.payload
    array = msgs.Detection2DArray()
    array.header.stamp = stamp
    array.header.frame_id = envelope.frame_id
    names = payload.class_names
    detections = []
    for index, ((x0, y0, x1, y1), score, class_id) in enumerate(zip(
            payload.boxes.tolist(), payload.scores.tolist(), payload.class_ids.tolist())):
        detection = msgs.Detection2D()
        detection.header = array.header
        detection.id = f'{envelope.camera}/{envelope.seq}/{index}'
        detection.bbox.center.position.x = (x0 + x1) / 2.0
        detection.bbox.center.position.y = (y0 + y1) / 2.0
        detection.bbox.center.theta = 0.0
        detection.bbox.size_x = x1 - x0
        detection.bbox.size_y = y1 - y0
        hypothesis = msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = names[class_id] if 0 <= class_id < len(names) \
            else str(class_id)
        hypothesis.hypothesis.score = float(score)
        detection.results = [hypothesis]
        detections.append(detection)
    array.detections = detections
    return array
