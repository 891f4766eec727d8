"""NMS stage: class-aware non-maximum suppression, boxes mapped back to the original image."""

from __future__ import annotations

from typing import Any, Optional

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.handoff import StagePublisher
from edge_infer_ros.core.params import ParamSpec
from edge_infer_ros.ros import convert, topics
from edge_infer_ros.ros.nodes.base import StageNode
from edge_infer_ros.ros.process import run_single
from edge_infer_ros.ros.vision import load_vision_msgs, to_detection2d_array
from edge_infer_ros.stages.nms import detections_from_candidates, NmsSettings
from edge_infer_ros_msgs.msg import CandidateArray, DetectionArray


class NmsNode(StageNode):
    """Turns ``candidates`` into final ``detections`` (the package's DetectionArray)."""

    STAGE = 'nms'
    DEFAULT_NAME = 'nms'
    DEFAULT_INPUT_MODE = 'inline'
    PARAMS = (
        ParamSpec('iou_threshold', 0.5, 'boxes of one class overlapping more than this are '
                  'suppressed', low=0.0, high=1.0),
        ParamSpec('score_threshold', 0.25, 'minimum score of a detection', low=0.0, high=1.0),
        ParamSpec('max_detections', 100, 'most detections per frame', low=1, high=10000),
        ParamSpec('max_candidates', 1000, 'most candidates suppressed per frame: a larger '
                  'CandidateArray from outside is refused, a larger in-process one keeps its '
                  'best (both counted)', low=1, high=10000),
        ParamSpec('class_agnostic', False, 'suppress across classes too'),
        ParamSpec('classes', [], 'class names to keep (empty: all)', list_of=str),
        ParamSpec('publish_vision_msgs', True, 'also publish vision_msgs/Detection2DArray on '
                  'detections_2d when vision_msgs is installed', runtime=False),
        ParamSpec('per_camera_topics', False, "also publish each camera's detections on "
                  'detections/<camera name>', runtime=False),
    )

    def __init__(self, node_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._camera_outputs: dict[str, StagePublisher] = {}
        self.vision_out: Optional[StagePublisher] = None
        self.candidates_truncated = 0
        self._nms = self._settings_from_params()

    def _settings_from_params(self) -> NmsSettings:
        return NmsSettings(self.p['score_threshold'], self.p['iou_threshold'],
                           self.p['max_detections'], self.p['class_agnostic'],
                           tuple(self.p['classes']), self.p['max_candidates'])

    def parameters_changed(self, changed: dict[str, Any]) -> None:
        """Thresholds, classes and caps apply from the next frame."""
        self._nms = self._settings_from_params()

    def max_input_items(self) -> int:
        """Candidates by shared memory or reference are capped like those by DDS."""
        return int(self.p['max_candidates'])

    def create_io(self) -> None:
        """Input candidates; outputs detections (+ Detection2DArray, per-camera topics)."""
        self.add_input(topics.CANDIDATES, CandidateArray,
                       lambda m: convert.candidates_from_msg(m, self.p['max_candidates']),
                       self._on_candidates)
        self.detections_out = self.add_output(topics.DETECTIONS, DetectionArray,
                                              convert.detections_to_msg)
        self.vision_out = None
        if self.p['publish_vision_msgs']:
            msgs = load_vision_msgs()
            if msgs is None:
                self.get_logger().info('vision_msgs is not installed: Detection2DArray is not '
                                       "published (the package's DetectionArray is)")
            else:
                self.vision_out = self.add_output(
                    topics.DETECTIONS_2D, msgs.Detection2DArray,
                    lambda e: to_detection2d_array(e, msgs, convert.ns_to_stamp(e.stamp_ns)))
        self._camera_outputs = {}

    def cleanup_stage(self) -> None:
        """Forget the per-camera outputs (their publishers went with the others)."""
        self._camera_outputs = {}

    def _camera_output(self, camera: str) -> StagePublisher:
        output = self._camera_outputs.get(camera)
        if output is None:  # once per camera, not per frame
            topic = 'detections/' + ''.join(c if c.isalnum() or c == '_' else '_'
                                            for c in camera)
            output = self.add_output(topic, DetectionArray, convert.detections_to_msg)
            self._camera_outputs[camera] = output
        return output

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """Frames whose candidates were cut to max_candidates."""
        return [('candidates_truncated', str(self.candidates_truncated))]

    def _on_candidates(self, envelope: Envelope, received_ns: int) -> None:
        start = self.clock.mono_ns()
        out, truncated = detections_from_candidates(envelope.payload, self._nms)
        self.candidates_truncated += truncated
        done = self.emit(self.detections_out, envelope, out, received_ns, start)
        if self.vision_out is not None:
            self.vision_out.publish(done)
        if self.p['per_camera_topics']:
            self._camera_output(envelope.camera).publish(done)


def main(args: Optional[list[str]] = None) -> None:
    """Run the NMS node on its own."""
    run_single(NmsNode, args)


if __name__ == '__main__':
    main()
