"""
The usual multi-node rclpy pipeline: one plain Node per stage, messages through topics.

What a ROS 2 user typically writes first: a camera node on a timer publishing
``sensor_msgs/Image``, then preprocess, detector, NMS and action nodes, each subscribing to the
previous topic and publishing the next (the tensor as the package's ``TensorFrame``, candidates
and detections as its ``CandidateArray`` / ``DetectionArray``, the command as
``geometry_msgs/TwistStamped``), all in one process on the default ``SingleThreadedExecutor``,
default QoS (reliable, depth 10). The image-processing code is the seed loop's
(:mod:`bench.seed_loop`), so only the plumbing differs.

Timing: each callback notes when it started and ended in a table kept by the process (keyed
by the capture stamp, which travels in ``header.stamp``), so the messages carry nothing extra.
There is no queue of our own: waiting in the executor and DDS counts as transport.
"""

from __future__ import annotations

import array
import os
import sys
import time
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, seed_loop  # noqa: E402
from edge_infer_ros.stages.synthetic import CLASS_NAMES, SyntheticScene  # noqa: E402
from edge_infer_ros_msgs.msg import (CandidateArray, Detection, DetectionArray,  # noqa: E402
                                     TensorFrame)
from geometry_msgs.msg import TwistStamped  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

now = time.time_ns


def stamp_ns(msg: Any) -> int:
    """Return a message's header stamp in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Recorder:
    """Stage timings of every frame, by capture stamp (one process: a plain dict)."""

    def __init__(self) -> None:
        self.frames: dict[int, list[list]] = {}

    def note(self, stamp: int, stage: str, start: int, end: int) -> None:
        """Record one stage of one frame (no queue: received = start)."""
        self.frames.setdefault(stamp, []).append([stage, start, start, end])


class CameraNode(Node):
    """Render synthetic frames on a timer and publish them as sensor_msgs/Image."""

    def __init__(self, context: Any, frames: int, width: int, height: int, fps: float) -> None:
        super().__init__('camera', context=context)
        self.scene = SyntheticScene(width=width, height=height, seed=0)
        self.publisher = self.create_publisher(Image, 'image_raw', 10)
        self.frames = frames
        self.captured = 0
        self.sent_ns: list[int] = []  # publish stamp of every frame, by capture index
        self.timer = self.create_timer(1.0 / fps, self.tick)

    def tick(self) -> None:
        """Capture one frame and publish it."""
        if self.captured >= self.frames:
            self.timer.cancel()
            return
        frame, _ = self.scene.render(self.captured)
        stamp = now()
        msg = Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.header.frame_id = 'camera'
        msg.height, msg.width = frame.shape[:2]
        msg.encoding = 'bgr8'
        msg.step = frame.shape[1] * 3
        msg.data = frame.tobytes()
        self.publisher.publish(msg)
        self.sent_ns.append(stamp)
        self.captured += 1


class PreprocessNode(Node):
    """Image -> letterboxed float tensor (TensorFrame)."""

    def __init__(self, context: Any, recorder: Recorder, size: int) -> None:
        super().__init__('preprocess', context=context)
        self.recorder, self.size = recorder, size
        self.publisher = self.create_publisher(TensorFrame, 'tensor', 10)
        self.create_subscription(Image, 'image_raw', self.on_image, 10)
        self.seq = 0

    def on_image(self, msg: Image) -> None:
        """Letterbox one image and publish the tensor."""
        start = now()
        frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        tensor, scale, left, top = seed_loop.letterbox(frame, self.size)
        out = TensorFrame()
        out.header = msg.header
        out.seq = self.seq
        out.shape = list(tensor.shape)
        out.dtype = 'float32'
        out.data = array.array('B', tensor.tobytes())
        out.scale, out.pad_x, out.pad_y = float(scale), float(left), float(top)
        out.image_width, out.image_height = msg.width, msg.height
        self.publisher.publish(out)
        self.seq += 1
        self.recorder.note(stamp_ns(msg), 'preprocess', start, now())


class DetectorNode(Node):
    """TensorFrame -> inference -> decoded candidates (CandidateArray)."""

    def __init__(self, context: Any, recorder: Recorder, model: str, spin: bool) -> None:
        super().__init__('detector', context=context)
        self.recorder = recorder
        self.session, self.input_name, _ = seed_loop.open_model(model, spin=spin)
        self.publisher = self.create_publisher(CandidateArray, 'candidates', 10)
        self.create_subscription(TensorFrame, 'tensor', self.on_tensor, 10)

    def on_tensor(self, msg: TensorFrame) -> None:
        """Run the model on one tensor and publish the candidates."""
        start = now()
        tensor = np.frombuffer(msg.data, np.float32).reshape(tuple(msg.shape))
        output = self.session.run(None, {self.input_name: tensor})[0]
        boxes, scores, class_ids = seed_loop.decode(output)
        out = CandidateArray()
        out.header, out.seq = msg.header, msg.seq
        out.boxes = boxes.astype(np.float32).ravel().tolist()
        out.scores = scores.astype(np.float32).tolist()
        out.class_ids = class_ids.astype(np.int32).tolist()
        out.class_names = list(CLASS_NAMES)
        out.scale, out.pad_x, out.pad_y = msg.scale, msg.pad_x, msg.pad_y
        out.image_width, out.image_height = msg.image_width, msg.image_height
        out.backend = 'onnxruntime'
        self.publisher.publish(out)
        self.recorder.note(stamp_ns(msg), 'detector', start, now())


class NmsNode(Node):
    """CandidateArray -> NMS, boxes back in image pixels -> DetectionArray."""

    def __init__(self, context: Any, recorder: Recorder) -> None:
        super().__init__('nms', context=context)
        self.recorder = recorder
        self.publisher = self.create_publisher(DetectionArray, 'detections', 10)
        self.create_subscription(CandidateArray, 'candidates', self.on_candidates, 10)

    def on_candidates(self, msg: CandidateArray) -> None:
        """Suppress overlapping candidates and publish the detections."""
        start = now()
        boxes = np.asarray(msg.boxes, np.float32).reshape(-1, 4)
        kept = seed_loop.nms(boxes, np.asarray(msg.scores, np.float32),
                             np.asarray(msg.class_ids, np.int32), msg.scale, int(msg.pad_x),
                             int(msg.pad_y), msg.image_width, msg.image_height)
        out = DetectionArray()
        out.header, out.seq = msg.header, msg.seq
        out.image_width, out.image_height = msg.image_width, msg.image_height
        for box, score, class_id in kept:
            out.detections.append(Detection(
                x_min=float(box[0]), y_min=float(box[1]), x_max=float(box[2]),
                y_max=float(box[3]), score=score, class_id=class_id,
                class_name=CLASS_NAMES[class_id] if class_id < len(CLASS_NAMES) else ''))
        self.publisher.publish(out)
        self.recorder.note(stamp_ns(msg), 'nms', start, now())


class ActionNode(Node):
    """DetectionArray -> command (TwistStamped)."""

    def __init__(self, context: Any, recorder: Recorder) -> None:
        super().__init__('action', context=context)
        self.recorder = recorder
        self.publisher = self.create_publisher(TwistStamped, 'cmd_vel', 10)
        self.create_subscription(DetectionArray, 'detections', self.on_detections, 10)
        self.commands = 0

    def on_detections(self, msg: DetectionArray) -> None:
        """Decide and publish the command."""
        start = now()
        detections = [((d.x_min, d.y_min, d.x_max, d.y_max), d.score, d.class_id)
                      for d in msg.detections]
        linear, angular, _ = seed_loop.decide(detections, msg.image_width, msg.image_height)
        out = TwistStamped()
        out.header = msg.header
        out.twist.linear.x, out.twist.angular.z = float(linear), float(angular)
        self.publisher.publish(out)
        self.commands += 1
        self.recorder.note(stamp_ns(msg), 'action', start, now())


def run(model: str, frames: int, width: int, height: int, fps: float,
        timeout_s: float = 0.0, spin: bool = False, warmup: bool = False) -> dict[str, Any]:
    """
    Run the pipeline until every frame is processed (or nothing moves for 2 s).

    ``warmup``: run the model 5 times before the first frame, as the package's detector does
    at configure (the max-rate search's probes are short enough for a cold first inference
    to matter).
    """
    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = Recorder()
    nodes = []
    try:
        _, _, size = seed_loop.open_model(model)
        action = ActionNode(context, recorder)
        nodes = [action, NmsNode(context, recorder), DetectorNode(context, recorder, model, spin),
                 PreprocessNode(context, recorder, size)]
        if warmup:
            seed_loop.warm_up(nodes[2].session, nodes[2].input_name, size)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        # Let discovery finish before the first frame.
        deadline = time.monotonic() + 10.0
        hops = ((nodes[1], 'detections'), (nodes[2], 'candidates'), (nodes[3], 'tensor'))
        while time.monotonic() < deadline and any(n.count_subscribers(t) == 0
                                                  for n, t in hops):
            executor.spin_once(timeout_sec=0.05)
        camera = CameraNode(context, frames, width, height, fps)
        nodes.append(camera)
        executor.add_node(camera)
        limit = timeout_s or max(30.0, 3.0 * frames / fps + 20.0)
        started = time.monotonic()
        last, last_change = -1, time.monotonic()
        while time.monotonic() - started < limit:
            executor.spin_once(timeout_sec=0.05)
            if action.commands != last:
                last, last_change = action.commands, time.monotonic()
            if camera.captured >= frames and (action.commands >= frames or
                                              time.monotonic() - last_change > 2.0):
                break
        index = {stamp: i for i, stamp in enumerate(camera.sent_ns)}
        records = [{'seq': index.get(stamp, i), 'stamp_ns': stamp, 'stages': stages}
                   for i, (stamp, stages) in enumerate(sorted(recorder.frames.items()))
                   if [s[0] for s in stages] == list(common.STAGES)]
        return {'records': records, 'has_queue': False,
                'frames': {'captured': camera.captured, 'processed': action.commands,
                           'dropped': camera.captured - action.commands},
                'sent_ns': camera.sent_ns,
                'description': 'one rclpy Node per stage, topics, SingleThreadedExecutor'}
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: run the pipeline and write its records as JSON."""
    return common.variant_main(
        argv, __doc__, False,
        lambda model, a: run(model, a.frames, a.width, a.height, a.fps, spin=a.ort_spin,
                             warmup=a.warmup),
        lambda a, result: 'naive rclpy', _add_arguments)


def _add_arguments(parser: Any) -> None:
    parser.add_argument('--ort-spin', action='store_true',
                        help="ONNX Runtime's default spin-waiting worker threads")
    parser.add_argument('--warmup', action='store_true',
                        help='run the model 5 times before the first frame (as the package)')


if __name__ == '__main__':
    sys.exit(main())
