"""
Camera stage: frames from a source (synthetic by default) or from a robot's Image topic.

Each frame is stamped with its capture time (``header.stamp``), which every later stage and
the budget monitor measure from. Capture runs on its own thread at ``fps``, not on an rclpy
timer: an executor wake-up costs ~0.5 ms and jitters; a thread sleeping to the next period
does neither.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.handoff import Pace
from edge_infer_ros.core.image import frozen_view
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.core.payloads import ImagePayload
from edge_infer_ros.ros import convert, diagnostic_keys as keys, topics
from edge_infer_ros.ros.nodes.base import StageNode
from edge_infer_ros.ros.process import run_single
from edge_infer_ros.stages.camera import FrameSource, SOURCE_KINDS
from edge_infer_ros.stages.pacing import CapturePacer
from edge_infer_ros.stages.sources import open_source
import numpy as np
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image


#: What _capture() returns for a frame it could not read (counted; capture goes on).
_READ_FAILED = object()


class CameraNode(StageNode):
    """Publishes camera frames on ``image_raw`` (by reference in-process)."""

    STAGE = 'camera'
    DEFAULT_NAME = 'camera'
    PARAMS = (
        ParamSpec('source', 'synthetic', 'where frames come from (topic: subscribe to '
                  "image_in, e.g. remapped to the robot's camera driver)",
                  choices=SOURCE_KINDS, runtime=False),
        ParamSpec('uri', '', 'video file, V4L2 device (/dev/video0 or index), image folder, or '
                  'bag (.mcap or .db3 file or bag folder)', runtime=False),
        ParamSpec('bag_topic', '', 'source bag: the image topic to replay (sensor_msgs/Image or '
                  "CompressedImage; '': the bag's only image topic)", runtime=False),
        ParamSpec('replay_rate', 1.0, 'recordings (bag, video, folder with timestamps.txt): '
                  'speed of the replay, 1.0 = the recorded pace', low=0.01, high=100.0),
        ParamSpec('publish_clock', False, 'source bag: publish /clock at the recorded receive '
                  'times and keep the recorded stamps (for a stack under use_sim_time); '
                  'false: frames are stamped at replay, the recorded stamp is in diagnostics',
                  runtime=False),
        ParamSpec('width', 640, 'frame width of synthetic and V4L2 sources, pixels', low=16,
                  high=7680, runtime=False),
        ParamSpec('height', 480, 'frame height of synthetic and V4L2 sources, pixels', low=16,
                  high=4320, runtime=False),
        ParamSpec('fps', 30.0, 'capture rate, frames per second (synthetic, V4L2, a folder '
                  'without timestamps.txt, a video that gives no frame rate)', low=0.1,
                  high=1000.0),
        ParamSpec('pace_to_pipeline', False, 'synthetic, video and folder sources: capture each '
                  'frame just in time for the busiest stage to take it (as fast as the '
                  'pipeline takes frames, at most fps) instead of letting its queue drop them'),
        ParamSpec('seed', 0, 'seed of the synthetic scene', low=0, high=2**31 - 1,
                  runtime=False),
        ParamSpec('loop', False, 'start a video file, image folder or bag again at its end '
                  '(false: the camera stops there, logged and in diagnostics)', runtime=False),
        ParamSpec('max_frames', 0, 'stop after this many frames (0: never)', low=0,
                  high=2**31 - 1),
        ParamSpec('frame_id', 'camera_optical_frame', 'header.frame_id of the frames, also '
                  "the camera's name in traces and diagnostics (the only name a "
                  'sensor_msgs/Image carries, so it is the same composed or split)'),
        ParamSpec('publish_compressed', False, 'also publish image_raw/compressed (JPEG) when '
                  'someone outside the process subscribes'),
        ParamSpec('jpeg_quality', 90, 'JPEG quality of image_raw/compressed', low=1, high=100),
    )
    DEFAULT_INPUT_MODE = 'inline'
    DEFAULT_INPUT_RELIABILITY = 'best_effort'

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._source: Optional[FrameSource] = None
        self._thread: Optional[threading.Thread] = None
        self._running = threading.Event()
        self.captured = 0
        self.source_ended = False
        self.read_errors = 0
        self._topic_seq = 0
        self._frame_shape: Optional[tuple[int, ...]] = None
        self.zero_copy_frames = 0
        self._clock_pub: Any = None
        self.source_end = ''  # why the source ended ('' while it goes on)

    @property
    def camera_name(self) -> str:
        """Name used for this camera in traces: its frame_id, as over DDS."""
        return self.p['frame_id']

    def create_io(self) -> None:
        """Create outputs image_raw (+ compressed) and, relaying a topic, input image_in."""
        self.image_out = self.add_output(topics.IMAGE_RAW, Image, convert.image_to_msg)
        self.compressed_out = None
        if self.p['publish_compressed']:
            self.compressed_out = self.add_output(
                'image_raw/compressed', CompressedImage,
                lambda e: convert.compressed_to_msg(e, self.p['jpeg_quality']))
        if self.p['source'] == 'topic':
            self.add_input(topics.IMAGE_IN, Image, self._from_topic, self._relay)

    def configure_stage(self) -> None:
        """Open the source (fails configure with the reason when it cannot be opened)."""
        if self.p['source'] != 'topic':
            self._source = open_source(self.p['source'], self.p['uri'], self.p['width'],
                                       self.p['height'], self.p['fps'], self.p['seed'],
                                       self.p['loop'], self.p['bag_topic'], _decode_bag)
        if self.p['source'] == 'bag' and self.p['publish_clock']:
            self._clock_pub = self.create_publisher(Clock, '/clock', 10)

    def activate_stage(self) -> None:
        """Start the capture thread."""
        if self._source is None:
            return
        self._running.set()
        self.source_ended = False
        self._thread = threading.Thread(target=self._capture_loop, name='eir:camera',
                                        daemon=True)
        self._thread.start()

    def deactivate_stage(self) -> None:
        """Stop the capture thread."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def cleanup_stage(self) -> None:
        """Close the source."""
        if self._source is not None:
            self._source.close()
            self._source = None
        if self._clock_pub is not None:
            self.destroy_publisher(self._clock_pub)
            self._clock_pub = None

    def wait_until_done(self, timeout: float) -> bool:
        """Wait for the capture thread to end (max_frames reached or source over)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _publish(self, envelope: Envelope, loan: Any = None) -> None:
        if loan is not None:  # a loan is gone once sent: everything else reads it first
            if self.compressed_out is not None:
                self.compressed_out.publish(envelope)
            self.image_out.publish(envelope, loan)
        else:
            self.image_out.publish(envelope)
            if self.compressed_out is not None:
                self.compressed_out.publish(envelope)
        self.diagnostics_timing.frame_done()  # the stages downstream ran inline by now

    def _loan(self) -> Any:
        """Loan a shared-memory sample to render into (see StagePublisher.loan)."""
        shape = self._frame_shape
        return None if shape is None else self.image_out.loan(shape, np.uint8)

    def _capture_loop(self) -> None:
        index = 0
        pacer = CapturePacer(time.perf_counter())
        #: The "next stage free" signal: what the stages downstream say back (core/handoff.py).
        pace = Pace()
        while self._running.is_set() and not (self.p['max_frames'] and
                                              index >= self.p['max_frames']):
            began = time.perf_counter()
            captured = self._capture(index)
            if captured is None:
                break  # the source ended, or failed too often
            index += 1
            if captured is _READ_FAILED:
                continue
            with pace.publishing(pacer.idle_ns):
                sent = self._send(*captured)
            if not sent:
                break
            published = time.perf_counter()
            to_pipeline = self.p['pace_to_pipeline']
            # Paced: wait (bounded) until the stage that queued this frame has taken it.
            ready_ns = pace.take_ready_at_ns(wait_s=0.5 if to_pipeline else 0.0)
            recorded = self._source.period_after_s(index - 1)
            period = 1.0 / self.p['fps'] if recorded is None else \
                recorded / self.p['replay_rate']
            delay = pacer.delay(began, published, time.perf_counter(), period, ready_ns,
                                to_pipeline)
            if delay > 0:
                time.sleep(delay)
        self._running.clear()

    def _capture(self, index: int) -> Any:
        """Read frame ``index`` (into a loan where one helps): (envelope, loan), or why not."""
        loan = self._loan()
        try:
            image = self._source.read(index) if loan is None else \
                self._source.read_into(index, loan.array)
        except Exception as error:  # noqa: B902 - a bad file must not kill the camera
            if loan is not None:
                loan.discard()
            self.stage_error(error, None, f'cannot read frame {index}')
            self.read_errors += 1
            return None if self.read_errors > 100 else _READ_FAILED
        if loan is not None and image is not loan.array:
            loan.discard()  # the source could not write into it: send by copy
            loan = None
        if image is None:
            self.source_ended = True
            self.source_end = getattr(self._source, 'ended', '') or \
                f'source {self.p["source"]} ended'
            self.get_logger().info(f'{self.source_end}: {index} frames')
            return None
        self._frame_shape = image.shape
        envelope = Envelope(self.camera_name, index, self._stamp(), self.p['frame_id'], (),
                            ImagePayload(frozen_view(image), self._source.encoding))
        return envelope, loan

    def _stamp(self) -> int:
        """Stamp at replay, or (publish_clock) the recorded stamp after /clock moved to it."""
        if self._clock_pub is None:
            return self.clock.now_ns()
        source: Any = self._source
        msg = Clock()
        msg.clock = convert.ns_to_stamp(source.recorded_time_ns, msg.clock)
        self._clock_pub.publish(msg)
        return source.recorded_stamp_ns or source.recorded_time_ns

    def _send(self, envelope: Envelope, loan: Any) -> bool:
        """Publish a captured frame; False when the process is shutting down."""
        self.captured += 1
        self.zero_copy_frames += loan is not None
        try:
            self._publish(envelope, loan)
        except Exception as error:  # noqa: B902 - a failed publish must not kill capture
            if not self.context.ok():
                return False  # shutting down (Ctrl-C, SIGTERM): stop quietly
            self.stage_error(error, envelope, 'publishing a frame failed')
        return True

    def _from_topic(self, msg: Image) -> Envelope:
        envelope = convert.image_from_msg(msg, self._topic_seq)
        self._topic_seq += 1
        return envelope

    def _relay(self, envelope: Envelope, received_ns: int) -> None:
        """Forward a robot camera's frame into the pipeline (by reference from here on)."""
        self.captured += 1
        # Named by the frame's own frame_id, as the next stage names it when this hop is DDS;
        # a driver that leaves frame_id empty gets this node's frame_id parameter instead.
        name = envelope.frame_id or self.p['frame_id']
        self._publish(Envelope(name, envelope.seq, envelope.stamp_ns, name, (), envelope.payload))

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Capture counters."""
        values = [('source', self.p['source']), (keys.FRAMES_CAPTURED, str(self.captured)),
                  ('fps_setting', f'{self.p["fps"]:.1f}'),
                  ('read_errors', str(self.read_errors)),
                  ('zero_copy_frames', str(self.zero_copy_frames)),
                  (keys.SOURCE_END, self.source_end or keys.SOURCE_RUNNING)]
        source: Any = self._source
        if hasattr(source, 'recorded_stamp_ns'):  # a bag: what the recording said
            values += [('bag_topic', source.topic), ('bag_loops', str(source.loops)),
                       ('recorded_stamp_ns', str(source.recorded_stamp_ns)),
                       ('recorded_time_ns', str(source.recorded_time_ns)),
                       ('stamps', 'recorded (publish_clock)' if self._clock_pub is not None
                        else 'at replay (recorded stamp: recorded_stamp_ns)')]
        return values


def _decode_bag(msg: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """Turn a bag's image message into a frame as the topic source does (same checks)."""
    if msgtype.endswith('CompressedImage'):
        envelope = convert.compressed_from_msg(msg, 0)
    else:
        envelope = convert.image_from_msg(msg, 0)
    return envelope.payload.image, envelope.payload.encoding


def main(args: Optional[list[str]] = None) -> None:
    """Run the camera node on its own."""
    run_single(CameraNode, args)


if __name__ == '__main__':
    main()
