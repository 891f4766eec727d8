"""
Envelopes to ROS messages and back: done only when a frame crosses a process boundary.

Each ``*_to_msg`` builds the message for outside subscribers; each ``*_from_msg`` makes the
envelope a stage input receives from DDS, validating the message on the way with
:mod:`edge_infer_ros.core.validate` (a bad message raises ``InputRefused``, a ValueError naming
the reason, which the input counts per reason and reports).
"""

from __future__ import annotations

import array
import math
import threading
from typing import Any, Callable, Hashable, Optional

from builtin_interfaces.msg import Time
from edge_infer_ros.core import compressed, frame, validate
from edge_infer_ros.core.frame import Envelope, FrameTrace, StageTiming
from edge_infer_ros.core.geometry import Letterbox
from edge_infer_ros.core.image import ImageError, read_only
from edge_infer_ros.core.image_encodings import image_size, image_view, raw_to_bytes, to_bgr
from edge_infer_ros.core.payloads import (CandidatePayload, Command, DetectionPayload,
                                          ImagePayload, TensorPayload)
from edge_infer_ros.monitor.verdicts import DeadlineMiss
from edge_infer_ros_msgs import msg as eir
from geometry_msgs.msg import Twist, TwistStamped
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

_NS = 1_000_000_000

#: The receiving node's clock while it converts a message (set by ``judged_on``).
_receiver = threading.local()


class _JudgedOn:
    """The ``with`` block of :func:`judged_on` (a class: one is entered per message)."""

    __slots__ = ('clock', 'outer')

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.outer: Optional[Callable[[], int]] = None

    def __enter__(self) -> None:
        self.outer = getattr(_receiver, 'clock', None)
        _receiver.clock = self.clock

    def __exit__(self, *_: Any) -> None:
        _receiver.clock = self.outer


def judged_on(clock: Callable[[], int]) -> _JudgedOn:
    """Check stamps of messages converted in this block against ``clock`` (the node's)."""
    return _JudgedOn(clock)


def _now_ns() -> int:
    """Return the receiving node's ROS time (use_sim_time honoured), else the wall clock."""
    clock = getattr(_receiver, 'clock', None)
    return clock() if clock is not None else frame.now_ns()


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time to integer nanoseconds."""
    return stamp.sec * _NS + stamp.nanosec


def ns_to_stamp(value_ns: int, out: Optional[Time] = None) -> Time:
    """Integer nanoseconds to builtin_interfaces/Time."""
    stamp = out if out is not None else Time()
    stamp.sec, stamp.nanosec = divmod(int(value_ns), _NS)
    return stamp


def envelope_key(envelope: Envelope) -> Hashable:
    """Identity of a frame across processes: capture stamp and camera frame."""
    return (envelope.stamp_ns, envelope.frame_id)


def message_key(msg) -> Hashable:
    """Identity of the frame a message with a header belongs to."""
    return (stamp_to_ns(msg.header.stamp), msg.header.frame_id)


def _header(msg, envelope: Envelope):
    ns_to_stamp(envelope.stamp_ns, msg.header.stamp)
    msg.header.frame_id = envelope.frame_id
    return msg


def timings_to_msgs(trace: tuple[StageTiming, ...]) -> list:
    """Stage timings as StageTiming messages."""
    return [eir.StageTiming(stage=t.stage, node=t.node, received_ns=t.received_ns,
                            start_ns=t.start_ns, end_ns=t.end_ns) for t in trace]


def timings_from_msgs(msgs) -> tuple[StageTiming, ...]:
    """Turn StageTiming messages back into plain records."""
    return tuple(StageTiming(m.stage, m.node, m.received_ns, m.start_ns, m.end_ns) for m in msgs)


def _checked_header(msg, camera: str = '', stages=()) -> tuple[str, int, tuple]:
    """Validate what every message carries: stamp, names, the trace so far."""
    validate.check_time_fields(msg.header.stamp.sec, msg.header.stamp.nanosec)
    stamp = stamp_to_ns(msg.header.stamp)
    now = _now_ns()
    validate.check_stamp(stamp, now)
    name = camera or msg.header.frame_id
    validate.check_frame_names(name, msg.header.frame_id)
    validate.check_count(len(stages), validate.MAX_STAGES, 'stage timings')
    timings = timings_from_msgs(stages)
    validate.check_trace(stamp, timings, now)
    return name, stamp, timings


def _envelope(msg, payload, camera: str = '', seq: int = 0, stages=()) -> Envelope:
    name, stamp, timings = _checked_header(msg, camera, stages)
    return Envelope(name, seq, stamp, msg.header.frame_id, timings, payload)


# -- images -----------------------------------------------------------------------------------
def image_to_msg(envelope: Envelope) -> Image:
    """Build sensor_msgs/Image of an image payload in its own encoding (one copy: DDS needs it)."""
    payload: ImagePayload = envelope.payload
    msg = _header(Image(), envelope)
    msg.width, msg.height = image_size(payload.image, payload.encoding)
    msg.encoding = payload.encoding
    msg.step, msg.is_bigendian, data = raw_to_bytes(payload.image)
    msg.data = array.array('B', data)
    return msg


def image_from_msg(msg: Image, seq: int) -> Envelope:
    """sensor_msgs/Image to an envelope holding a zero-copy read-only view of its pixels."""
    validate.check_stamp(stamp_to_ns(msg.header.stamp), _now_ns())
    view = image_view(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                      msg.is_bigendian)
    return _envelope(msg, ImagePayload(view, msg.encoding), seq=seq)


def compressed_to_msg(envelope: Envelope, quality: int = 90) -> CompressedImage:
    """JPEG-compress an image payload (cheaper to send between hosts, costlier in CPU)."""
    import cv2
    payload: ImagePayload = envelope.payload
    image = payload.image
    if payload.encoding != 'bgr8':
        image = to_bgr(image, payload.encoding)  # JPEG holds BGR (or grey), whatever came
    ok, encoded = cv2.imencode('.jpg', image, (cv2.IMWRITE_JPEG_QUALITY, quality))
    if not ok:
        raise ImageError('JPEG encoding failed')
    msg = _header(CompressedImage(), envelope)
    msg.format = 'bgr8; jpeg compressed bgr8'
    msg.data = array.array('B', encoded.tobytes())
    return msg


def compressed_from_msg(msg: CompressedImage, seq: int,
                        model: Optional[tuple[int, int]] = None) -> Envelope:
    """
    sensor_msgs/CompressedImage (jpeg/png) to an envelope with the decoded BGR image.

    Size, format and integrity are checked before decoding (core.compressed); ``model``: the
    model input (w, h), so that a JPEG is decoded at the reduced scale it needs.
    """
    validate.check_stamp(stamp_to_ns(msg.header.stamp), _now_ns())
    image, width, height, factor = compressed.decode(bytes(msg.data), msg.format, model)
    payload = ImagePayload(read_only(image), 'bgr8', factor,
                           (width, height) if factor > 1 else None)
    return _envelope(msg, payload, seq=seq)


# -- tensors ------------------------------------------------------------------------------------
def tensor_to_msg(envelope: Envelope) -> eir.TensorFrame:
    """Build the TensorFrame of a preprocessed tensor."""
    payload: TensorPayload = envelope.payload
    msg = _header(eir.TensorFrame(), envelope)
    msg.camera, msg.seq = envelope.camera, envelope.seq
    msg.shape = list(payload.tensor.shape)
    msg.dtype = payload.tensor.dtype.name
    msg.data = array.array('B', payload.tensor.tobytes())
    msg.scale = payload.letterbox.scale
    msg.pad_x, msg.pad_y = payload.letterbox.pad_x, payload.letterbox.pad_y
    msg.image_width, msg.image_height = payload.image_width, payload.image_height
    msg.stages = timings_to_msgs(envelope.trace)
    return msg


def tensor_from_msg(msg: eir.TensorFrame) -> Envelope:
    """Turn a TensorFrame into an envelope (read-only view of the tensor bytes)."""
    if msg.dtype not in ('float32', 'float16', 'uint8'):
        raise ValueError(f'tensor dtype {msg.dtype!r} not supported: float32, float16 or uint8')
    dtype = np.dtype(msg.dtype)
    validate.check_count(len(msg.shape), 8, 'tensor dimensions')
    shape = tuple(int(v) for v in msg.shape)
    data = np.frombuffer(msg.data, np.uint8)
    expected = math.prod(shape) * dtype.itemsize if shape else 0  # Python ints: no overflow
    if not shape or data.size != expected:
        raise ValueError(f'tensor data has {data.size} bytes, shape {list(shape)} of {msg.dtype} '
                         f'needs {expected}')
    tensor = data.view(dtype).reshape(shape)
    if dtype.kind == 'f' and not np.isfinite(tensor).all():
        bad = int(tensor.size - np.count_nonzero(np.isfinite(tensor)))
        raise validate.InputRefused('non_finite', f'tensor holds {bad} NaN/inf values: refused '
                                    'before inference')
    validate.check_letterbox(msg.scale, msg.pad_x, msg.pad_y)
    validate.check_image_size(msg.image_width, msg.image_height)
    payload = TensorPayload(read_only(tensor), Letterbox(msg.scale, msg.pad_x, msg.pad_y),
                            msg.image_width, msg.image_height)
    return _envelope(msg, payload, msg.camera, msg.seq, msg.stages)


# -- candidates -------------------------------------------------------------------------------
def candidates_to_msg(envelope: Envelope) -> eir.CandidateArray:
    """Build the CandidateArray of decoded detector output."""
    payload: CandidatePayload = envelope.payload
    msg = _header(eir.CandidateArray(), envelope)
    msg.camera, msg.seq = envelope.camera, envelope.seq
    msg.boxes = array.array('f', payload.boxes.astype(np.float32, copy=False).ravel().tobytes())
    msg.scores = array.array('f', payload.scores.astype(np.float32, copy=False).tobytes())
    msg.class_ids = array.array('i', payload.class_ids.astype(np.int32, copy=False).tobytes())
    msg.class_names = list(payload.class_names)
    msg.scale = payload.letterbox.scale
    msg.pad_x, msg.pad_y = payload.letterbox.pad_x, payload.letterbox.pad_y
    msg.image_width, msg.image_height = payload.image_width, payload.image_height
    msg.backend = payload.backend
    msg.stages = timings_to_msgs(envelope.trace)
    return msg


def candidates_from_msg(msg: eir.CandidateArray,
                        max_candidates: int = validate.MAX_DETECTIONS) -> Envelope:
    """
    Turn a CandidateArray into an envelope; anything NMS could not trust is refused.

    More than ``max_candidates`` (NMS's parameter) is refused before any per-candidate
    work, so a huge message costs a length check, not seconds of suppression.
    """
    validate.check_count(len(msg.scores), max_candidates, 'candidates')
    validate.check_count(len(msg.class_names), validate.MAX_CLASSES, 'class names')
    validate.check_class_names(msg.class_names)
    scores = np.frombuffer(msg.scores, np.float32)
    class_ids = np.frombuffer(msg.class_ids, np.int32)
    boxes = np.frombuffer(msg.boxes, np.float32)
    if boxes.size != scores.size * 4 or class_ids.size != scores.size:
        raise ValueError(f'candidate arrays disagree: {boxes.size} box values, {scores.size} '
                         f'scores, {class_ids.size} class ids')
    validate.check_letterbox(msg.scale, msg.pad_x, msg.pad_y)
    validate.check_image_size(msg.image_width, msg.image_height)
    boxes = boxes.reshape(-1, 4)
    validate.check_boxes(boxes, scores, class_ids, len(msg.class_names) or validate.MAX_CLASSES,
                         'candidates')
    payload = CandidatePayload(boxes, scores, class_ids, tuple(msg.class_names),
                               Letterbox(msg.scale, msg.pad_x, msg.pad_y), msg.image_width,
                               msg.image_height, msg.backend)
    return _envelope(msg, payload, msg.camera, msg.seq, msg.stages)


# -- detections -------------------------------------------------------------------------------
def detections_to_msg(envelope: Envelope) -> eir.DetectionArray:
    """Build the DetectionArray of final detections."""
    payload: DetectionPayload = envelope.payload
    msg = _header(eir.DetectionArray(), envelope)
    msg.camera, msg.seq = envelope.camera, envelope.seq
    msg.image_width, msg.image_height = payload.image_width, payload.image_height
    names = payload.class_names
    detections = []
    rows = zip(payload.boxes.tolist(), payload.scores.tolist(), payload.class_ids.tolist())
    for (x0, y0, x1, y1), score, class_id in rows:
        detections.append(eir.Detection(
            x_min=x0, y_min=y0, x_max=x1, y_max=y1, score=score, class_id=class_id,
            class_name=names[class_id] if 0 <= class_id < len(names) else ''))
    msg.detections = detections
    msg.stages = timings_to_msgs(envelope.trace)
    return msg


def detections_from_msg(msg: eir.DetectionArray) -> Envelope:
    """Turn a DetectionArray into an envelope (class names taken from the message)."""
    count = len(msg.detections)
    validate.check_count(count, validate.MAX_DETECTIONS, 'detections')
    validate.check_image_size(msg.image_width, msg.image_height)
    boxes = np.empty((count, 4), np.float32)
    scores = np.empty(count, np.float32)
    class_ids = np.empty(count, np.int32)
    names: dict[int, str] = {}
    for index, det in enumerate(msg.detections):
        boxes[index] = (det.x_min, det.y_min, det.x_max, det.y_max)
        scores[index] = det.score
        class_ids[index] = det.class_id
        if len(det.class_name) > validate.MAX_CLASS_NAME:
            validate.check_class_names((det.class_name,), f'detection {index} class name')
        names[det.class_id] = det.class_name
    validate.check_boxes(boxes, scores, class_ids, validate.MAX_CLASSES, 'detections',
                         (msg.image_width, msg.image_height))
    size = max(names) + 1 if names else 0
    class_names = tuple(names.get(i, '') for i in range(size))
    payload = DetectionPayload(read_only(boxes), read_only(scores), read_only(class_ids),
                               class_names, msg.image_width, msg.image_height,
                               class_names_complete=False)
    return _envelope(msg, payload, msg.camera, msg.seq, msg.stages)


# -- outputs of the last stage --------------------------------------------------------------------
def command_to_msg(envelope: Envelope) -> TwistStamped:
    """Build the TwistStamped of a command, stamped with the frame's capture time."""
    msg = _header(TwistStamped(), envelope)
    _fill_twist(msg.twist, envelope.payload)
    return msg


def command_to_twist(envelope: Envelope) -> Twist:
    """Build the plain Twist of a command, for a base that takes no header (Humble's)."""
    return _fill_twist(Twist(), envelope.payload)


def _fill_twist(twist: Twist, command: Command) -> Twist:
    twist.linear.x = float(command.linear_x)
    twist.angular.z = float(command.angular_z)
    return twist


def trace_to_msg(envelope: Envelope) -> eir.FrameTrace:
    """Build the FrameTrace message of a frame's trace."""
    trace: FrameTrace = envelope.payload
    msg = _header(eir.FrameTrace(), envelope)
    msg.camera, msg.seq = trace.camera, trace.seq
    msg.stages = timings_to_msgs(trace.stages)
    return msg


def trace_from_msg(msg: eir.FrameTrace) -> Envelope:
    """Turn a FrameTrace message into an envelope holding the plain FrameTrace."""
    camera, stamp, stages = _checked_header(msg, msg.camera, msg.stages)
    trace = FrameTrace(camera, msg.seq, stamp, msg.header.frame_id, stages)
    return Envelope(trace.camera, trace.seq, trace.stamp_ns, trace.frame_id, (), trace)


def deadline_miss_to_msg(envelope: Envelope) -> eir.DeadlineMiss:
    """Build the DeadlineMiss message of a late frame (stamped with its capture time)."""
    miss: DeadlineMiss = envelope.payload
    msg = eir.DeadlineMiss(camera=miss.camera, seq=miss.seq, deadline_ms=miss.deadline_ms,
                           latency_ms=miss.latency_ms, overrun_ms=miss.overrun_ms,
                           worst_stage=miss.worst_stage, worst_component=miss.worst_component,
                           worst_stage_ms=miss.worst_stage_ms,
                           worst_stage_budget_ms=miss.worst_stage_budget_ms)
    ns_to_stamp(miss.stamp_ns, msg.header.stamp)
    msg.header.frame_id = miss.frame_id
    return msg


def deadline_miss_key(msg: eir.DeadlineMiss) -> tuple[int, str]:
    """Identity of the frame a DeadlineMiss reports: its capture stamp and camera."""
    return (stamp_to_ns(msg.header.stamp), msg.camera)
